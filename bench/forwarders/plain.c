// bench/forwarders/plain: the smallest user-space TCP forwarder, one thread, in two flavours, to
// measure what a relay's I/O interface costs apart from everything else a relay does:
//   epoll  - epoll_wait, then recv and send per readable socket (what baton's native relay does);
//   uring  - io_uring: each socket has one recv in flight; a completed recv becomes a send linked to
//            the next recv of the same socket, so the ring is entered once per wake-up
//            (SINGLE_ISSUER | DEFER_TASKRUN, liburing from Debian's liburing-dev);
//   batch  - epoll for readiness, as epoll, but the recvs of one epoll_wait's sockets go to the kernel
//            in one io_uring_enter and their sends in a second, every one with MSG_DONTWAIT so it
//            completes at once: 3 system calls per wake-up instead of 1 + 2 per socket, and nothing
//            in flight between wake-ups (the shape baton's relay could take without a rewrite).
// It knows nothing of PostgreSQL's protocol. A benchmark tool, not part of Baton: it never frees a
// closed pair and stops writing to a peer that would block (epoll) by sleeping, which is enough for
// pgbench and not for anything else (docs/benchmarks.md, "Three more leads").
//
// Usage: plain epoll|uring|batch <listen-port> <server-port>   (both on 127.0.0.1)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

typedef struct end {
  int fd;
  struct end *peer;
  uint8_t buf[BUF];
} end_t;

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  return a;
}

static int listen_on(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = loopback(port);
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 512) < 0) {
    perror("plain: listen");
    exit(1);
  }
  return s;
}

/* A connected pair for an accepted client, or NULL (the client is closed). */
static end_t *pair(int c, int server_port) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = loopback(server_port);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
    close(c);
    close(s);
    return NULL;
  }
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  end_t *a_end = calloc(1, sizeof(end_t)), *b_end = calloc(1, sizeof(end_t));
  a_end->fd = c;
  b_end->fd = s;
  a_end->peer = b_end;
  b_end->peer = a_end;
  return a_end;
}

/* A new client and its server connection, both watched for reading. */
static void accept_into(int ep, int ls, int server_port) {
  int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
  end_t *a = c < 0 ? NULL : pair(c, server_port);
  if (!a) return;
  fcntl(a->peer->fd, F_SETFL, O_NONBLOCK);
  struct epoll_event ea = { .events = EPOLLIN, .data.ptr = a }, eb = { .events = EPOLLIN, .data.ptr = a->peer };
  epoll_ctl(ep, EPOLL_CTL_ADD, a->fd, &ea);
  epoll_ctl(ep, EPOLL_CTL_ADD, a->peer->fd, &eb);
}

static void run_epoll(int ls, int server_port) {
  int ep = epoll_create1(0);
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, evs[64];
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    for (int i = 0; i < n; i++) {
      end_t *e = evs[i].data.ptr;
      if (!e) {
        accept_into(ep, ls, server_port);
        continue;
      }
      if (e->fd < 0) continue;
      ssize_t r = recv(e->fd, e->buf, BUF, 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        close(e->fd); /* closing removes both from the epoll set */
        close(e->peer->fd);
        e->fd = e->peer->fd = -1;
        continue;
      }
      for (size_t done = 0; done < (size_t)r;) {
        ssize_t w = send(e->peer->fd, e->buf + done, (size_t)r - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) usleep(50);
        else if (w < 0) break;
        else done += (size_t)w;
      }
    }
  }
}

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };
static struct io_uring ring;

static struct io_uring_sqe *next_sqe(void) {
  struct io_uring_sqe *s = io_uring_get_sqe(&ring);
  if (!s) {
    io_uring_submit(&ring);
    s = io_uring_get_sqe(&ring);
  }
  return s;
}

static void want(end_t *e, int op) {
  struct io_uring_sqe *s = next_sqe();
  io_uring_prep_recv(s, e->fd, e->buf, BUF, 0);
  io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)e | (uint64_t)op);
}

static void accept_more(int ls) {
  struct io_uring_sqe *s = next_sqe();
  io_uring_prep_multishot_accept(s, ls, NULL, NULL, 0);
  io_uring_sqe_set_data64(s, OP_ACCEPT);
}

static void run_uring(int ls, int server_port) {
  struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
  int rc = io_uring_queue_init_params(1024, &ring, &p);
  if (rc < 0) {
    fprintf(stderr, "plain: io_uring: %s\n", strerror(-rc));
    exit(1);
  }
  accept_more(ls);
  for (;;) {
    io_uring_submit_and_wait(&ring, 1);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      int op = (int)(cqe->user_data & 7);
      end_t *e = (end_t *)(uintptr_t)(cqe->user_data & ~7ULL);
      if (op == OP_ACCEPT) {
        end_t *a = cqe->res < 0 ? NULL : pair(cqe->res, server_port);
        if (a) {
          want(a, OP_RECV);
          want(a->peer, OP_RECV);
        }
        if (!(cqe->flags & IORING_CQE_F_MORE)) accept_more(ls);
      } else if (op == OP_RECV) {
        if (cqe->res <= 0) { /* end of stream, an error, or the linked send failed (-ECANCELED) */
          shutdown(e->fd, SHUT_RDWR);
          shutdown(e->peer->fd, SHUT_RDWR);
          continue;
        }
        struct io_uring_sqe *s = next_sqe();
        io_uring_prep_send(s, e->peer->fd, e->buf, (size_t)cqe->res, MSG_NOSIGNAL | MSG_WAITALL);
        io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)e | OP_SEND);
        s->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
        want(e, OP_RECV);
      } /* OP_SEND: only failures are reported, and the linked recv reports them too */
    }
    io_uring_cq_advance(&ring, seen);
  }
}

/* batch: one buffer per event slot, since all of a wake-up's recvs complete before any send. */
#define SLOTS 64
static uint8_t slot_buf[SLOTS][BUF];

static void run_batch(int ls, int server_port) {
  struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
  int rc = io_uring_queue_init_params(2 * SLOTS, &ring, &p);
  if (rc < 0) {
    fprintf(stderr, "plain: io_uring: %s\n", strerror(-rc));
    exit(1);
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, evs[SLOTS];
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  int got[SLOTS];
  for (;;) {
    int n = epoll_wait(ep, evs, SLOTS, -1), want_n = 0;
    for (int i = 0; i < n; i++) {
      end_t *e = evs[i].data.ptr;
      got[i] = 0;
      if (!e) {
        accept_into(ep, ls, server_port);
        continue;
      }
      if (e->fd < 0) continue;
      struct io_uring_sqe *s = io_uring_get_sqe(&ring);
      io_uring_prep_recv(s, e->fd, slot_buf[i], BUF, MSG_DONTWAIT);
      io_uring_sqe_set_data64(s, (uint64_t)i);
      want_n++;
    }
    if (want_n == 0) continue;
    io_uring_submit_and_wait(&ring, (unsigned)want_n);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      got[cqe->user_data] = cqe->res;
    }
    io_uring_cq_advance(&ring, seen);
    int send_n = 0;
    for (int i = 0; i < n; i++) {
      end_t *e = evs[i].data.ptr;
      if (!e || e->fd < 0) continue;
      if (got[i] == -EAGAIN || got[i] == -EINTR) continue;
      if (got[i] <= 0) {
        close(e->fd);
        close(e->peer->fd);
        e->fd = e->peer->fd = -1;
        continue;
      }
      struct io_uring_sqe *s = io_uring_get_sqe(&ring);
      io_uring_prep_send(s, e->peer->fd, slot_buf[i], (size_t)got[i], MSG_NOSIGNAL | MSG_DONTWAIT);
      io_uring_sqe_set_data64(s, (uint64_t)i);
      send_n++;
    }
    if (send_n == 0) continue;
    io_uring_submit_and_wait(&ring, (unsigned)send_n);
    seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      int i = (int)cqe->user_data;
      end_t *e = evs[i].data.ptr;
      /* What a full socket did not take is written the plain way (rare with pgbench). */
      for (size_t done = cqe->res > 0 ? (size_t)cqe->res : 0; done < (size_t)got[i] && e->peer->fd >= 0;) {
        ssize_t w = send(e->peer->fd, slot_buf[i] + done, (size_t)got[i] - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) usleep(50);
        else if (w < 0) break;
        else done += (size_t)w;
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
}

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[1], "epoll") && strcmp(argv[1], "uring") && strcmp(argv[1], "batch"))) {
    fprintf(stderr, "usage: plain epoll|uring|batch <listen-port> <server-port>\n");
    return 2;
  }
  int ls = listen_on(atoi(argv[2]));
  if (!strcmp(argv[1], "epoll")) run_epoll(ls, atoi(argv[3]));
  else if (!strcmp(argv[1], "batch")) run_batch(ls, atoi(argv[3]));
  else run_uring(ls, atoi(argv[3]));
  return 0;
}
