// The native relay's fast path for src/proxy/session-state.ts: whether a frontend message leaves no
// session state behind. It answers only what it can answer exactly like the TypeScript rule;
// anything else is PIN_UNSURE and the message goes to the TypeScript relay, which decides.
#ifndef BATON_PIN_H
#define BATON_PIN_H
#include <stddef.h>
#include <stdint.h>

/* PIN_SETTING: a Query that sets one session parameter in the plain form the relay may keep itself
 * (pin_session_setting); TypeScript's rule pins it, and its replay log would keep it. */
enum pin_verdict { PIN_SAFE = 0, PIN_PINS = 1, PIN_UNSURE = 2, PIN_SETTING = 3 };

/** What the session's replay log allows beyond the rule (TypeScript says so in the shared state). */
enum pin_flags {
  /** The log holds no settings: RESET ALL changes nothing it keeps, so it needs no hand-back. */
  PIN_RESET_ALL_NOOP = 1,
};

/** SQL text (no terminating NUL): safe, pins, or not decidable here. */
int pin_sql_verdict(const uint8_t *sql, size_t n, int flags);

/** The longest parameter name pin_session_setting reports (PostgreSQL's identifiers are shorter). */
#define SETTING_NAME_MAX 64

/** Whether the SQL is one statement `SET [SESSION] name {= | TO} value`, as replay-sql.ts reads it
 * (SET_PARAM), of a parameter that is not a barrier there (role, session_authorization): plain ASCII,
 * no comment, no ';' but trailing ones, no risky word. Returns the name's length, with the name
 * lower-cased in name[] (NUL-terminated), or 0. */
size_t pin_session_setting(const uint8_t *sql, size_t n, char name[SETTING_NAME_MAX]);

/** A frontend message of this type; body is NULL when it is not whole in the chunk at hand. */
int pin_message_verdict(uint8_t type, const uint8_t *body, size_t n, int flags);

#endif
