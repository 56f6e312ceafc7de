// Mirrors sqlPinReason/messagePinReason of src/proxy/session-state.ts, comments included (stripped as
// stripComments does); test/unit/native-relay.test.ts checks the two agree on generated statements.
// Bytes of UTF-8 text above ASCII never match the rule's ASCII words, delimiters or case folding, so
// they are only "other characters" here, except where the rule skips whitespace before a statement's
// first word: JavaScript's \s also matches Unicode spaces, and that is left to TypeScript.
#include "pin.h"
#include <string.h>

/* Words with their lengths, so the per-query checks never call strlen. */
typedef struct {
  const char *text;
  size_t len;
} word_t;
#define WORD(w) { w, sizeof w - 1 }

static const word_t SAFE_FIRST_WORDS[] = {
  WORD("SELECT"), WORD("INSERT"), WORD("UPDATE"), WORD("DELETE"), WORD("MERGE"), WORD("WITH"), WORD("VALUES"),
  WORD("TABLE"), WORD("COPY"), WORD("SHOW"), WORD("EXPLAIN"), WORD("BEGIN"), WORD("START"), WORD("COMMIT"),
  WORD("END"), WORD("ROLLBACK"), WORD("ABORT"), WORD("SAVEPOINT"), WORD("RELEASE"), WORD("CREATE"), WORD("ALTER"),
  WORD("DROP"), WORD("TRUNCATE"), WORD("GRANT"), WORD("REVOKE"), WORD("COMMENT"), WORD("VACUUM"), WORD("ANALYZE"),
  WORD("REINDEX"), WORD("CLUSTER"),
};

static const word_t RISKY[] = {
  WORD("temp"), WORD("set_config"), WORD("advisory"), WORD("listen"), WORD("dblink"), WORD("declare"), WORD("prepare"),
};

/* For each byte, which risky words start with it in either case (bit k: RISKY[k], so keep the two
 * in step); most bytes start none and are not looked at further. */
static const uint8_t RISKY_START[256] = {
  ['t'] = 1 << 0, ['T'] = 1 << 0, ['s'] = 1 << 1, ['S'] = 1 << 1, ['a'] = 1 << 2, ['A'] = 1 << 2,
  ['l'] = 1 << 3, ['L'] = 1 << 3, ['d'] = 1 << 4 | 1 << 5, ['D'] = 1 << 4 | 1 << 5, ['p'] = 1 << 6, ['P'] = 1 << 6,
};

static uint8_t lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c; }
static uint8_t upper(uint8_t c) { return c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c; }
static int is_letter(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
/* JavaScript's \s restricted to ASCII (see the top of the file for the rest). */
static int is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Whether one of the risky words in `words` (a RISKY_START mask) starts at s[i] (any case). */
static int risky_at(const uint8_t *s, size_t n, size_t i, unsigned words) {
  for (size_t k = 0; words; k++, words >>= 1) {
    if (!(words & 1)) continue;
    const char *w = RISKY[k].text;
    size_t len = RISKY[k].len;
    if (i + len > n) continue;
    size_t j = 1;
    while (j < len && lower(s[i + j]) == (uint8_t)w[j]) j++;
    if (j == len) return 1;
  }
  return 0;
}

static int safe_first_word(const uint8_t *word, size_t n) {
  if (n == 0) return 1; /* no leading word: the TypeScript rule finds nothing to object to */
  for (size_t i = 0; i < sizeof SAFE_FIRST_WORDS / sizeof *SAFE_FIRST_WORDS; i++) {
    const char *w = SAFE_FIRST_WORDS[i].text;
    if (SAFE_FIRST_WORDS[i].len != n) continue;
    size_t k = 0;
    while (k < n && upper(word[k]) == (uint8_t)w[k]) k++;
    if (k == n) return 1;
  }
  return 0;
}

/* Longer SQL with comments is left to TypeScript rather than copied to the heap. */
#define STRIP_MAX 16384

/* As stripComments: first every block comment (shortest match, unterminated ones stay) becomes a
 * space, then every line comment in what is left. Returns the length written to out. */
static size_t strip_comments(const uint8_t *s, size_t n, uint8_t *out) {
  size_t m = 0;
  for (size_t i = 0; i < n;) {
    if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
      size_t j = i + 2;
      while (j + 1 < n && !(s[j] == '*' && s[j + 1] == '/')) j++;
      if (j + 1 < n) {
        out[m++] = ' ';
        i = j + 2;
        continue;
      }
    }
    out[m++] = s[i++];
  }
  size_t k = 0;
  for (size_t i = 0; i < m;) {
    if (out[i] == '-' && i + 1 < m && out[i + 1] == '-') {
      while (i < m && out[i] != '\n') i++;
      out[k++] = ' ';
      continue;
    }
    out[k++] = out[i++];
  }
  return k;
}

static int has_comment(const uint8_t *s, size_t n) {
  for (size_t i = 0; i + 1 < n; i++)
    if ((s[i] == '-' && s[i + 1] == '-') || (s[i] == '/' && s[i + 1] == '*')) return 1;
  return 0;
}

static int verdict_plain(const uint8_t *s, size_t n);

int pin_sql_verdict(const uint8_t *s, size_t n) {
  if (memchr(s, 0, n)) return PIN_UNSURE;
  if (!has_comment(s, n)) return verdict_plain(s, n);
  if (n > STRIP_MAX) return PIN_UNSURE;
  uint8_t text[STRIP_MAX];
  return verdict_plain(text, strip_comments(s, n, text));
}

/* SQL without comments. */
static int verdict_plain(const uint8_t *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (RISKY_START[s[i]] && risky_at(s, n, i, RISKY_START[s[i]])) return PIN_PINS;
  size_t at = 0;
  for (;;) {
    while (at < n && is_space(s[at])) at++;
    if (at < n && s[at] >= 0x80) return PIN_UNSURE; /* maybe a Unicode space, then a word */
    size_t start = at;
    while (at < n && is_letter(s[at])) at++;
    if (!safe_first_word(s + start, at - start)) return PIN_PINS;
    while (at < n && s[at] != ';') at++;
    if (at >= n) return PIN_SAFE;
    at++; /* past the ';' */
  }
}

int pin_message_verdict(uint8_t type, const uint8_t *body, size_t n) {
  switch (type) {
    case 'Q':
      if (!body) return PIN_PINS;
      return pin_sql_verdict(body, n > 0 ? n - 1 : 0);
    case 'P': {
      if (!body) return PIN_PINS;
      const uint8_t *name_end = memchr(body, 0, n);
      if (!name_end || name_end != body) return PIN_PINS; /* malformed, or a named statement */
      const uint8_t *sql = body + 1;
      const uint8_t *sql_end = memchr(sql, 0, n - 1);
      if (!sql_end) return PIN_PINS;
      return pin_sql_verdict(sql, (size_t)(sql_end - sql));
    }
    case 'F':
      return PIN_PINS;
    case 'C':
      /* Closing a named prepared statement changes what a move replays (session-replay.ts). */
      if (!body) return PIN_UNSURE;
      return n >= 2 && body[0] == 'S' && body[1] != 0 ? PIN_UNSURE : PIN_SAFE;
    default:
      return PIN_SAFE;
  }
}
