// Batched system calls for a relay thread (bench/forwarders measured the idea: docs/benchmarks.md).
// After an epoll_wait, the sockets to read are read with one io_uring_enter, and what each read
// passes on is written with a second: three system calls per wake-up however many sessions it
// serves, where one recv and one send per socket cost 1 + 2n. Every operation carries MSG_DONTWAIT,
// so it completes within its io_uring_enter and nothing is in flight between batches: moves, hand-backs
// and detaches see the relay exactly as without the ring.
//
// Locking: every relay with an event in the batch is locked from before its socket is read until
// what was read has been passed on or handed back, so that JavaScript (detach) never finds bytes
// read and not yet dealt with. A relay has at most one end read per batch: if both are readable,
// the other is reported again by the next epoll_wait (level-triggered). Hand-backs, which close the
// relay's descriptors, wait until no operation of the batch can refer to them.
#include <errno.h>
#include <stdio.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "relay.h"

struct io_uring *batch_ring_new(const char **why) {
  struct io_uring *ring = calloc(1, sizeof *ring);
  if (!ring) {
    *why = "no memory for an io_uring";
    return NULL;
  }
  struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
  int rc = io_uring_queue_init_params(2 * BATCH_READS, ring, &p);
  if (rc < 0) {
    free(ring);
    *why = strerror(-rc);
    return NULL;
  }
  return ring;
}

#define NO_RESULT (-(1 << 30))

typedef struct {
  relay_t *r;
  int from_client;
  ssize_t n;       /* the recv's result */
  read_plan_t plan;
  ssize_t sent;
} slot_t;

/* A send done the plain way (the ring failed): all of it taken or kept for EPOLLOUT, or -1. */
static ssize_t send_now(end_t *to, const uint8_t *b, size_t n) {
  return send_to(to, b, n) < 0 ? -1 : (ssize_t)n;
}

/* Submits `count` operations and records each result in its slot. Every operation submitted is
 * waited for, so none can complete later; one the kernel did not take keeps NO_RESULT and is never
 * submitted, since the ring is then given up (-1). */
static int run_ring(struct io_uring *ring, unsigned count, slot_t *slots, int want_sent) {
  int rc = io_uring_submit_and_wait(ring, count);
  unsigned submitted = rc < 0 ? 0 : (unsigned)rc;
  for (unsigned seen = 0; seen < submitted;) {
    struct io_uring_cqe *cqe;
    if (io_uring_wait_cqe(ring, &cqe) < 0) continue; /* EINTR: the operations are still owed */
    slot_t *s = &slots[cqe->user_data];
    if (want_sent) s->sent = cqe->res;
    else s->n = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    seen++;
  }
  return submitted == count ? 0 : -1;
}

static void give_up_ring(worker_t *w) {
  io_uring_queue_exit(w->ring);
  free(w->ring);
  w->ring = NULL;
  pthread_mutex_lock(&w->lock);
  snprintf(w->io, sizeof w->io, "plain: the io_uring failed");
  pthread_mutex_unlock(&w->lock);
}

int batch_events(worker_t *w, struct epoll_event *ev, int n) {
  relay_t *locked[64];
  slot_t slots[BATCH_READS];
  int nlocked = 0, nslots = 0;
  for (int i = 0; i < n; i++) {
    end_t *e = ev[i].data.ptr;
    if (!e || e->relay->in_batch) continue;
    pthread_mutex_lock(&e->relay->lock);
    e->relay->in_batch = 1;
    locked[nlocked++] = e->relay;
  }
  /* Hang-ups and writes first: a hand-back closes descriptors, which no read may use afterwards. */
  for (int i = 0; i < n; i++) {
    end_t *e = ev[i].data.ptr;
    if (!e || !e->relay->active) continue;
    relay_t *r = e->relay;
    int is_client = e == &r->client;
    if (ev[i].events & (EPOLLHUP | EPOLLERR)) {
      hand_back(r, is_client ? "client hung up" : "server hung up", 1, NULL, 0, NULL, 0);
    } else if ((ev[i].events & EPOLLOUT) && flush(e) < 0) {
      hand_back(r, is_client ? "client write error" : "server write error", 1, NULL, 0, NULL, 0);
    }
  }
  for (int i = 0; i < n && nslots < BATCH_READS; i++) {
    end_t *e = ev[i].data.ptr;
    if (!e || !(ev[i].events & EPOLLIN)) continue;
    relay_t *r = e->relay;
    int is_client = e == &r->client;
    end_t *other = is_client ? &r->server : &r->client;
    if (!r->active || r->reading || other->out_len > 0) continue;
    struct io_uring_sqe *sqe = io_uring_get_sqe(w->ring);
    if (!sqe) break; /* cannot happen with BATCH_READS below the ring's size; the rest wait */
    r->reading = 1;
    slots[nslots] = (slot_t){ .r = r, .from_client = is_client, .n = NO_RESULT, .sent = NO_RESULT };
    io_uring_prep_recv(sqe, e->fd, w->slots[nslots], READ_SIZE, MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, (uint64_t)nslots);
    nslots++;
  }
  /* If the ring fails, what it did read is still passed on (with plain sends), and it is given up:
   * the thread goes on with a system call per recv and send. */
  int broken = nslots > 0 && run_ring(w->ring, (unsigned)nslots, slots, 0) < 0;
  unsigned nsend = 0;
  for (int i = 0; i < nslots; i++) {
    slot_t *s = &slots[i];
    if (s->n == NO_RESULT || s->n == -EAGAIN || s->n == -EINTR) continue;
    if (s->n < 0) s->n = -1;
    s->plan = plan_read(s->r, s->from_client, w->slots[i], s->n);
    if (s->plan.pass == 0 || broken) continue;
    end_t *to = s->from_client ? &s->r->server : &s->r->client;
    struct io_uring_sqe *sqe = io_uring_get_sqe(w->ring);
    if (!sqe) continue; /* sent the plain way below */
    io_uring_prep_send(sqe, to->fd, w->slots[i], s->plan.pass, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)i);
    nsend++;
  }
  if (!broken && nsend > 0 && run_ring(w->ring, nsend, slots, 1) < 0) broken = 1;
  for (int i = 0; i < nslots; i++) {
    slot_t *s = &slots[i];
    if (s->n == NO_RESULT || s->n == -EAGAIN || s->n == -EINTR) continue;
    ssize_t sent = s->plan.pass;
    if (s->plan.pass > 0 && s->sent != NO_RESULT) sent = s->sent == -EAGAIN ? 0 : s->sent < 0 ? -1 : s->sent;
    else if (s->plan.pass > 0) sent = send_now(s->from_client ? &s->r->server : &s->r->client, w->slots[i], s->plan.pass);
    finish_read(s->r, s->from_client, w->slots[i], s->n, s->plan, sent);
  }
  for (int i = 0; i < nlocked; i++) {
    relay_t *r = locked[i];
    r->in_batch = 0;
    r->reading = 0;
    if (r->active) update_events(r);
    pthread_mutex_unlock(&r->lock);
  }
  if (broken) give_up_ring(w);
  return broken ? -1 : 0;
}
