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

size_t scan_client(scanner_t *s, double *state, const uint8_t *b, size_t n, int check_pins, int64_t max_len, unnamed_parse_t *unnamed) {
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
    int hand_over = type == 'X' || len < 4 || len > max_len;
    if (!hand_over && check_pins && (type == 'Q' || type == 'P' || type == 'F' || type == 'C')) {
      size_t body = (size_t)len - 4;
      int whole = i + body <= n;
      int flags = state[ST_RESET_ALL_NOOP] != 0 ? PIN_RESET_ALL_NOOP : 0;
      hand_over = pin_message_verdict(type, whole ? b + i : NULL, body, flags) != PIN_SAFE;
    }
    if (hand_over) {
      *s = before;
      return at;
    }
    /* Safe means whole here: a named Parse or Close pins, and so does a body not whole in the chunk. */
    if (check_pins && unnamed && (type == 'Q' || type == 'P' || (type == 'C' && len > 5 && b[i] == 'S'))) remember_unnamed(unnamed, type, b + i, (size_t)len - 4);
    count_sent(state, type);
    s->remaining = len - 4;
  }
  return n;
}

int scan_server(scanner_t *scanner, double *state, const uint8_t *b, size_t n) {
  scanner_t s = *scanner;
  double queries = state[ST_QUERIES], busy = state[ST_BUSY], tx = state[ST_TX], syncs = state[ST_SYNCS];
  size_t i = 0;
  while (i < n) {
    if (s.remaining > 0) {
      if (s.want_status) {
        s.want_status = 0;
        tx = b[i];
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
  }
  *scanner = s;
  state[ST_QUERIES] = queries;
  state[ST_BUSY] = busy;
  state[ST_TX] = tx;
  state[ST_SYNCS] = syncs;
  return 1;
}
