#include "scan.h"
#include <stdlib.h>
#include <string.h>
#include "pin.h"

void scanner_load(scanner_t *s, const double *at) {
  s->remaining = (int64_t)at[0];
  s->fill = (int)at[1];
  uint64_t packed = (uint64_t)at[2];
  for (int i = 0; i < 5; i++) s->header[i] = (uint8_t)(packed >> (8 * i));
  s->want_status = at[3] != 0;
}

void scanner_store(const scanner_t *s, double *at) {
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

/* A client message on its way to the server: what the server will owe (the twin of countSent in src/proxy/in-flight.ts). */
static void count_sent(double *state, uint8_t type) {
  if (type == 'Q' || type == 'S' || type == 'F') {
    state[ST_SYNCS] += 1;
    state[ST_UNSYNCED] = 0;
  } else if (type != 'd' && type != 'c' && type != 'f') { /* COPY data belongs to the statement that asked for it */
    state[ST_UNSYNCED] = 1;
  }
  state[ST_BUSY] = 1;
}

/* A safe Query, an unnamed Parse or a Close of the unnamed statement (whose body is whole in the
 * chunk: the pin check asked for it). */
static void remember_unnamed(unnamed_parse_t *u, uint8_t type, const uint8_t *body, size_t body_len) {
  u->changed = 1;
  u->len = 0;
  if (type != 'P' || body_len + 5 > UNNAMED_PARSE_MAX) return; /* a Query or Close destroys the unnamed statement */
  size_t need = body_len + 5;
  if (u->cap < need) {
    uint8_t *grown = realloc(u->frame, need);
    if (!grown) return; /* out of memory: not carried */
    u->frame = grown;
    u->cap = need;
  }
  uint32_t len = (uint32_t)body_len + 4;
  u->frame[0] = 'P';
  u->frame[1] = (uint8_t)(len >> 24);
  u->frame[2] = (uint8_t)(len >> 16);
  u->frame[3] = (uint8_t)(len >> 8);
  u->frame[4] = (uint8_t)len;
  memcpy(u->frame + 5, body, body_len);
  u->len = need;
}

void kept_clear(kept_t *k) {
  for (int j = 0; j < k->n; j++) free(k->at[j].frame);
  free(k->pending.frame);
  memset(k, 0, sizeof *k);
}

static int kept_index(const kept_t *k, const char *name) {
  for (int j = 0; j < k->n; j++)
    if (strcmp(k->at[j].name, name) == 0) return j;
  return -1;
}

/* A Query that pin_message_verdict calls PIN_SETTING, whole in the chunk: whether it may pass as the
 * pending setting. Only when it is alone (nothing else in flight, outside a transaction block), so
 * that the first ReadyForQuery to come is its own, and when the list has room for it once it has
 * replaced its parameter's earlier value (then committing it cannot fail). */
static int keep_pending(kept_t *k, const double *state, const uint8_t *body, size_t body_len) {
  if (!k || k->pending.frame || state[ST_SYNCS] != 0 || state[ST_UNSYNCED] != 0 || state[ST_TX] != 'I' || body_len == 0) return 0;
  char name[SETTING_NAME_MAX];
  if (!pin_session_setting(body, body_len - 1, name)) return 0;
  int j = kept_index(k, name);
  size_t len = body_len + 5;
  if ((j < 0 && k->n >= KEPT_MAX) || k->bytes + len - (j >= 0 ? k->at[j].len : 0) > KEPT_BYTES) return 0;
  uint8_t *frame = malloc(len);
  if (!frame) return 0; /* out of memory: TypeScript takes it */
  uint32_t wire = (uint32_t)body_len + 4;
  frame[0] = 'Q';
  frame[1] = (uint8_t)(wire >> 24);
  frame[2] = (uint8_t)(wire >> 16);
  frame[3] = (uint8_t)(wire >> 8);
  frame[4] = (uint8_t)wire;
  memcpy(frame + 5, body, body_len);
  memcpy(k->pending.name, name, sizeof name);
  k->pending.frame = frame;
  k->pending.len = len;
  k->pending_failed = 0;
  return 1;
}

/* The pending setting was answered: kept in place of its parameter's earlier value when it took
 * effect, dropped otherwise. */
static void resolve_pending(kept_t *k, double *state, int took_effect) {
  kept_setting_t p = k->pending;
  k->pending.frame = NULL;
  k->pending_failed = 0;
  if (!took_effect) {
    free(p.frame);
    return;
  }
  int j = kept_index(k, p.name);
  if (j >= 0) {
    free(k->at[j].frame);
    k->bytes -= k->at[j].len;
    memmove(k->at + j, k->at + j + 1, (size_t)(k->n - j - 1) * sizeof *k->at);
    k->n--;
  }
  k->at[k->n++] = p; /* room: keep_pending checked it, and nothing else changes the list meanwhile */
  k->bytes += p.len;
  state[ST_RESET_ALL_NOOP] = 0; /* RESET ALL now undoes a setting TypeScript must forget */
}

size_t scan_client(scanner_t *s, double *state, const uint8_t *b, size_t n, int check_pins, int64_t max_len, unnamed_parse_t *unnamed, kept_t *kept) {
  size_t i = 0;
  /* Where the batch being read began, when it began in this chunk on an idle session: TypeScript must
   * follow a batch from its first message to match its replies, so a message it must judge takes the
   * whole batch back with it (JDBC sends BEGIN and a SET in one batch when autocommit is off). */
  size_t batch_at = SIZE_MAX;
  scanner_t batch_scan = *s;
  double batch_busy = 0;
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
    int hand_over = type == 'X' || len < 4 || len > max_len;
    if (!hand_over && check_pins && (type == 'Q' || type == 'P' || type == 'F' || type == 'C')) {
      size_t body = (size_t)len - 4;
      int whole = i + body <= n;
      int flags = state[ST_RESET_ALL_NOOP] != 0 ? PIN_RESET_ALL_NOOP : 0;
      int verdict = pin_message_verdict(type, whole ? b + i : NULL, body, flags);
      hand_over = verdict != PIN_SAFE && !(verdict == PIN_SETTING && keep_pending(kept, state, b + i, body));
    }
    if (hand_over && check_pins && batch_at != SIZE_MAX && type != 'X' && len >= 4 && len <= max_len) {
      *s = batch_scan;
      state[ST_SYNCS] = 0;
      state[ST_UNSYNCED] = 0;
      state[ST_BUSY] = batch_busy;
      return batch_at;
    }
    if (hand_over) {
      *s = before;
      return at;
    }
    if (state[ST_SYNCS] == 0 && state[ST_UNSYNCED] == 0 && type != 'd' && type != 'c' && type != 'f') {
      batch_at = at;
      batch_scan = before;
      batch_busy = state[ST_BUSY];
    }
    /* Safe means whole here: a named Parse or Close pins, and so does a body not whole in the chunk. */
    if (check_pins && unnamed && (type == 'Q' || type == 'P' || (type == 'C' && len > 5 && b[i] == 'S'))) remember_unnamed(unnamed, type, b + i, (size_t)len - 4);
    count_sent(state, type);
    if (type == 'Q' || type == 'S' || type == 'F') batch_at = SIZE_MAX; /* whole: its replies are the server's to give */
    s->remaining = len - 4;
  }
  return n;
}

int scan_server(scanner_t *scanner, double *state, const uint8_t *b, size_t n, kept_t *kept) {
  scanner_t s = *scanner;
  double queries = state[ST_QUERIES], busy = state[ST_BUSY], tx = state[ST_TX], syncs = state[ST_SYNCS];
  int pending = kept && kept->pending.frame, failed = pending && kept->pending_failed, answered = -1;
  size_t i = 0;
  while (i < n) {
    if (s.remaining > 0) {
      if (s.want_status) {
        s.want_status = 0;
        tx = b[i];
        /* The pending setting was sent alone: this ReadyForQuery is its own. */
        if (pending && answered < 0) answered = !failed && b[i] == 'I';
        if (syncs > 0) syncs--;
        busy = syncs > 0 || state[ST_UNSYNCED] != 0;
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
    if (type == 'E' && pending && answered < 0) failed = 1;
  }
  *scanner = s;
  if (answered >= 0) resolve_pending(kept, state, answered);
  else if (pending) kept->pending_failed = failed;
  state[ST_QUERIES] = queries;
  state[ST_BUSY] = busy;
  state[ST_TX] = tx;
  state[ST_SYNCS] = syncs;
  return 1;
}
