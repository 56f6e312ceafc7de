// The native relay's N-API functions (see relay.c for the relay threads): attach a session's
// descriptors, detach it, hand a session back to JavaScript with what it had not dealt with, the
// threads' loads, and the pure decisions of pin.c, scan.c and balance.c exposed for tests.
#include <node_api.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "relay.h"

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

/* argv[0..n-1] of the call (undefined where the caller passed fewer) and argc, how many it passed. */
#define ARGS(n)                \
  size_t argc = (n);           \
  napi_value argv[(n)];        \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL))

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
  const char *what;
  for (int i = 0; i < wanted_threads; i++)
    if (relay_start_thread(i, &what) < 0) return throw_errno(env, what);
  return name;
}

/* threads(n): how many relay threads to start with the first session (1..16); returns the count in use. */
static napi_value set_threads(napi_env env, napi_callback_info info) {
  ARGS(1);
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

/* The references attach took (NULL where it did not get that far). */
static void drop_refs(napi_env env, relay_t *r) {
  if (r->state_ref) napi_delete_reference(env, r->state_ref);
  if (r->callback_ref) napi_delete_reference(env, r->callback_ref);
  r->state_ref = r->callback_ref = NULL;
}

/* attach(clientFd, serverFd, state: Float64Array, checkPins, maxMessageLength, onHandback) -> handle */
static napi_value attach(napi_env env, napi_callback_info info) {
  ARGS(6);
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

  const char *what;
  relay_t *r = relay_new(cfd, sfd, data, check_pins, (int64_t)max_len, &what);
  if (!r) return throw_errno(env, what);
  if (napi_create_reference(env, argv[2], 1, &r->state_ref) != napi_ok || napi_create_reference(env, argv[5], 1, &r->callback_ref) != napi_ok) {
    drop_refs(env, r);
    relay_discard(r);
    napi_throw_error(env, "ERR_BATON_RELAY", "native relay: cannot keep the session's state and callback");
    return NULL;
  }
  if (relay_watch(r) < 0) {
    int saved = errno;
    drop_refs(env, r);
    relay_discard(r);
    errno = saved;
    return throw_errno(env, "watching a session's descriptors");
  }
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

/* threadLoads() -> [{ sessions, load, io }] per relay thread started (load: per mille of its last
 * window; io: how it does its system calls, "io_uring" or "plain: " and why). */
static napi_value thread_loads_js(napi_env env, napi_callback_info info) {
  thread_load_t t[MAX_THREADS];
  int n = thread_loads(t);
  napi_value arr, o;
  CHECK(napi_create_array_with_length(env, (size_t)n, &arr));
  for (int i = 0; i < n; i++) {
    CHECK(napi_create_object(env, &o));
    CHECK(set_int(env, o, "sessions", t[i].sessions));
    CHECK(set_int(env, o, "load", t[i].load));
    /* Known once the thread has run its first lines; "starting" until then. */
    char io[sizeof workers[i]->io] = "starting";
    pthread_mutex_lock(&workers[i]->lock);
    if (workers[i]->io[0]) memcpy(io, workers[i]->io, sizeof io);
    pthread_mutex_unlock(&workers[i]->lock);
    napi_value v;
    CHECK(napi_create_string_utf8(env, io, NAPI_AUTO_LENGTH, &v));
    CHECK(napi_set_named_property(env, o, "io", v));
    CHECK(napi_set_element(env, arr, (uint32_t)i, o));
  }
  return arr;
}

/* moveSessions(from, to): thread `from` moves all its sessions to `to` as they show activity,
 * whatever the loads say (an operator's or a test's request). */
static napi_value move_sessions(napi_env env, napi_callback_info info) {
  ARGS(2);
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
  shed_all(from, to);
  return NULL;
}

/* balance([{ sessions, load }], self) -> { pick, to, count }: the decisions of balance.c, for tests. */
static napi_value balance_js(napi_env env, napi_callback_info info) {
  ARGS(2);
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
  ARGS(1);
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
  ARGS(3);
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
