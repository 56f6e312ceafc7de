// Message boundaries in a relayed byte stream, for the native relay: the C twin of
// src/proxy/scanner.ts, whose position it shares through the session's Float64Array.
#ifndef BATON_SCAN_H
#define BATON_SCAN_H
#include <stddef.h>
#include <stdint.h>
#include "pin.h"

/* Layout of the shared Float64Array; keep in step with STATE in src/proxy/native-relay.ts. */
enum {
  ST_TO_SERVER, ST_TO_CLIENT, ST_QUERIES,
  ST_BUSY,     /* the server owes the client an answer: ST_SYNCS > 0 or ST_UNSYNCED */
  ST_TX,
  ST_SYNCS,    /* ReadyForQuery messages still due: Query, Sync and FunctionCall messages sent, not yet answered */
  ST_UNSYNCED, /* a message was sent after the last of those (a Parse before its Sync, a Flush) */
  ST_CLIENT_SCAN, /* remaining, header fill, header bytes packed, wants status: 4 slots */
  ST_SERVER_SCAN = ST_CLIENT_SCAN + 4,
  ST_RESET_ALL_NOOP = ST_SERVER_SCAN + 4, /* set by TypeScript before attach: PIN_RESET_ALL_NOOP */
  ST_LEN
};


typedef struct {
  int64_t remaining; /* body bytes of the current message still to pass */
  int fill;          /* bytes of a split 5-byte header seen so far */
  uint8_t header[5];
  int want_status;   /* the next byte is a ReadyForQuery status */
} scanner_t;

/* The last unnamed Parse the client sent while the native relay had the session, so that a move can
 * prepare it again (a client may Bind it in a later round trip, as pgx's describe-exec mode and
 * PQprepare(conn, "") do). TypeScript keeps it between native stints (session-replay.ts). */
#define UNNAMED_PARSE_MAX 65536
typedef struct {
  uint8_t *frame; /* the whole message, type byte included */
  size_t len;     /* 0: none (a Query destroyed it, or it was over UNNAMED_PARSE_MAX) */
  size_t cap;     /* bytes allocated at frame: the largest so far */
  int changed;    /* an unnamed Parse or a Query passed since the relay took the session */
} unnamed_parse_t;

/* Plain session settings (`SET name = value` as a Query while idle, pin_session_setting) that the
 * relay keeps itself instead of handing the session back: confirmed ones (CommandComplete and a
 * ReadyForQuery 'I' without an error) in the order they took effect, one per parameter, and the one
 * sent and not yet answered. TypeScript adds them to its replay log with the handover. Beyond
 * KEPT_MAX parameters or KEPT_BYTES, a setting goes to TypeScript as before. */
#define KEPT_MAX 16
#define KEPT_BYTES 65536
typedef struct {
  char name[SETTING_NAME_MAX];
  uint8_t *frame; /* the Query message, type byte included */
  size_t len;
} kept_setting_t;
typedef struct {
  kept_setting_t at[KEPT_MAX];
  int n;
  size_t bytes;
  kept_setting_t pending; /* frame NULL: none */
  int pending_failed;     /* the server has sent an ErrorResponse for it */
} kept_t;

/** Frees every frame kept (pending included) and empties the list. */
void kept_clear(kept_t *k);

void scanner_load(scanner_t *s, const double *at);
void scanner_store(const scanner_t *s, double *at);

/** Client bytes: how many may be forwarded before the first message TypeScript must see (a
 * Terminate, a bad length, or with check_pins a message the pin fast path does not call safe). The
 * messages that start in them count in state's ST_SYNCS / ST_UNSYNCED / ST_BUSY; with check_pins,
 * unnamed Parses and Queries among them update *unnamed, and a plain session setting the relay may
 * keep (see kept_t) passes as kept's pending one. */
size_t scan_client(scanner_t *s, double *state, const uint8_t *b, size_t n, int check_pins, int64_t max_len, unnamed_parse_t *unnamed, kept_t *kept);

/** Server bytes: 0 when they break the protocol (nothing changed), else 1 with ReadyForQuery status,
 * busy and query count updated in state, and kept's pending setting kept or dropped once answered. */
int scan_server(scanner_t *s, double *state, const uint8_t *b, size_t n, kept_t *kept);

#endif
