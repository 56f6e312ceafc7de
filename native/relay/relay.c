// Baton proxy's native relay: after startup, a session's bytes go client <-> server through
// read/send on the Node event loop's own epoll (uv_poll on dup'ed descriptors) without entering
// JavaScript. It tracks what the TypeScript relay tracks (message boundaries, ReadyForQuery status,
// byte and query counters, in a Float64Array shared with the Session) and hands the session back to
// TypeScript, with every byte it has not dealt with, whenever something needs a decision there:
// EOF or an error, a Terminate, a bad length, a message that may pin the session, server data while
// the session is idle. See src/proxy/native-relay.ts for the TypeScript side.
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "pin.h"

/* Layout of the shared Float64Array; keep in step with STATE in src/proxy/native-relay.ts. */
enum {
  ST_TO_SERVER, ST_TO_CLIENT, ST_QUERIES, ST_BUSY, ST_TX,
  ST_CLIENT_SCAN, /* remaining, header fill, header bytes packed, wants status: 4 slots */
  ST_SERVER_SCAN = ST_CLIENT_SCAN + 4,
  ST_LEN = ST_SERVER_SCAN + 4
};

typedef struct {
  int64_t remaining; /* body bytes of the current message still to pass */
  int fill;          /* bytes of a split 5-byte header seen so far */
  uint8_t header[5];
  int want_status;   /* the next byte is a ReadyForQuery status */
} scanner_t;

typedef struct relay relay_t;

typedef struct {
  uv_poll_t poll;
  int fd;
  int events;
  uint8_t *out; /* bytes waiting to be written to this end */
  size_t out_len, out_off;
  relay_t *relay;
} end_t;

struct relay {
  napi_env env;
  end_t client, server;
  double *state;
  napi_ref state_ref, callback_ref;
  napi_async_context async;
  scanner_t cscan, sscan;
  int check_pins;
  int64_t max_len;
  int active;
  int refs; /* the JavaScript handle + the two poll handles until closed */
};

static uint8_t rbuf[65536];

static void scanner_load(scanner_t *s, const double *at) {
  s->remaining = (int64_t)at[0];
  s->fill = (int)at[1];
  uint64_t packed = (uint64_t)at[2];
  for (int i = 0; i < 5; i++) s->header[i] = (uint8_t)(packed >> (8 * i));
  s->want_status = at[3] != 0;
}

static void scanner_store(const scanner_t *s, double *at) {
  uint64_t packed = 0;
  for (int i = 0; i < 5; i++) packed |= (uint64_t)s->header[i] << (8 * i);
  at[0] = (double)s->remaining;
  at[1] = s->fill;
  at[2] = (double)packed;
  at[3] = s->want_status;
}

static int32_t be32(const uint8_t *p) {
  return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
}

static void release(relay_t *r) {
  if (--r->refs == 0) free(r);
}

static void on_closed(uv_handle_t *h) {
  end_t *e = h->data;
  close(e->fd);
  free(e->out);
  e->out = NULL;
  release(e->relay);
}

/* Reads a message header at b[*i]; returns 1 with type and length once the header is whole. */
static int read_header(scanner_t *s, const uint8_t *b, size_t n, size_t *i, uint8_t *type, int32_t *len) {
  if (s->fill == 0 && n - *i >= 5) {
    *type = b[*i];
    *len = be32(b + *i + 1);
    *i += 5;
    return 1;
  }
  size_t take = 5 - (size_t)s->fill;
  if (take > n - *i) take = n - *i;
  memcpy(s->header + s->fill, b + *i, take);
  s->fill += (int)take;
  *i += take;
  if (s->fill < 5) return 0;
  s->fill = 0;
  *type = s->header[0];
  *len = be32(s->header + 1);
  return 1;
}

/* Scans client bytes; returns how many may be forwarded before the first message TypeScript must see. */
static size_t scan_client(relay_t *r, const uint8_t *b, size_t n) {
  scanner_t *s = &r->cscan;
  size_t i = 0;
  while (i < n) {
    if (s->remaining > 0) {
      size_t take = (size_t)s->remaining < n - i ? (size_t)s->remaining : n - i;
      s->remaining -= (int64_t)take;
      i += take;
      continue;
    }
    scanner_t before = *s;
    size_t at = i;
    uint8_t type;
    int32_t len;
    if (!read_header(s, b, n, &i, &type, &len)) continue;
    int hand_over = type == 'X' || len < 4 || len > r->max_len;
    if (!hand_over && r->check_pins && (type == 'Q' || type == 'P' || type == 'F')) {
      size_t body = (size_t)len - 4;
      int whole = i + body <= n;
      hand_over = pin_message_verdict(type, whole ? b + i : NULL, body) != PIN_SAFE;
    }
    if (hand_over) {
      *s = before;
      return at;
    }
    s->remaining = len - 4;
  }
  return n;
}

/* Scans server bytes; 0 when they break the protocol (TypeScript reports it), else 1. */
static int scan_server(relay_t *r, const uint8_t *b, size_t n) {
  scanner_t s = r->sscan;
  double queries = r->state[ST_QUERIES], busy = r->state[ST_BUSY], tx = r->state[ST_TX];
  size_t i = 0;
  while (i < n) {
    if (s.remaining > 0) {
      if (s.want_status) {
        s.want_status = 0;
        tx = b[i];
        busy = 0;
        queries++;
      }
      size_t take = (size_t)s.remaining < n - i ? (size_t)s.remaining : n - i;
      s.remaining -= (int64_t)take;
      i += take;
      continue;
    }
    uint8_t type;
    int32_t len;
    if (!read_header(&s, b, n, &i, &type, &len)) continue;
    if (len < 4) return 0;
    s.remaining = len - 4;
    if (type == 'Z' && s.remaining == 1) s.want_status = 1;
  }
  r->sscan = s;
  r->state[ST_QUERIES] = queries;
  r->state[ST_BUSY] = busy;
  r->state[ST_TX] = tx;
  return 1;
}

static void update_polls(relay_t *r);

/* Stops relaying: polls stopped, descriptors closed once libuv lets go of them, scanner state saved. */
static void stop(relay_t *r) {
  r->active = 0;
  scanner_store(&r->cscan, r->state + ST_CLIENT_SCAN);
  scanner_store(&r->sscan, r->state + ST_SERVER_SCAN);
  uv_poll_stop(&r->client.poll);
  uv_poll_stop(&r->server.poll);
  uv_close((uv_handle_t *)&r->client.poll, on_closed);
  uv_close((uv_handle_t *)&r->server.poll, on_closed);
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

/* What TypeScript takes over: bytes still to write each way, and bytes read but not dealt with. */
static napi_value handover(relay_t *r, const char *reason, const uint8_t *from_client, size_t nc, const uint8_t *from_server, size_t ns) {
  napi_env env = r->env;
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "reason", v);
  napi_set_named_property(env, o, "toServer", buffer_or_null(env, r->server.out ? r->server.out + r->server.out_off : NULL, r->server.out_len));
  napi_set_named_property(env, o, "toClient", buffer_or_null(env, r->client.out ? r->client.out + r->client.out_off : NULL, r->client.out_len));
  napi_set_named_property(env, o, "fromClient", buffer_or_null(env, from_client, nc));
  napi_set_named_property(env, o, "fromServer", buffer_or_null(env, from_server, ns));
  return o;
}

static void release_js(relay_t *r) {
  napi_delete_reference(r->env, r->state_ref);
  napi_delete_reference(r->env, r->callback_ref);
  napi_async_destroy(r->env, r->async);
}

/* The relay gives up the session on its own: stops and calls the TypeScript callback. */
static void hand_back(relay_t *r, const char *reason, const uint8_t *from_client, size_t nc, const uint8_t *from_server, size_t ns) {
  napi_env env = r->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  stop(r);
  napi_value arg = handover(r, reason, from_client, nc, from_server, ns);
  napi_value cb, recv;
  napi_get_reference_value(env, r->callback_ref, &cb);
  napi_get_global(env, &recv);
  napi_async_context async = r->async;
  napi_delete_reference(env, r->state_ref);
  napi_delete_reference(env, r->callback_ref);
  if (napi_make_callback(env, async, recv, cb, 1, &arg, NULL) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_async_destroy(env, async);
  napi_close_handle_scope(env, scope);
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

static void client_readable(relay_t *r) {
  ssize_t n = read(r->client.fd, rbuf, sizeof rbuf);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) { hand_back(r, n == 0 ? "client closed" : "client error", NULL, 0, NULL, 0); return; }
  size_t pass = scan_client(r, rbuf, (size_t)n);
  if (pass > 0) {
    r->state[ST_BUSY] = 1;
    r->state[ST_TO_SERVER] += (double)pass;
    if (send_to(&r->server, rbuf, pass) < 0) { hand_back(r, "server write error", rbuf + pass, (size_t)n - pass, NULL, 0); return; }
  }
  if (pass < (size_t)n) hand_back(r, "client message for the TypeScript relay", rbuf + pass, (size_t)n - pass, NULL, 0);
}

static void server_readable(relay_t *r) {
  ssize_t n = read(r->server.fd, rbuf, sizeof rbuf);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) { hand_back(r, n == 0 ? "server closed" : "server error", NULL, 0, NULL, 0); return; }
  /* Unsolicited server messages on an idle session (a notification, a goodbye) are TypeScript's call. */
  if (r->state[ST_BUSY] == 0) { hand_back(r, "server message while idle", NULL, 0, rbuf, (size_t)n); return; }
  if (!scan_server(r, rbuf, (size_t)n)) { hand_back(r, "invalid server message", NULL, 0, rbuf, (size_t)n); return; }
  r->state[ST_TO_CLIENT] += (double)n;
  if (send_to(&r->client, rbuf, (size_t)n) < 0) hand_back(r, "client write error", NULL, 0, NULL, 0);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  end_t *e = h->data;
  relay_t *r = e->relay;
  if (!r->active) return;
  int is_client = e == &r->client;
  if (status < 0) { hand_back(r, is_client ? "client poll error" : "server poll error", NULL, 0, NULL, 0); return; }
  if ((events & UV_WRITABLE) && flush(e) < 0) { hand_back(r, is_client ? "client write error" : "server write error", NULL, 0, NULL, 0); return; }
  end_t *other = is_client ? &r->server : &r->client;
  if ((events & UV_READABLE) && other->out_len == 0) {
    if (is_client) client_readable(r);
    else server_readable(r);
  }
  if (r->active) update_polls(r);
}

static void set_events(end_t *e, int events) {
  if (events == e->events) return;
  e->events = events;
  if (events) uv_poll_start(&e->poll, events, on_poll);
  else uv_poll_stop(&e->poll);
}

/* Read an end only while the other end has nothing waiting; watch writability while this end does. */
static void update_polls(relay_t *r) {
  set_events(&r->client, (r->server.out_len == 0 ? UV_READABLE : 0) | (r->client.out_len > 0 ? UV_WRITABLE : 0));
  set_events(&r->server, (r->client.out_len == 0 ? UV_READABLE : 0) | (r->server.out_len > 0 ? UV_WRITABLE : 0));
}

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, "ERR_BATON_RELAY", "native relay: " #call " failed"); \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

static void finalize(napi_env env, void *data, void *hint) {
  relay_t *r = data;
  if (r->active) {
    /* The Session was collected while relaying (it never is: the descriptors keep it reachable through its sockets). */
    stop(r);
    release_js(r);
  }
  release(r);
}

static int init_end(relay_t *r, end_t *e, int fd) {
  e->relay = r;
  e->fd = dup(fd);
  if (e->fd < 0) return -1;
  uv_loop_t *loop;
  napi_get_uv_event_loop(r->env, &loop);
  if (uv_poll_init(loop, &e->poll, e->fd) != 0) {
    close(e->fd);
    return -1;
  }
  e->poll.data = e;
  return 0;
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
  relay_t *r = calloc(1, sizeof *r);
  if (!r) {
    napi_throw_error(env, "ERR_BATON_RELAY", "native relay: out of memory");
    return NULL;
  }
  r->env = env;
  r->state = data;
  r->check_pins = check_pins;
  r->max_len = (int64_t)max_len;
  scanner_load(&r->cscan, r->state + ST_CLIENT_SCAN);
  scanner_load(&r->sscan, r->state + ST_SERVER_SCAN);
  if (init_end(r, &r->client, cfd) < 0) {
    free(r);
    napi_throw_error(env, "ERR_BATON_RELAY", "native relay: cannot watch the client socket");
    return NULL;
  }
  if (init_end(r, &r->server, sfd) < 0) {
    r->refs = 1;
    uv_close((uv_handle_t *)&r->client.poll, on_closed);
    napi_throw_error(env, "ERR_BATON_RELAY", "native relay: cannot watch the server socket");
    return NULL;
  }
  CHECK(napi_create_reference(env, argv[2], 1, &r->state_ref));
  CHECK(napi_create_reference(env, argv[5], 1, &r->callback_ref));
  napi_value name;
  CHECK(napi_create_string_utf8(env, "BatonRelay", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &r->async));
  r->refs = 3;
  r->active = 1;
  update_polls(r);
  napi_value handle;
  CHECK(napi_create_external(env, r, finalize, NULL, &handle));
  return handle;
}

/* detach(handle) -> the handover, or null when the relay already handed the session back. */
static napi_value detach(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  relay_t *r;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&r) != napi_ok) {
    napi_throw_type_error(env, NULL, "detach(handle)");
    return NULL;
  }
  if (!r->active) {
    napi_value v;
    napi_get_null(env, &v);
    return v;
  }
  stop(r);
  napi_value o = handover(r, "detached", NULL, 0, NULL, 0);
  release_js(r);
  return o;
}

/* messageVerdict(type, body | null) -> 0 safe, 1 pins, 2 unsure: the pin fast path, for tests. */
static napi_value message_verdict(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t type;
  CHECK(napi_get_value_uint32(env, argv[0], &type));
  napi_valuetype kind;
  CHECK(napi_typeof(env, argv[1], &kind));
  void *body = NULL;
  size_t n = 0;
  if (kind != napi_null) CHECK(napi_get_buffer_info(env, argv[1], &body, &n));
  napi_value v;
  CHECK(napi_create_int32(env, pin_message_verdict((uint8_t)type, body, n), &v));
  return v;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "attach", NULL, attach, NULL, NULL, NULL, napi_default, NULL },
    { "detach", NULL, detach, NULL, NULL, NULL, napi_default, NULL },
    { "messageVerdict", NULL, message_verdict, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_value state_len;
  napi_create_uint32(env, ST_LEN, &state_len);
  napi_set_named_property(env, exports, "stateLength", state_len);
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
