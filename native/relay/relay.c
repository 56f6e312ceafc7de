// Baton proxy's native relay: after startup, a session's bytes go client <-> server on relay threads
// (one epoll each, like HAProxy's threads) without entering JavaScript. It tracks what the TypeScript
// relay tracks (message boundaries, ReadyForQuery status, byte and query counters, in a Float64Array
// shared with the Session) and hands the session back to TypeScript, with every byte it has not dealt
// with, whenever something needs a decision there: EOF or an error, a Terminate, a bad length, a
// message that may pin the session, server data while the session is idle. TypeScript can also take
// a session back at any time (detach). relay_js.c holds the functions JavaScript calls, and
// src/proxy/native-relay.ts is the TypeScript side.
//
// Threads: a relay's fields are guarded by its mutex. A relay thread frees a relay only between two
// epoll_wait batches, after JavaScript has taken its handover and no callback to JavaScript is queued,
// so an event still in a batch never points at freed memory. Each thread measures its load over
// BALANCE_WINDOW_MS and, at the end of a window, may move some of its sessions to another thread
// (balance.h decides); a session moves only between batches of the thread that carries it.
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "relay.h"

worker_t *workers[MAX_THREADS];
int nworkers, wanted_threads = 2;
napi_threadsafe_function tsfn;

static uint8_t *copy_bytes(const uint8_t *b, size_t n) {
  if (!b || n == 0) return NULL;
  uint8_t *c = malloc(n);
  if (c) memcpy(c, b, n);
  return c;
}

/* The scanners' positions go to the shared array, for TypeScript to go on from. */
void stop_locked(relay_t *r) {
  r->active = 0;
  __atomic_sub_fetch(&r->worker->sessions, 1, __ATOMIC_RELAXED);
  epoll_ctl(r->worker->epfd, EPOLL_CTL_DEL, r->client.fd, NULL);
  epoll_ctl(r->worker->epfd, EPOLL_CTL_DEL, r->server.fd, NULL);
  close(r->client.fd);
  close(r->server.fd);
  scanner_store(&r->cscan, r->state + ST_CLIENT_SCAN);
  scanner_store(&r->sscan, r->state + ST_SERVER_SCAN);
}

/* On the relay thread (relay locked): give the session back, keeping what TypeScript must deal with. */
/* `ended`: EOF or a socket error, the session is ending and stays with TypeScript. */
void hand_back(relay_t *r, const char *reason, int ended, const uint8_t *from_client, size_t nc, const uint8_t *from_server, size_t ns) {
  stop_locked(r);
  r->reason = reason;
  r->ended = ended;
  r->from_client = copy_bytes(from_client, nc);
  r->nc = r->from_client ? nc : 0;
  r->from_server = copy_bytes(from_server, ns);
  r->ns = r->from_server ? ns : 0;
  r->queued_call = 1;
  if (napi_call_threadsafe_function(tsfn, r, napi_tsfn_nonblocking) != napi_ok) r->queued_call = 0;
}

/* Keeps what a socket did not take; reads stop while bytes wait, so an end never has more than one
 * chunk queued. -1 when there is no memory for it. */
static int keep_rest(end_t *e, const uint8_t *b, size_t n) {
  if (n == 0) return 0;
  e->out = malloc(n);
  if (!e->out) return -1;
  memcpy(e->out, b, n);
  e->out_len = n;
  e->out_off = 0;
  return 0;
}

int send_to(end_t *e, const uint8_t *b, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = send(e->fd, b + done, n - done, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return -1;
    }
    done += (size_t)w;
  }
  return keep_rest(e, b + done, n - done);
}

int flush(end_t *e) {
  while (e->out_len > 0) {
    ssize_t w = send(e->fd, e->out + e->out_off, e->out_len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    e->out_off += (size_t)w;
    e->out_len -= (size_t)w;
  }
  free(e->out);
  e->out = NULL;
  e->out_off = 0;
  return 0;
}

read_plan_t plan_read(relay_t *r, int from_client, const uint8_t *buf, ssize_t n) {
  read_plan_t p = { 0 };
  if (n <= 0) {
    p.reason = from_client ? (n == 0 ? "client closed" : "client error") : (n == 0 ? "server closed" : "server error");
    p.ended = 1;
    return p;
  }
  if (from_client) {
    p.pass = scan_client(&r->cscan, r->state, buf, (size_t)n, r->check_pins, r->max_len, &r->unnamed, &r->kept);
    r->state[ST_TO_SERVER] += (double)p.pass;
    if (p.pass < (size_t)n) p.reason = "client message for the TypeScript relay";
    return p;
  }
  /* Unsolicited server messages on an idle session (a notification, a goodbye) are TypeScript's call. */
  if (r->state[ST_BUSY] == 0) {
    p.reason = "server message while idle";
    return p;
  }
  if (!scan_server(&r->sscan, r->state, buf, (size_t)n, &r->kept)) {
    p.reason = "invalid server message";
    return p;
  }
  p.pass = (size_t)n;
  r->state[ST_TO_CLIENT] += (double)n;
  return p;
}

void finish_read(relay_t *r, int from_client, const uint8_t *buf, ssize_t n, read_plan_t p, ssize_t sent) {
  end_t *to = from_client ? &r->server : &r->client;
  if (p.pass > 0) {
    if (sent < 0 || keep_rest(to, buf + sent, p.pass - (size_t)sent) < 0) {
      if (from_client) hand_back(r, "server write error", 1, buf + p.pass, (size_t)n - p.pass, NULL, 0);
      else hand_back(r, "client write error", 1, NULL, 0, NULL, 0);
      return;
    }
  }
  if (!p.reason) return;
  /* What was not passed on goes back with the session: the rest of the client's bytes, or all of the server's. */
  size_t kept = n > 0 ? (size_t)n - p.pass : 0;
  if (from_client) hand_back(r, p.reason, p.ended, buf + p.pass, kept, NULL, 0);
  else hand_back(r, p.reason, p.ended, NULL, 0, kept ? buf : NULL, kept);
}

static void end_readable(relay_t *r, int from_client, uint8_t *buf) {
  end_t *from = from_client ? &r->client : &r->server, *to = from_client ? &r->server : &r->client;
  ssize_t n = recv(from->fd, buf, READ_SIZE, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  read_plan_t p = plan_read(r, from_client, buf, n);
  /* send_to keeps what the socket did not take itself, so to finish_read it is all sent. */
  ssize_t sent = p.pass > 0 && send_to(to, buf, p.pass) < 0 ? -1 : (ssize_t)p.pass;
  finish_read(r, from_client, buf, n, p, sent);
}

static void set_events(relay_t *r, end_t *e, uint32_t events) {
  if (events == e->events) return;
  struct epoll_event ev = { .events = events, .data.ptr = e };
  /* No events at all is still a registration (with an empty mask), so MOD always applies. */
  epoll_ctl(r->worker->epfd, EPOLL_CTL_MOD, e->fd, &ev);
  e->events = events;
}

/* Read an end only while the other end has nothing waiting; watch writability while this end does. */
void update_events(relay_t *r) {
  set_events(r, &r->client, (r->server.out_len == 0 ? EPOLLIN : 0) | (r->client.out_len > 0 ? EPOLLOUT : 0));
  set_events(r, &r->server, (r->client.out_len == 0 ? EPOLLIN : 0) | (r->server.out_len > 0 ? EPOLLOUT : 0));
}

static void on_event(relay_t *r, end_t *e, uint32_t events, uint8_t *buf) {
  int is_client = e == &r->client;
  /* Reported even when not asked for: TypeScript reads what is left and sees the end itself. */
  if (events & (EPOLLHUP | EPOLLERR)) {
    hand_back(r, is_client ? "client hung up" : "server hung up", 1, NULL, 0, NULL, 0);
    return;
  }
  if ((events & EPOLLOUT) && flush(e) < 0) {
    hand_back(r, is_client ? "client write error" : "server write error", 1, NULL, 0, NULL, 0);
    return;
  }
  end_t *other = is_client ? &r->server : &r->client;
  if ((events & EPOLLIN) && other->out_len == 0) end_readable(r, is_client, buf);
  if (r->active) update_events(r);
}

static void free_relay(relay_t *r) {
  free(r->client.out);
  free(r->server.out);
  free(r->from_client);
  free(r->from_server);
  free(r->unnamed.frame);
  kept_clear(&r->kept);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int thread_loads(thread_load_t *t) {
  int n = __atomic_load_n(&nworkers, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++) {
    t[i].sessions = __atomic_load_n(&workers[i]->sessions, __ATOMIC_RELAXED);
    t[i].load = __atomic_load_n(&workers[i]->load, __ATOMIC_RELAXED);
  }
  return n;
}

/* Relay locked, on the thread that carries it, between its batches: the session goes to thread `to`. */
static void move_locked(relay_t *r, worker_t *to) {
  worker_t *from = r->worker;
  epoll_ctl(from->epfd, EPOLL_CTL_DEL, r->client.fd, NULL);
  epoll_ctl(from->epfd, EPOLL_CTL_DEL, r->server.fd, NULL);
  __atomic_sub_fetch(&from->sessions, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&to->sessions, 1, __ATOMIC_RELAXED);
  r->worker = to;
  __atomic_store_n(&to->received, 1, __ATOMIC_RELAXED);
  struct epoll_event ce = { .events = r->client.events, .data.ptr = &r->client };
  struct epoll_event se = { .events = r->server.events, .data.ptr = &r->server };
  if (epoll_ctl(to->epfd, EPOLL_CTL_ADD, r->client.fd, &ce) < 0 || epoll_ctl(to->epfd, EPOLL_CTL_ADD, r->server.fd, &se) < 0)
    hand_back(r, "cannot move to another relay thread", 0, NULL, 0, NULL, 0);
}

/* End of a load window: publish the load and decide what to move in the next one. */
static void end_window(worker_t *w, int64_t now) {
  int64_t cpu = thread_cpu_ns();
  int64_t span = now - w->window_start;
  int load = span > 0 ? (int)((cpu - w->cpu_start) * 1000 / span) : 0;
  __atomic_store_n(&w->load, load > 1000 ? 1000 : load, __ATOMIC_RELAXED);
  w->window_start = now;
  w->cpu_start = cpu;
  thread_load_t t[MAX_THREADS];
  int n = thread_loads(t);
  /* A window in which sessions moved away or in does not show the load that stays. */
  int steady = !w->moved && !__atomic_exchange_n(&w->received, 0, __ATOMIC_RELAXED);
  pthread_mutex_lock(&w->lock);
  if (!w->forced) {
    w->shed = 0;
    if (steady) w->shed_to = balance_decide(t, n, w->index, &w->shed);
  }
  pthread_mutex_unlock(&w->lock);
  w->moved = 0;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  /* Named for top -H and ps -L (and the benchmark, which measures these threads' waits apart). */
  char name[16];
  snprintf(name, sizeof name, "baton-relay-%d", w->index);
  pthread_setname_np(pthread_self(), name);
  struct epoll_event ev[64];
  relay_t *moving[64];
  /* The ring must be made by the thread that uses it (IORING_SETUP_SINGLE_ISSUER). */
  const char *why = "BATON_RELAY_IO=plain";
  const char *io = getenv("BATON_RELAY_IO");
  if (!io || strcmp(io, "plain") != 0) {
    w->slots = malloc(sizeof *w->slots * BATCH_READS);
    w->ring = w->slots ? batch_ring_new(&why) : NULL;
    if (!w->slots) why = "no memory for the batch's buffers";
    if (!w->ring) {
      free(w->slots);
      w->slots = NULL;
    }
  }
  pthread_mutex_lock(&w->lock);
  snprintf(w->io, sizeof w->io, "%s%s", w->ring ? "io_uring" : "plain: ", w->ring ? "" : why);
  pthread_mutex_unlock(&w->lock);
  w->window_start = now_ns();
  w->cpu_start = thread_cpu_ns();
  int64_t now = w->window_start; /* as of the end of the last batch: the clock is read once a batch */
  for (;;) {
    /* With sessions, wake at least once a window so the load it publishes is never stale; without,
     * sleep until one comes, as an idle thread. */
    int timeout = -1;
    int idle = __atomic_load_n(&w->sessions, __ATOMIC_RELAXED) == 0;
    if (idle) {
      __atomic_store_n(&w->load, 0, __ATOMIC_RELAXED);
    } else {
      int64_t left = w->window_start + (int64_t)BALANCE_WINDOW_MS * 1000000 - now;
      timeout = left > 0 ? (int)(left / 1000000) + 1 : 0;
    }
    int n = epoll_wait(w->epfd, ev, 64, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      return NULL;
    }
    if (idle) {
      w->window_start = now_ns();
      w->cpu_start = thread_cpu_ns();
    }
    pthread_mutex_lock(&w->lock);
    int shed = w->shed;
    worker_t *shed_to = w->shed_to >= 0 && w->shed_to < MAX_THREADS && w->shed_to != w->index ? workers[w->shed_to] : NULL;
    pthread_mutex_unlock(&w->lock);
    int nmoving = 0;
    int batched = w->ring != NULL;
    if (batched) batch_events(w, ev, n); /* handles them all, even when its ring fails */
    for (int i = 0; i < n; i++) {
      end_t *e = ev[i].data.ptr;
      if (!e) {
        uint64_t count;
        if (read(w->wakefd, &count, sizeof count) < 0) { /* nothing to drain */ }
        continue;
      }
      if (batched && !shed_to) continue;
      relay_t *r = e->relay;
      pthread_mutex_lock(&r->lock);
      if (!batched && r->active) on_event(r, e, ev[i].events, w->rbuf);
      if (r->active && shed_to && nmoving < shed && !r->marked) {
        r->marked = 1;
        moving[nmoving++] = r;
      }
      pthread_mutex_unlock(&r->lock);
    }
    /* Moved after the batch: no event of it points at a session that is no longer this thread's. */
    int moved = 0;
    for (int i = 0; i < nmoving; i++) {
      relay_t *r = moving[i];
      pthread_mutex_lock(&r->lock);
      r->marked = 0;
      if (r->active && r->worker == w) {
        move_locked(r, shed_to);
        moved++;
      }
      pthread_mutex_unlock(&r->lock);
    }
    /* Between batches no event refers to a retired relay any more. */
    pthread_mutex_lock(&w->lock);
    relay_t *dead = w->retired;
    w->retired = NULL;
    if (moved) {
      w->shed = w->shed > moved ? w->shed - moved : 0;
      if (w->shed == 0) w->forced = 0;
    }
    pthread_mutex_unlock(&w->lock);
    w->moved += moved;
    while (dead) {
      relay_t *next = dead->next_retired;
      free_relay(dead);
      dead = next;
    }
    now = now_ns();
    if (now - w->window_start >= (int64_t)BALANCE_WINDOW_MS * 1000000) end_window(w, now);
  }
}

void retire_if_done(relay_t *r) {
  if (!r->consumed || r->queued_call || r->retired) return;
  r->retired = 1;
  worker_t *w = r->worker;
  pthread_mutex_lock(&w->lock);
  r->next_retired = w->retired;
  w->retired = r;
  pthread_mutex_unlock(&w->lock);
  uint64_t one = 1;
  if (write(w->wakefd, &one, sizeof one) < 0) { /* the relay is freed after the next batch instead */ }
}

int relay_start_thread(int i, const char **what) {
  worker_t *w = calloc(1, sizeof *w);
  if (!w) {
    *what = "allocating a relay thread";
    return -1;
  }
  w->epfd = epoll_create1(EPOLL_CLOEXEC);
  w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->epfd < 0 || w->wakefd < 0) {
    *what = "epoll/eventfd for a relay thread";
    return -1;
  }
  pthread_mutex_init(&w->lock, NULL);
  w->index = i;
  w->shed_to = -1;
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev);
  int err = pthread_create(&w->thread, NULL, worker_main, w);
  if (err != 0) {
    errno = err;
    *what = "starting a relay thread";
    return -1;
  }
  pthread_detach(w->thread);
  workers[i] = w;
  __atomic_store_n(&nworkers, i + 1, __ATOMIC_RELEASE);
  return 0;
}

relay_t *relay_new(int client_fd, int server_fd, double *state, int check_pins, int64_t max_len, const char **what) {
  relay_t *r = calloc(1, sizeof *r);
  if (!r) {
    *what = "allocating a relay";
    return NULL;
  }
  r->client.fd = dup(client_fd);
  r->server.fd = r->client.fd < 0 ? -1 : dup(server_fd);
  if (r->server.fd < 0) {
    int saved = errno;
    if (r->client.fd >= 0) close(r->client.fd);
    free(r);
    errno = saved;
    *what = "duplicating a session's descriptors";
    return NULL;
  }
  pthread_mutex_init(&r->lock, NULL);
  thread_load_t loads[MAX_THREADS];
  int n = thread_loads(loads);
  r->worker = workers[balance_pick(loads, n)];
  r->state = state;
  r->check_pins = check_pins;
  r->max_len = max_len;
  scanner_load(&r->cscan, r->state + ST_CLIENT_SCAN);
  scanner_load(&r->sscan, r->state + ST_SERVER_SCAN);
  r->client.relay = r->server.relay = r;
  r->client.events = r->server.events = EPOLLIN;
  return r;
}

int relay_watch(relay_t *r) {
  /* Locked until both descriptors are watched: the relay thread may see events at once. */
  pthread_mutex_lock(&r->lock);
  r->active = 1;
  r->watched = 1;
  __atomic_add_fetch(&r->worker->sessions, 1, __ATOMIC_RELAXED);
  struct epoll_event ce = { .events = EPOLLIN, .data.ptr = &r->client };
  struct epoll_event se = { .events = EPOLLIN, .data.ptr = &r->server };
  int rc = 0;
  if (epoll_ctl(r->worker->epfd, EPOLL_CTL_ADD, r->client.fd, &ce) < 0 || epoll_ctl(r->worker->epfd, EPOLL_CTL_ADD, r->server.fd, &se) < 0) {
    int saved = errno;
    stop_locked(r);
    errno = saved;
    rc = -1;
  }
  pthread_mutex_unlock(&r->lock);
  return rc;
}

void relay_discard(relay_t *r) {
  if (!r->watched) {
    close(r->client.fd);
    close(r->server.fd);
  }
  free_relay(r);
}

void shed_all(int from, int to) {
  worker_t *w = workers[from];
  pthread_mutex_lock(&w->lock);
  w->shed = __atomic_load_n(&w->sessions, __ATOMIC_RELAXED);
  w->shed_to = to;
  w->forced = w->shed > 0;
  pthread_mutex_unlock(&w->lock);
}
