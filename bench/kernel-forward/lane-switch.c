// An experiment for docs/kernel-lane.md (items 3 and 4), not part of Baton or of bench/proxy.ts:
// forward.c with a budget. Segments go to the partner socket in the kernel (lane-switch.bpf.c) while
// what the partner has not yet sent stays under <budget> bytes; past it the verdict passes segments
// up and this process writes them on itself, after the kernel has sent everything it redirected
// earlier, then asks for the kernel lane back. When a pair closes it prints, per direction, the bytes
// each lane carried and how often the kernel lane gave way, so that a byte count can be checked
// against what the server sent (`ss -ti`: bytes_received on the server side, bytes_acked on the
// client side).
//
// Usage: lane-switch <listen-host> <listen-port> <server-host> <server-port> <lane-switch.bpf.o> <budget-bytes>
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define SLOTS 4096
enum { LANE_KERNEL = 0, LANE_USER = 1, LANE_WANT_KERNEL = 2 };

struct lane { /* as in lane-switch.bpf.c */
  __u64 redirected, user_written, passed, consumed;
  __u32 base, has_base, mode, pad;
  __u64 switches;
};

static struct lane *lanes;
static int partner_of[SLOTS];
static __u64 handed_at_start[SLOTS];
static long drain_waits;

static int die(const char *what) {
  fprintf(stderr, "lane-switch: %s: %s\n", what, strerror(errno));
  return 1;
}

/* Bytes handed to TCP on this socket so far: acknowledged plus still queued. */
static __u64 handed(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  int queued = 0;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) || ioctl(fd, SIOCOUTQ, &queued)) return 0;
  return ti.tcpi_bytes_acked + (__u64)queued;
}

/* Before the process writes, everything the kernel lane redirected here must have reached TCP. */
static void wait_for_kernel_lane(int fd) {
  for (;;) {
    __u64 want = __atomic_load_n(&lanes[fd].redirected, __ATOMIC_ACQUIRE) + lanes[fd].user_written;
    if (handed(fd) - handed_at_start[fd] >= want) return;
    drain_waits++;
    usleep(50);
  }
}

static int send_all(int fd, const char *b, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = send(fd, b + done, n - done, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        struct pollfd p = { fd, POLLOUT, 0 };
        poll(&p, 1, 1000);
        continue;
      }
      return -1;
    }
    done += (size_t)w;
  }
  return 0;
}

static int address(const char *host, const char *port, struct sockaddr_in *a) {
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)atoi(port));
  return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

static void report_and_close(int ep, int a) {
  int b = partner_of[a];
  for (int k = 0; k < 2; k++) {
    int from = k ? b : a, to = k ? a : b;
    fprintf(stderr, "%d -> %d: kernel lane %llu bytes, user lane %llu bytes, switches to the user lane %llu\n", from, to,
            (unsigned long long)lanes[to].redirected, (unsigned long long)lanes[to].user_written, (unsigned long long)lanes[from].switches);
  }
  fprintf(stderr, "waits for the kernel lane to drain so far: %ld\n", drain_waits);
  epoll_ctl(ep, EPOLL_CTL_DEL, a, NULL);
  epoll_ctl(ep, EPOLL_CTL_DEL, b, NULL);
  close(a);
  close(b);
  partner_of[a] = partner_of[b] = -1;
}

static int accept_pair(int ep, int ls, const struct sockaddr_in *server_at, int socks, int slots, char *buf, size_t cap) {
  int one = 1, c = accept(ls, NULL, NULL);
  if (c < 0) return 0;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0 || c >= SLOTS || s >= SLOTS || connect(s, (const struct sockaddr *)server_at, sizeof *server_at)) {
    fprintf(stderr, "lane-switch: a connection failed: %s\n", strerror(errno));
    close(c);
    if (s >= 0) close(s);
    return 0;
  }
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  memset(&lanes[c], 0, sizeof lanes[c]);
  memset(&lanes[s], 0, sizeof lanes[s]);
  ssize_t n; /* the startup packet, sent before the pair was in the sockmap */
  while ((n = recv(c, buf, cap, MSG_DONTWAIT)) > 0)
    if (send_all(s, buf, (size_t)n) < 0) return -1;
  handed_at_start[c] = handed(c);
  handed_at_start[s] = handed(s);
  __u64 cc, cs, vc = (__u64)c | (__u64)s << 32, vs = (__u64)s | (__u64)c << 32, fc = (__u64)c, fs = (__u64)s;
  __u32 kc = (__u32)c, ks = (__u32)s;
  socklen_t len = sizeof cc;
  if (getsockopt(c, SOL_SOCKET, SO_COOKIE, &cc, &len) || getsockopt(s, SOL_SOCKET, SO_COOKIE, &cs, &len)) return -1;
  if (bpf_map_update_elem(slots, &cc, &vc, BPF_ANY) || bpf_map_update_elem(slots, &cs, &vs, BPF_ANY)) return -1;
  if (bpf_map_update_elem(socks, &ks, &fs, BPF_ANY) || bpf_map_update_elem(socks, &kc, &fc, BPF_ANY)) return -1;
  partner_of[c] = s;
  partner_of[s] = c;
  struct epoll_event ec = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = c }, es = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = s };
  epoll_ctl(ep, EPOLL_CTL_ADD, c, &ec);
  epoll_ctl(ep, EPOLL_CTL_ADD, s, &es);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: lane-switch <listen-host> <listen-port> <server-host> <server-port> <lane-switch.bpf.o> <budget-bytes>\n");
    return 2;
  }
  struct sockaddr_in listen_at, server_at;
  if (address(argv[1], argv[2], &listen_at) || address(argv[3], argv[4], &server_at)) {
    fprintf(stderr, "lane-switch: hosts must be IPv4 addresses\n");
    return 2;
  }
  struct bpf_object *obj = bpf_object__open_file(argv[5], NULL);
  if (!obj || bpf_object__load(obj)) return die("loading the BPF object (root or CAP_BPF + CAP_NET_ADMIN needed)");
  int socks = bpf_object__find_map_fd_by_name(obj, "socks"), slots = bpf_object__find_map_fd_by_name(obj, "slots");
  int lanes_fd = bpf_object__find_map_fd_by_name(obj, "lanes"), budget_fd = bpf_object__find_map_fd_by_name(obj, "budget");
  struct bpf_program *prog = bpf_object__find_program_by_name(obj, "forward");
  if (socks < 0 || slots < 0 || lanes_fd < 0 || budget_fd < 0 || !prog) return die("the BPF object lacks a map or the program");
  __u32 zero = 0;
  /* Budget 0 is a mode of its own (every segment passed up), so a typo must not turn into it. */
  char *end = NULL;
  errno = 0;
  __u64 budget = strtoull(argv[6], &end, 10);
  if (errno || end == argv[6] || *end || argv[6][0] == '-') {
    fprintf(stderr, "lane-switch: the budget must be a number of bytes (got %s)\n", argv[6]);
    return 2;
  }
  if (bpf_map_update_elem(budget_fd, &zero, &budget, BPF_ANY)) return die("setting the budget");
  lanes = mmap(NULL, SLOTS * sizeof(struct lane), PROT_READ | PROT_WRITE, MAP_SHARED, lanes_fd, 0);
  if (lanes == MAP_FAILED) return die("mapping the lanes");
  if (bpf_prog_attach(bpf_program__fd(prog), socks, BPF_SK_SKB_STREAM_VERDICT, 0)) return die("attaching the verdict program");

  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (struct sockaddr *)&listen_at, sizeof listen_at) || listen(ls, 64)) return die("listening");
  int ep = epoll_create1(0);
  struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls };
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  memset(partner_of, -1, sizeof partner_of);
  static char buf[1 << 16];
  fprintf(stderr, "lane-switch: %s:%s -> %s:%s, budget %llu bytes\n", argv[1], argv[2], argv[3], argv[4], (unsigned long long)budget);

  for (;;) {
    struct epoll_event evs[16];
    int n = epoll_wait(ep, evs, 16, -1);
    if (n < 0 && errno != EINTR) return die("epoll_wait");
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        if (accept_pair(ep, ls, &server_at, socks, slots, buf, sizeof buf) < 0) return die("adding a pair");
        continue;
      }
      int to = partner_of[fd];
      if (to < 0) continue;
      /* Only what the verdict passed up is read: the socket is never read while the kernel lane has it. */
      int hung_up = (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
      if (!hung_up && __atomic_load_n(&lanes[fd].passed, __ATOMIC_ACQUIRE) == lanes[fd].consumed) continue;
      ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r > 0) {
        wait_for_kernel_lane(to);
        if (send_all(to, buf, (size_t)r) < 0) {
          report_and_close(ep, fd);
          continue;
        }
        __atomic_add_fetch(&lanes[to].user_written, (__u64)r, __ATOMIC_RELEASE);
        __atomic_add_fetch(&lanes[fd].consumed, (__u64)r, __ATOMIC_RELEASE);
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (lanes[fd].mode == LANE_USER) lanes[fd].mode = LANE_WANT_KERNEL;
        continue;
      }
      report_and_close(ep, fd);
    }
  }
}
