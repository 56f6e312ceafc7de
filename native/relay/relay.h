// The native relay's threads and sessions, shared by relay.c (the relay threads: epoll, bytes, load
// windows, moves between threads) and relay_js.c (the N-API functions JavaScript calls).
#ifndef BATON_RELAY_H
#define BATON_RELAY_H

#include <node_api.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>
#include "balance.h"
#include "pin.h"
#include "scan.h"

#define MAX_THREADS 16
#define READ_SIZE 65536
#define BATCH_READS 32 /* sockets read in one batch at most (batch.c) */

typedef struct relay relay_t;
typedef struct worker worker_t;
struct io_uring;

typedef struct {
  int fd;
  uint32_t events;
  uint8_t *out; /* bytes waiting to be written to this end */
  size_t out_len, out_off;
  relay_t *relay;
} end_t;

struct worker {
  pthread_t thread;
  int index;
  int epfd, wakefd;
  int sessions, load; /* read by other threads (atomics): relays it carries, load in per mille */
  pthread_mutex_t lock; /* guards retired, shed, shed_to, forced, io */
  relay_t *retired;
  int shed, shed_to;  /* sessions to move to thread shed_to as they show activity */
  int forced;         /* the shed was asked for (moveSessions), not decided by load */
  int64_t window_start, cpu_start; /* wall clock and this thread's CPU time when the window began */
  int moved;          /* sessions moved away during this window, whose load is then not a steady one */
  int received;       /* atomic: sessions moved in during this window (as unsteady) */
  struct io_uring *ring; /* batch.c's, made by the thread itself; NULL: one system call per recv and send */
  uint8_t (*slots)[READ_SIZE]; /* a buffer per read of a batch */
  char io[96];        /* how it does its system calls: "io_uring", or "plain: " and why; "" until the
                       * thread has started (guarded by lock) */
  uint8_t rbuf[READ_SIZE];
};

struct relay {
  pthread_mutex_t lock;
  worker_t *worker;
  end_t client, server;
  double *state;
  scanner_t cscan, sscan;
  int check_pins;
  int64_t max_len;
  int active;       /* the relay thread moves bytes */
  int watched;      /* relay_watch ran: its descriptors are closed when it stops */
  int queued_call;  /* a handback callback to JavaScript is queued */
  int consumed;     /* JavaScript has taken the handover */
  int retired;      /* handed to the relay thread to be freed */
  int marked;       /* picked to move to another thread at the end of this batch */
  int in_batch;     /* locked by its relay thread for the batch being handled (batch.c) */
  int reading;      /* one of its ends is read in this batch (batch.c) */
  const char *reason;
  int ended;        /* the handback is for EOF or a socket error: the session is ending */
  uint8_t *from_client, *from_server;
  size_t nc, ns;
  unnamed_parse_t unnamed;
  kept_t kept;
  /* Touched on the JavaScript thread only. */
  napi_ref state_ref, callback_ref;
  relay_t *next_retired;
};

extern worker_t *workers[MAX_THREADS];
extern int nworkers, wanted_threads; /* nworkers: atomic, workers[i] is set before it grows */
/* Queues a handback's call to JavaScript (relay_js.c's call_js). */
extern napi_threadsafe_function tsfn;

/* What to do with the bytes one recv returned (n: its result): pass `pass` of them to the other end,
 * then, with a reason, hand the session back with what was not passed. */
typedef struct {
  size_t pass;
  const char *reason;
  int ended;
} read_plan_t;

/* On the relay thread, relay locked: the scanners and counters see the bytes. */
read_plan_t plan_read(relay_t *r, int from_client, const uint8_t *buf, ssize_t n);
/* After the pass bytes were offered to the other end (`sent` of them taken, -1: a socket error):
 * keeps the rest for EPOLLOUT, hands back as planned. May stop the relay. */
void finish_read(relay_t *r, int from_client, const uint8_t *buf, ssize_t n, read_plan_t p, ssize_t sent);
void hand_back(relay_t *r, const char *reason, int ended, const uint8_t *from_client, size_t nc, const uint8_t *from_server, size_t ns);
/* Writes an end's waiting bytes; -1 on a socket error. */
int flush(end_t *e);
/* Writes to an end, keeping what the socket would not take; -1 on a socket error. */
int send_to(end_t *e, const uint8_t *b, size_t n);
/* Read an end only while the other end has nothing waiting; watch writability while this end does. */
void update_events(relay_t *r);

/* batch.c: a relay thread's io_uring, for reading and writing all of an epoll_wait's sockets in two
 * system calls. Returns NULL (and why, in *why) when the kernel or a seccomp filter refuses one. */
struct io_uring *batch_ring_new(const char **why);
/* Handles an epoll_wait's events (wake-ups left out) with the ring. Returns -1 when the ring failed:
 * the events were still handled, and the thread has no ring any more. */
int batch_events(worker_t *w, struct epoll_event *ev, int n);

/* Starts relay thread i; -1 with errno set and *what naming the step that failed. */
int relay_start_thread(int i, const char **what);
/* The sessions and load of each started thread; returns how many there are. */
int thread_loads(thread_load_t *t);
/* A relay for duplicates of a session's descriptors, on the thread balance_pick chooses, not yet
 * watched; NULL with errno set and *what naming the step that failed. */
relay_t *relay_new(int client_fd, int server_fd, double *state, int check_pins, int64_t max_len, const char **what);
/* Starts moving the relay's bytes; -1 with errno set, the relay then stopped (descriptors closed). */
int relay_watch(relay_t *r);
/* Frees a relay that moves no bytes: never watched (its descriptors are closed too) or stopped. */
void relay_discard(relay_t *r);
/* Stops moving bytes (relay locked): the descriptors leave epoll and close. Safe from either thread. */
void stop_locked(relay_t *r);
/* On the JavaScript thread: once the handover is taken and no callback is queued, the relay thread frees it. */
void retire_if_done(relay_t *r);
/* Thread `from` moves all its sessions to `to` as they show activity, whatever the loads say. */
void shed_all(int from, int to);

#endif
