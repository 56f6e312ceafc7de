// The native relay's fast path for src/proxy/session-state.ts: whether a frontend message leaves no
// session state behind. It answers only what it can answer exactly like the TypeScript rule;
// anything else is PIN_UNSURE and the message goes to the TypeScript relay, which decides.
#ifndef BATON_PIN_H
#define BATON_PIN_H
#include <stddef.h>
#include <stdint.h>

enum pin_verdict { PIN_SAFE = 0, PIN_PINS = 1, PIN_UNSURE = 2 };

/** What the session's replay log allows beyond the rule (TypeScript says so in the shared state). */
enum pin_flags {
  /** The log holds no settings: RESET ALL changes nothing it keeps, so it needs no hand-back. */
  PIN_RESET_ALL_NOOP = 1,
};

/** SQL text (no terminating NUL): safe, pins, or not decidable here. */
int pin_sql_verdict(const uint8_t *sql, size_t n, int flags);

/** A frontend message of this type; body is NULL when it is not whole in the chunk at hand. */
int pin_message_verdict(uint8_t type, const uint8_t *body, size_t n, int flags);

#endif
