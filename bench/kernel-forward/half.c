// bench/kernel-forward/half: a TCP forwarder that relays one direction in the kernel and the other in
// user space. Client to server: a BPF sockmap verdict (half.bpf.c) moves each segment to the server
// socket's send queue. Server to client: epoll, recv and send, as any user-space relay. Unlike
// forward.c no socket ever passes segments up from a verdict (the path that corrupted bytes on Linux
// 6.18.44, docs/kernel-lane.md), so it measures what half a kernel lane would gain and what it lacks.
// A benchmark tool, not part of Baton: it knows nothing of PostgreSQL's protocol, and the client to
// server direction has no backpressure (docs/kernel-lane.md, "Half a lane").
//
// Usage: half <listen-port> <server-port> <half.bpf.o>   (both on 127.0.0.1; root or CAP_BPF + CAP_NET_ADMIN)
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#define PROG "half"
#include "pairs.h"

static char buf[65536];

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  return a;
}

/* The server socket goes into `servers` before the client's cookie and socket are known to the verdict;
 * bytes the client sent before that (its startup packet) are passed on by hand, and PostgreSQL clients
 * wait for an answer after it, so nothing overtakes them. */
static int splice_pair(int clients, int servers, int partner, int c, int s) {
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  __u64 cookie, fc = (__u64)c, fs = (__u64)s;
  __u32 slot_c = (__u32)c, slot_s = (__u32)s;
  socklen_t len = sizeof cookie;
  if (getsockopt(c, SOL_SOCKET, SO_COOKIE, &cookie, &len)) return -1;
  if (bpf_map_update_elem(servers, &slot_s, &fs, BPF_ANY) || bpf_map_update_elem(partner, &cookie, &slot_s, BPF_ANY)) return -1;
  if (bpf_map_update_elem(clients, &slot_c, &fc, BPF_ANY)) return -1;
  ssize_t n;
  while ((n = recv(c, buf, sizeof buf, MSG_DONTWAIT)) > 0)
    if (send(s, buf, (size_t)n, MSG_NOSIGNAL) != n) return -1;
  return fcntl(s, F_SETFL, O_NONBLOCK);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: half <listen-port> <server-port> <half.bpf.o>\n");
    return 2;
  }
  struct bpf_object *obj = bpf_object__open_file(argv[3], NULL);
  if (!obj || bpf_object__load(obj)) return die("loading the BPF object (root or CAP_BPF + CAP_NET_ADMIN needed)");
  int clients = bpf_object__find_map_fd_by_name(obj, "clients");
  int servers = bpf_object__find_map_fd_by_name(obj, "servers");
  int partner = bpf_object__find_map_fd_by_name(obj, "partner");
  struct bpf_program *prog = bpf_object__find_program_by_name(obj, "to_server");
  if (clients < 0 || servers < 0 || partner < 0 || !prog) return die("the BPF object lacks clients, servers, partner or to_server");
  if (bpf_prog_attach(bpf_program__fd(prog), clients, BPF_SK_SKB_STREAM_VERDICT, 0)) return die("attaching the verdict program");

  struct sockaddr_in listen_at = loopback(atoi(argv[1])), server_at = loopback(atoi(argv[2]));
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (struct sockaddr *)&listen_at, sizeof listen_at) || listen(ls, 512)) return die("listening");
  int ep = epoll_create1(0);
  struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls };
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  memset(partner_of, -1, sizeof partner_of);

  for (;;) {
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno != EINTR) return die("epoll_wait");
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) continue;
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0 || c >= MAX_FD || s >= MAX_FD || connect(s, (struct sockaddr *)&server_at, sizeof server_at) ||
            splice_pair(clients, servers, partner, c, s)) {
          fprintf(stderr, "half: a connection failed: %s\n", strerror(errno));
          close(c);
          if (s >= 0) close(s);
          continue;
        }
        partner_of[c] = s;
        partner_of[s] = c;
        /* The client's bytes never come here: only its hang-up. The server's replies do. */
        struct epoll_event ec = { .events = EPOLLRDHUP, .data.fd = c }, es = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = s };
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &ec);
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &es);
        continue;
      }
      int other = partner_of[fd];
      if (other < 0) continue; /* a pair closed earlier in this batch */
      ssize_t r = (evs[i].events & EPOLLIN) ? recv(fd, buf, sizeof buf, 0) : 0;
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        close_pair(ep, fd);
        continue;
      }
      for (size_t done = 0; done < (size_t)r;) {
        ssize_t w = send(other, buf + done, (size_t)r - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) usleep(20);
        else if (w < 0) break;
        else done += (size_t)w;
      }
    }
  }
}
