// bench/kernel-forward: a plain TCP forwarder whose bytes never reach user space (a BPF sockmap,
// forward.bpf.c), measured by bench/proxy.ts --kernel-forward as the upper bound of an in-kernel
// relay. It knows nothing of PostgreSQL's protocol: no pins, no moves, no backpressure (see
// docs/benchmarks.md). A benchmark tool, not part of Baton.
//
// Usage: forward <listen-host> <listen-port> <server-host> <server-port> <forward.bpf.o>
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#define PROG "kernel-forward"
#include "pairs.h"


static int address(const char *host, const char *port, struct sockaddr_in *a) {
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)atoi(port));
  return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

/* Both sockets go into the sockmap (the server's first, so no client segment is redirected to an
 * empty slot); bytes the client sent before that (its startup packet) are still queued on its socket
 * and are passed on by hand. PostgreSQL clients wait for an answer after it, so nothing overtakes them. */
static int splice_pair(int socks, int partner, int c, int s) {
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  __u64 cc, cs, fc = (__u64)c, fs = (__u64)s;
  __u32 slot_c = (__u32)c, slot_s = (__u32)s;
  socklen_t len = sizeof cc;
  if (getsockopt(c, SOL_SOCKET, SO_COOKIE, &cc, &len) || getsockopt(s, SOL_SOCKET, SO_COOKIE, &cs, &len)) return -1;
  if (bpf_map_update_elem(partner, &cc, &slot_s, BPF_ANY) || bpf_map_update_elem(partner, &cs, &slot_c, BPF_ANY)) return -1;
  if (bpf_map_update_elem(socks, &slot_s, &fs, BPF_ANY) || bpf_map_update_elem(socks, &slot_c, &fc, BPF_ANY)) return -1;
  char buf[65536];
  ssize_t n;
  while ((n = recv(c, buf, sizeof buf, MSG_DONTWAIT)) > 0)
    if (send(s, buf, (size_t)n, MSG_NOSIGNAL) != n) return -1;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: forward <listen-host> <listen-port> <server-host> <server-port> <forward.bpf.o>\n");
    return 2;
  }
  struct sockaddr_in listen_at, server_at;
  if (address(argv[1], argv[2], &listen_at) || address(argv[3], argv[4], &server_at)) {
    fprintf(stderr, "kernel-forward: hosts must be IPv4 addresses\n");
    return 2;
  }
  struct bpf_object *obj = bpf_object__open_file(argv[5], NULL);
  if (!obj || bpf_object__load(obj)) return die("loading the BPF object (root or CAP_BPF + CAP_NET_ADMIN needed)");
  int socks = bpf_object__find_map_fd_by_name(obj, "socks");
  int partner = bpf_object__find_map_fd_by_name(obj, "partner");
  struct bpf_program *prog = bpf_object__find_program_by_name(obj, "forward");
  if (socks < 0 || partner < 0 || !prog) return die("the BPF object lacks socks, partner or forward");
  if (bpf_prog_attach(bpf_program__fd(prog), socks, BPF_SK_SKB_STREAM_VERDICT, 0)) return die("attaching the verdict program");

  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (struct sockaddr *)&listen_at, sizeof listen_at) || listen(ls, 128)) return die("listening");
  int ep = epoll_create1(0);
  struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls };
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  memset(partner_of, -1, sizeof partner_of);
  fprintf(stderr, "kernel-forward: %s:%s -> %s:%s\n", argv[1], argv[2], argv[3], argv[4]);

  for (;;) {
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno != EINTR) return die("epoll_wait");
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd != ls) { /* only hang-ups are watched: the bytes themselves never come here */
        /* A pair closed earlier in this batch may have left an event for its other socket. */
        if (partner_of[fd] >= 0) close_pair(ep, fd);
        continue;
      }
      int c = accept(ls, NULL, NULL);
      if (c < 0) continue;
      int s = socket(AF_INET, SOCK_STREAM, 0);
      if (s < 0 || c >= MAX_FD || s >= MAX_FD || connect(s, (struct sockaddr *)&server_at, sizeof server_at) || splice_pair(socks, partner, c, s)) {
        fprintf(stderr, "kernel-forward: a connection failed: %s\n", strerror(errno));
        close(c);
        if (s >= 0) close(s);
        continue;
      }
      partner_of[c] = s;
      partner_of[s] = c;
      struct epoll_event ec = { .events = EPOLLRDHUP, .data.fd = c }, es = { .events = EPOLLRDHUP, .data.fd = s };
      epoll_ctl(ep, EPOLL_CTL_ADD, c, &ec);
      epoll_ctl(ep, EPOLL_CTL_ADD, s, &es);
    }
  }
}
