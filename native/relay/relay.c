// Baton proxy's native relay: after startup, a session's bytes go client <-> server on relay threads
// (one epoll each, like HAProxy's threads) without entering JavaScript. It tracks what the TypeScript
// relay tracks (message boundaries, ReadyForQuery status, byte and query counters, in a Float64Array
// shared with the Session) and hands the session back to TypeScript, with every byte it has not dealt
// with, whenever something needs a decision there: EOF or an error, a Terminate, a bad length, a
// message that may pin the session, server data while the session is idle. TypeScript can also take
// a session back at any time (detach). See src/proxy/native-relay.ts for the TypeScript side.
//
// Threads: a relay's fields are guarded by its mutex. A relay thread frees a relay only between two
// epoll_wait batches, after JavaScript has taken its handover and no callback to JavaScript is queued,
// so an event still in a batch never points at freed memory. Each thread measures its load over
// BALANCE_WINDOW_MS and, at the end of a window, may move some of its sessions to another thread
// (balance.h decides); a session moves only between batches of the thread that carries it.
#include <node_api.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "balance.h"
#include "pin.h"
#include "scan.h"

#define MAX_THREADS 16
#define READ_SIZE 65536

typedef struct relay relay_t;
typedef struct worker worker_t;

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
  pthread_mutex_t lock; /* guards retired, shed, shed_to, forced */
  relay_t *retired;
  int shed, shed_to;  /* sessions to move to thread shed_to as they show activity */
  int forced;         /* the shed was asked for (moveSessions), not decided by load */
  int64_t window_start, cpu_start; /* wall clock and this thread's CPU time when the window began */
  int moved;          /* sessions moved away during this window, whose load is then not a steady one */
  int received;       /* atomic: sessions moved in during this window (as unsteady) */
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
  int queued_call;  /* a handback callback to JavaScript is queued */
  int consumed;     /* JavaScript has taken the handover */
  int retired;      /* handed to the relay thread to be freed */
  int marked;       /* picked to move to another thread at the end of this batch */
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

static worker_t *workers[MAX_THREADS];
static int nworkers, wanted_threads = 2; /* nworkers: atomic, workers[i] is set before it grows */
static napi_threadsafe_function tsfn;


static uint8_t *copy_bytes(const uint8_t *b, size_t n) {
  if (!b || n == 0) return NULL;
  uint8_t *c = malloc(n);
  if (c) memcpy(c, b, n);
  return c;
}

/* Stops moving bytes (relay locked): the descriptors leave epoll and close, the scanners' positions
 * go to the shared array. Safe from either thread. */
static void stop_locked(relay_t *r) {
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
static void hand_back(relay_t *r, const char *reason, int ended, const uint8_t *from_client, size_t nc, const uint8_t *from_server, size_t ns) {
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

/* Writes to an end, keeping what the socket would not take; -1 on a socket error. */
static int send_to(end_t *e, const uint8_t *b, size_t n) {
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
  if (done < n) {
    /* Reads stop while bytes wait, so an end never has more than one chunk queued. */
    e->out = malloc(n - done);
    if (!e->out) return -1;
    memcpy(e->out, b + done, n - done);
    e->out_len = n - done;
    e->out_off = 0;
  }
  return 0;
}

static int flush(end_t *e) {
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

static void client_readable(relay_t *r, uint8_t *buf) {
  ssize_t n = recv(r->client.fd, buf, READ_SIZE, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    hand_back(r, n == 0 ? "client closed" : "client error", 1, NULL, 0, NULL, 0);
    return;
  }
  size_t pass = scan_client(&r->cscan, r->state, buf, (size_t)n, r->check_pins, r->max_len, &r->unnamed, &r->kept);
  if (pass > 0) {
    r->state[ST_TO_SERVER] += (double)pass;
    if (send_to(&r->server, buf, pass) < 0) {
      hand_back(r, "server write error", 1, buf + pass, (size_t)n - pass, NULL, 0);
      return;
    }
  }
  if (pass < (size_t)n) hand_back(r, "client message for the TypeScript relay", 0, buf + pass, (size_t)n - pass, NULL, 0);
}

static void server_readable(relay_t *r, uint8_t *buf) {
  ssize_t n = recv(r->server.fd, buf, READ_SIZE, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    hand_back(r, n == 0 ? "server closed" : "server error", 1, NULL, 0, NULL, 0);
    return;
  }
  /* Unsolicited server messages on an idle session (a notification, a goodbye) are TypeScript's call. */
  if (r->state[ST_BUSY] == 0) {
    hand_back(r, "server message while idle", 0, NULL, 0, buf, (size_t)n);
    return;
  }
  if (!scan_server(&r->sscan, r->state, buf, (size_t)n, &r->kept)) {
    hand_back(r, "invalid server message", 0, NULL, 0, buf, (size_t)n);
    return;
  }
  r->state[ST_TO_CLIENT] += (double)n;
  if (send_to(&r->client, buf, (size_t)n) < 0) hand_back(r, "client write error", 1, NULL, 0, NULL, 0);
}

static void set_events(relay_t *r, end_t *e, uint32_t events) {
  if (events == e->events) return;
  struct epoll_event ev = { .events = events, .data.ptr = e };
  /* No events at all is still a registration (with an empty mask), so MOD always applies. */
  epoll_ctl(r->worker->epfd, EPOLL_CTL_MOD, e->fd, &ev);
  e->events = events;
}

/* Read an end only while the other end has nothing waiting; watch writability while this end does. */
static void update_events(relay_t *r) {
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
  if ((events & EPOLLIN) && other->out_len == 0) {
    if (is_client) client_readable(r, buf);
    else server_readable(r, buf);
  }
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

static int thread_loads(thread_load_t *t) {
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
  struct epoll_event ev[64];
  relay_t *moving[64];
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
    for (int i = 0; i < n; i++) {
      end_t *e = ev[i].data.ptr;
      if (!e) {
        uint64_t count;
        if (read(w->wakefd, &count, sizeof count) < 0) { /* nothing to drain */ }
        continue;
      }
      relay_t *r = e->relay;
      pthread_mutex_lock(&r->lock);
      if (r->active) on_event(r, e, ev[i].events, w->rbuf);
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

/* On the JavaScript thread: once the handover is taken and no callback is queued, the relay thread frees it. */
static void retire_if_done(relay_t *r) {
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

static napi_value buffer_or_null(napi_env env, const uint8_t *data, size_t n) {
  napi_value v;
  if (!data || n == 0) {
    napi_get_null(env, &v);
    return v;
  }
  void *copy;
  napi_create_buffer_copy(env, n, data, &copy, &v);
  return v;
}

/* The confirmed settings as an array of Buffers (Query frames), in the order they took effect. */
static napi_value kept_frames(napi_env env, const kept_t *k) {
  napi_value arr;
  napi_create_array_with_length(env, (size_t)k->n, &arr);
  for (int j = 0; j < k->n; j++) napi_set_element(env, arr, (uint32_t)j, buffer_or_null(env, k->at[j].frame, k->at[j].len));
  return arr;
}

/* The handover as a JavaScript object (relay locked, stopped): bytes still to write each way, bytes read but not dealt with. */
static napi_value take_handover(napi_env env, relay_t *r) {
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, r->reason ? r->reason : "detached", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "reason", v);
  napi_get_boolean(env, r->ended, &v);
  napi_set_named_property(env, o, "ended", v);
  napi_set_named_property(env, o, "toServer", buffer_or_null(env, r->server.out ? r->server.out + r->server.out_off : NULL, r->server.out_len));
  napi_set_named_property(env, o, "toClient", buffer_or_null(env, r->client.out ? r->client.out + r->client.out_off : NULL, r->client.out_len));
  napi_set_named_property(env, o, "fromClient", buffer_or_null(env, r->from_client, r->nc));
  napi_set_named_property(env, o, "fromServer", buffer_or_null(env, r->from_server, r->ns));
  /* Left out when nothing changed it, so TypeScript keeps what it knew. */
  if (r->unnamed.changed) napi_set_named_property(env, o, "unnamedParse", buffer_or_null(env, r->unnamed.frame, r->unnamed.len));
  if (r->kept.n > 0) napi_set_named_property(env, o, "keptSettings", kept_frames(env, &r->kept));
  if (r->kept.pending.frame) {
    napi_set_named_property(env, o, "pendingSetting", buffer_or_null(env, r->kept.pending.frame, r->kept.pending.len));
    napi_get_boolean(env, r->kept.pending_failed, &v);
    napi_set_named_property(env, o, "pendingSettingFailed", v);
  }
  kept_clear(&r->kept); /* TypeScript's replay log has them now */
  r->consumed = 1;
  return o;
}

/* Runs on the JavaScript thread for each hand_back. */
static void call_js(napi_env env, napi_value unused, void *context, void *data) {
  relay_t *r = data;
  if (!env) return; /* the environment is going away */
  pthread_mutex_lock(&r->lock);
  r->queued_call = 0;
  napi_value handover = NULL;
  if (!r->consumed) handover = take_handover(env, r);
  pthread_mutex_unlock(&r->lock);
  if (handover) {
    napi_value cb, recv;
    napi_get_reference_value(env, r->callback_ref, &cb);
    napi_get_global(env, &recv);
    napi_delete_reference(env, r->callback_ref);
    napi_delete_reference(env, r->state_ref);
    /* The callback runs after the relay can no longer be freed under it: nothing below touches r. */
    retire_if_done(r);
    napi_call_function(env, recv, cb, 1, &handover, NULL);
    return;
  }
  retire_if_done(r);
}

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, "ERR_BATON_RELAY", "native relay: " #call " failed"); \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "native relay: %s: %s", what, strerror(errno));
  napi_throw_error(env, "ERR_BATON_RELAY", msg);
  return NULL;
}

static napi_value start_workers(napi_env env) {
  napi_value name;
  CHECK(napi_create_string_utf8(env, "BatonRelay", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, call_js, &tsfn));
  /* Sessions keep the proxy alive through their sockets and listeners; the relay must not. */
  CHECK(napi_unref_threadsafe_function(env, tsfn));
  for (int i = 0; i < wanted_threads; i++) {
    worker_t *w = calloc(1, sizeof *w);
    if (!w) return throw_errno(env, "allocating a relay thread");
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->wakefd < 0) return throw_errno(env, "epoll/eventfd for a relay thread");
    pthread_mutex_init(&w->lock, NULL);
    w->index = i;
    w->shed_to = -1;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) return throw_errno(env, "starting a relay thread");
    pthread_detach(w->thread);
    workers[i] = w;
    __atomic_store_n(&nworkers, i + 1, __ATOMIC_RELEASE);
  }
  return name;
}

/* threads(n): how many relay threads to start with the first session (1..16); returns the count in use. */
static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t n;
  CHECK(napi_get_value_int32(env, argv[0], &n));
  if (n < 1 || n > MAX_THREADS) {
    napi_throw_range_error(env, NULL, "native relay: threads must be 1..16");
    return NULL;
  }
  if (nworkers == 0) wanted_threads = n;
  napi_value v;
  CHECK(napi_create_int32(env, nworkers ? nworkers : wanted_threads, &v));
  return v;
}

/* attach(clientFd, serverFd, state: Float64Array, checkPins, maxMessageLength, onHandback) -> handle */
static napi_value attach(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) {
    napi_throw_type_error(env, NULL, "attach(clientFd, serverFd, state, checkPins, maxMessageLength, onHandback)");
    return NULL;
  }
  int32_t cfd, sfd;
  double max_len;
  bool check_pins;
  CHECK(napi_get_value_int32(env, argv[0], &cfd));
  CHECK(napi_get_value_int32(env, argv[1], &sfd));
  napi_typedarray_type type;
  size_t length;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[2], &type, &length, &data, NULL, NULL));
  if (type != napi_float64_array || length < ST_LEN) {
    napi_throw_type_error(env, NULL, "state must be a Float64Array of the relay's layout");
    return NULL;
  }
  CHECK(napi_get_value_bool(env, argv[3], &check_pins));
  CHECK(napi_get_value_double(env, argv[4], &max_len));
  if (nworkers == 0 && !start_workers(env)) return NULL;

  relay_t *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, "allocating a relay");
  pthread_mutex_init(&r->lock, NULL);
  thread_load_t loads[MAX_THREADS];
  int n = thread_loads(loads);
  r->worker = workers[balance_pick(loads, n)];
  __atomic_add_fetch(&r->worker->sessions, 1, __ATOMIC_RELAXED);
  r->state = data;
  r->check_pins = check_pins;
  r->max_len = (int64_t)max_len;
  scanner_load(&r->cscan, r->state + ST_CLIENT_SCAN);
  scanner_load(&r->sscan, r->state + ST_SERVER_SCAN);
  r->client.relay = r->server.relay = r;
  r->client.events = r->server.events = EPOLLIN;
  r->client.fd = dup(cfd);
  r->server.fd = r->client.fd < 0 ? -1 : dup(sfd);
  if (r->server.fd < 0) {
    if (r->client.fd >= 0) close(r->client.fd);
    free(r);
    return throw_errno(env, "duplicating a session's descriptors");
  }
  if (napi_create_reference(env, argv[2], 1, &r->state_ref) != napi_ok || napi_create_reference(env, argv[5], 1, &r->callback_ref) != napi_ok) {
    close(r->client.fd);
    close(r->server.fd);
    free(r);
    napi_throw_error(env, "ERR_BATON_RELAY", "native relay: cannot keep the session's state and callback");
    return NULL;
  }
  /* Locked until both descriptors are watched: the relay thread may see events at once. */
  pthread_mutex_lock(&r->lock);
  r->active = 1;
  struct epoll_event ce = { .events = EPOLLIN, .data.ptr = &r->client };
  struct epoll_event se = { .events = EPOLLIN, .data.ptr = &r->server };
  if (epoll_ctl(r->worker->epfd, EPOLL_CTL_ADD, r->client.fd, &ce) < 0 || epoll_ctl(r->worker->epfd, EPOLL_CTL_ADD, r->server.fd, &se) < 0) {
    int saved = errno;
    stop_locked(r);
    pthread_mutex_unlock(&r->lock);
    napi_delete_reference(env, r->state_ref);
    napi_delete_reference(env, r->callback_ref);
    free(r);
    errno = saved;
    return throw_errno(env, "watching a session's descriptors");
  }
  pthread_mutex_unlock(&r->lock);
  napi_value handle;
  /* No finalizer: the relay is freed by its thread once retired; the Session drops the handle first. */
  CHECK(napi_create_external(env, r, NULL, NULL, &handle));
  return handle;
}

/* The relay of a call's only argument, a handle from attach(); NULL with a TypeError thrown if it is not one. */
static relay_t *relay_arg(napi_env env, napi_callback_info info, const char *usage) {
  size_t argc = 1;
  napi_value argv[1];
  relay_t *r = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_external(env, argv[0], (void **)&r) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  return r;
}

/* detach(handle) -> the handover (also when the relay had just given the session back and the
 * callback is still queued: the callback then does nothing). Never call it again with this handle. */
static napi_value detach(napi_env env, napi_callback_info info) {
  relay_t *r = relay_arg(env, info, "detach(handle)");
  if (!r) return NULL;
  pthread_mutex_lock(&r->lock);
  napi_value o = NULL;
  if (r->active) stop_locked(r);
  if (!r->consumed) o = take_handover(env, r);
  pthread_mutex_unlock(&r->lock);
  if (o) {
    napi_delete_reference(env, r->callback_ref);
    napi_delete_reference(env, r->state_ref);
  } else {
    napi_get_null(env, &o);
  }
  retire_if_done(r);
  return o;
}

/* obj[name] = value (an int32). */
static napi_status set_int(napi_env env, napi_value obj, const char *name, int32_t value) {
  napi_value v;
  napi_status st = napi_create_int32(env, value, &v);
  return st == napi_ok ? napi_set_named_property(env, obj, name, v) : st;
}

/* *out = obj[name] as an int32. */
static napi_status get_int(napi_env env, napi_value obj, const char *name, int32_t *out) {
  napi_value v;
  napi_status st = napi_get_named_property(env, obj, name, &v);
  return st == napi_ok ? napi_get_value_int32(env, v, out) : st;
}

/* threadLoads() -> [{ sessions, load }] per relay thread started (load: per mille of its last window). */
static napi_value thread_loads_js(napi_env env, napi_callback_info info) {
  thread_load_t t[MAX_THREADS];
  int n = thread_loads(t);
  napi_value arr, o;
  CHECK(napi_create_array_with_length(env, (size_t)n, &arr));
  for (int i = 0; i < n; i++) {
    CHECK(napi_create_object(env, &o));
    CHECK(set_int(env, o, "sessions", t[i].sessions));
    CHECK(set_int(env, o, "load", t[i].load));
    CHECK(napi_set_element(env, arr, (uint32_t)i, o));
  }
  return arr;
}

/* moveSessions(from, to): thread `from` moves all its sessions to `to` as they show activity,
 * whatever the loads say (an operator's or a test's request). */
static napi_value move_sessions(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t from, to;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &from) != napi_ok || napi_get_value_int32(env, argv[1], &to) != napi_ok) {
    napi_throw_type_error(env, NULL, "moveSessions(from, to)");
    return NULL;
  }
  int n = __atomic_load_n(&nworkers, __ATOMIC_ACQUIRE);
  if (from < 0 || to < 0 || from >= n || to >= n || from == to) {
    napi_throw_range_error(env, NULL, "native relay: moveSessions needs two different started threads");
    return NULL;
  }
  worker_t *w = workers[from];
  pthread_mutex_lock(&w->lock);
  w->shed = __atomic_load_n(&w->sessions, __ATOMIC_RELAXED);
  w->shed_to = to;
  w->forced = w->shed > 0;
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

/* balance([{ sessions, load }], self) -> { pick, to, count }: the decisions of balance.c, for tests. */
static napi_value balance_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t n;
  int32_t self;
  if (argc < 2 || napi_get_array_length(env, argv[0], &n) != napi_ok || n < 1 || n > MAX_THREADS || napi_get_value_int32(env, argv[1], &self) != napi_ok) {
    napi_throw_type_error(env, NULL, "balance([{ sessions, load }] (1..16), self)");
    return NULL;
  }
  thread_load_t t[MAX_THREADS];
  for (uint32_t i = 0; i < n; i++) {
    napi_value o;
    CHECK(napi_get_element(env, argv[0], i, &o));
    CHECK(get_int(env, o, "sessions", &t[i].sessions));
    CHECK(get_int(env, o, "load", &t[i].load));
  }
  int count;
  int to = balance_decide(t, (int)n, self, &count);
  napi_value o;
  CHECK(napi_create_object(env, &o));
  CHECK(set_int(env, o, "pick", balance_pick(t, (int)n)));
  CHECK(set_int(env, o, "to", to));
  CHECK(set_int(env, o, "count", count));
  return o;
}

/* keptSettings(handle) -> [Buffer]: the settings the relay keeps for the session now (SHOW CLIENTS). */
static napi_value kept_settings_js(napi_env env, napi_callback_info info) {
  relay_t *r = relay_arg(env, info, "keptSettings(handle)");
  if (!r) return NULL;
  pthread_mutex_lock(&r->lock);
  napi_value arr = kept_frames(env, &r->kept);
  pthread_mutex_unlock(&r->lock);
  return arr;
}

/* sessionSetting(sql: Buffer) -> the lower-cased parameter name pin_session_setting finds, or null: for tests. */
static napi_value session_setting_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *sql = NULL;
  size_t n = 0;
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &sql, &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "sessionSetting(sql: Buffer)");
    return NULL;
  }
  char name[SETTING_NAME_MAX];
  size_t len = pin_session_setting(sql, n, name);
  napi_value v;
  if (len) CHECK(napi_create_string_utf8(env, name, len, &v));
  else CHECK(napi_get_null(env, &v));
  return v;
}

/* messageVerdict(type, body | null, flags = 0) -> 0 safe, 1 pins, 2 unsure, 3 a setting the relay may keep: the pin fast path, for tests. */
static napi_value message_verdict(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t type;
  CHECK(napi_get_value_uint32(env, argv[0], &type));
  int32_t flags = 0;
  if (argc > 2) CHECK(napi_get_value_int32(env, argv[2], &flags));
  napi_valuetype kind;
  CHECK(napi_typeof(env, argv[1], &kind));
  void *body = NULL;
  size_t n = 0;
  if (kind != napi_null) CHECK(napi_get_buffer_info(env, argv[1], &body, &n));
  napi_value v;
  CHECK(napi_create_int32(env, pin_message_verdict((uint8_t)type, body, n, flags), &v));
  return v;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "attach", NULL, attach, NULL, NULL, NULL, napi_default, NULL },
    { "detach", NULL, detach, NULL, NULL, NULL, napi_default, NULL },
    { "threads", NULL, set_threads, NULL, NULL, NULL, napi_default, NULL },
    { "messageVerdict", NULL, message_verdict, NULL, NULL, NULL, napi_default, NULL },
    { "threadLoads", NULL, thread_loads_js, NULL, NULL, NULL, napi_default, NULL },
    { "moveSessions", NULL, move_sessions, NULL, NULL, NULL, napi_default, NULL },
    { "balance", NULL, balance_js, NULL, NULL, NULL, napi_default, NULL },
    { "keptSettings", NULL, kept_settings_js, NULL, NULL, NULL, napi_default, NULL },
    { "sessionSetting", NULL, session_setting_js, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_value state_len;
  napi_create_uint32(env, ST_LEN, &state_len);
  napi_set_named_property(env, exports, "stateLength", state_len);
  napi_value limits;
  napi_create_object(env, &limits);
  set_int(env, limits, "windowMs", BALANCE_WINDOW_MS);
  set_int(env, limits, "spill", BALANCE_SPILL);
  set_int(env, limits, "quiet", BALANCE_QUIET);
  set_int(env, limits, "pack", BALANCE_PACK);
  napi_set_named_property(env, exports, "balanceLimits", limits);
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
