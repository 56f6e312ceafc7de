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
  WORD("REINDEX"), WORD("CLUSTER"), WORD("LOCK"), WORD("FETCH"), WORD("MOVE"), WORD("CLOSE"), WORD("UNLISTEN"),
};

static const word_t RISKY[] = {
  WORD("temp"), WORD("set_config"), WORD("advisory"), WORD("listen"), WORD("dblink"), WORD("declare"), WORD("prepare"),
};
/* Indexes in RISKY of the words that may leave nothing behind after all (leavesNothing). */
#define RISKY_SET_CONFIG 1
#define RISKY_ADVISORY 2
#define RISKY_LISTEN 3
#define RISKY_DECLARE 5

/* After SET, the words of TRANSACTION_SCOPED_SET: settings that end with the transaction. */
static const word_t SCOPED_SET_WORDS[] = { WORD("LOCAL"), WORD("TRANSACTION"), WORD("CONSTRAINTS") };

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

static int is_word_char(uint8_t c) { return is_letter(c) || (c >= '0' && c <= '9') || c == '_'; }

/* Which of the risky words in `words` (a RISKY_START mask) starts at s[i] (any case): its index in
 * RISKY, or -1. */
static int risky_at(const uint8_t *s, size_t n, size_t i, unsigned words) {
  for (int k = 0; words; k++, words >>= 1) {
    if (!(words & 1)) continue;
    const char *w = RISKY[k].text;
    size_t len = RISKY[k].len;
    if (i + len > n) continue;
    size_t j = 1;
    while (j < len && lower(s[i + j]) == (uint8_t)w[j]) j++;
    if (j == len) return k;
  }
  return -1;
}

/* Whether the n letters at word are one of the words (upper case in the table; any case here). */
static int one_of(const uint8_t *word, size_t n, const word_t *words, size_t count) {
  for (size_t i = 0; i < count; i++) {
    const char *w = words[i].text;
    if (words[i].len != n) continue;
    size_t k = 0;
    while (k < n && upper(word[k]) == (uint8_t)w[k]) k++;
    if (k == n) return 1;
  }
  return 0;
}

static int safe_first_word(const uint8_t *word, size_t n) {
  if (n == 0) return 1; /* no leading word: the TypeScript rule finds nothing to object to */
  return one_of(word, n, SAFE_FIRST_WORDS, sizeof SAFE_FIRST_WORDS / sizeof *SAFE_FIRST_WORDS);
}

/* As TRANSACTION_SCOPED_SET after a statement's first word SET, which ends at s[at]: 1 for SET LOCAL,
 * SET TRANSACTION or SET CONSTRAINTS, 0 for another SET, -1 where a byte beyond ASCII may be a
 * Unicode space that JavaScript's \s skips. */
static int transaction_scoped_set(const uint8_t *s, size_t n, size_t at) {
  size_t i = at;
  while (i < n && is_space(s[i])) i++;
  if (i < n && s[i] >= 0x80) return -1;
  if (i == at) return 0; /* no space after SET */
  size_t start = i;
  while (i < n && is_letter(s[i])) i++;
  if (i < n && is_word_char(s[i])) return 0; /* SET local_x = 1: a session setting named local_x */
  return one_of(s + start, i - start, SCOPED_SET_WORDS, sizeof SCOPED_SET_WORDS / sizeof *SCOPED_SET_WORDS);
}

/* As isLocalSetConfig: whether the set_config whose name ends at s[at] is a call whose third and last
 * argument is `true` (1) or not (0); -1 where a byte beyond ASCII may be a Unicode space that
 * JavaScript's \s or trim() skips. Quotes are skipped to the next same quote, as callArguments does. */
static int local_set_config(const uint8_t *s, size_t n, size_t at) {
  while (at < n && is_space(s[at])) at++;
  if (at < n && s[at] >= 0x80) return -1;
  if (at >= n || s[at] != '(') return 0;
  size_t depth = 0, commas = 0, start = at + 1;
  for (size_t i = at; i < n; i++) {
    uint8_t c = s[i];
    if (c == '\'' || c == '"') {
      const uint8_t *close = memchr(s + i + 1, c, n - i - 1);
      if (!close) return 0;
      i = (size_t)(close - s);
    } else if (c == '(') {
      depth++;
    } else if (c == ')' && --depth == 0) {
      if (commas != 2) return 0;
      size_t a = start, b = i;
      for (size_t k = a; k < b; k++)
        if (s[k] >= 0x80) return -1;
      while (a < b && is_space(s[a])) a++;
      while (b > a && is_space(s[b - 1])) b--;
      static const word_t TRUE_WORD[] = { WORD("TRUE") };
      return one_of(s + a, b - a, TRUE_WORD, 1);
    } else if (c == ',' && depth == 1) {
      commas++;
      start = i + 1;
    }
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

static int verdict_plain(const uint8_t *s, size_t n, int flags);

int pin_sql_verdict(const uint8_t *s, size_t n, int flags) {
  if (memchr(s, 0, n)) return PIN_UNSURE;
  if (!has_comment(s, n)) return verdict_plain(s, n, flags);
  if (n > STRIP_MAX) return PIN_UNSURE;
  uint8_t text[STRIP_MAX];
  return verdict_plain(text, strip_comments(s, n, text), flags);
}

/* Whether s[at..] continues with the lower-case ASCII text (any case). */
static int continues_with(const uint8_t *s, size_t n, size_t at, const char *text, size_t len) {
  if (at + len > n) return 0;
  for (size_t j = 0; j < len; j++)
    if (lower(s[at + j]) != (uint8_t)text[j]) return 0;
  return 1;
}
#define CONTINUES_WITH(s, n, at, text) continues_with(s, n, at, text, sizeof text - 1)

/* As startsStatement: whether only spaces stand between s[at] and the start or the ';' before it;
 * -1 at a byte beyond ASCII, which may be a Unicode space. */
static int starts_statement(const uint8_t *s, size_t at) {
  while (at > 0 && is_space(s[at - 1])) at--;
  if (at == 0 || s[at - 1] == ';') return 1;
  return s[at - 1] >= 0x80 ? -1 : 0;
}

/* As WITH_HOLD on the statement s[from..to): 1 when found, 0 when not, -1 where a byte beyond ASCII
 * right after WITH may be a Unicode space. */
static int with_hold(const uint8_t *s, size_t from, size_t to) {
  static const word_t WITH_WORD[] = { WORD("WITH") }, HOLD_WORD[] = { WORD("HOLD") };
  for (size_t i = from; i + 4 <= to; i++) {
    if ((i > from && is_word_char(s[i - 1])) || !one_of(s + i, 4, WITH_WORD, 1)) continue;
    size_t j = i + 4;
    while (j < to && is_space(s[j])) j++;
    if (j < to && s[j] >= 0x80) return -1;
    if (j == i + 4 || j + 4 > to || !one_of(s + j, 4, HOLD_WORD, 1)) continue;
    if (j + 4 == to || !is_word_char(s[j + 4])) return 1;
  }
  return 0;
}

/* A risky word at s[i] (index k in RISKY), as leavesNothing: 1 when it leaves nothing beyond the
 * transaction, 0 when it pins, -1 when TypeScript must decide. */
static int risky_leaves_nothing(const uint8_t *s, size_t n, size_t i, int k) {
  switch (k) {
    case RISKY_SET_CONFIG: return local_set_config(s, n, i + RISKY[k].len);
    case RISKY_ADVISORY: /* pg_advisory_xact_lock and its kin; pg_advisory_unlock and its kin */
      return CONTINUES_WITH(s, n, i + RISKY[k].len, "_xact_lock") || CONTINUES_WITH(s, n, i + RISKY[k].len, "_unlock");
    case RISKY_LISTEN: /* UNLISTEN */
      return i >= 2 && CONTINUES_WITH(s, n, i - 2, "un");
    case RISKY_DECLARE: return starts_statement(s, i);
    default: return 0;
  }
}

/* With PIN_RESET_ALL_NOOP: whether the statement after its first word RESET (ending at s[at]) is
 * exactly ALL, between ASCII spaces. TypeScript's rule always pins RESET, and then its replay log
 * decides; this only spares that hand-back when the log has nothing RESET ALL would change. */
static int reset_all(const uint8_t *s, size_t n, size_t at) {
  while (at < n && is_space(s[at])) at++;
  if (!CONTINUES_WITH(s, n, at, "all")) return 0;
  at += 3;
  while (at < n && is_space(s[at])) at++;
  return at == n || s[at] == ';';
}

/* A statement whose first word (s[start..end)) is not on the safe list, as statementPinReason: 1 when
 * it still leaves nothing beyond its transaction, 0 when it pins, -1 when TypeScript must decide. */
static int unsafe_word_scoped(const uint8_t *s, size_t n, size_t stmt, size_t start, size_t end, int flags) {
  static const word_t SET_WORD[] = { WORD("SET") }, DECLARE_WORD[] = { WORD("DECLARE") }, RESET_WORD[] = { WORD("RESET") };
  if (one_of(s + start, end - start, SET_WORD, 1)) return transaction_scoped_set(s, n, end);
  if ((flags & PIN_RESET_ALL_NOOP) && one_of(s + start, end - start, RESET_WORD, 1)) return reset_all(s, n, end);
  if (!one_of(s + start, end - start, DECLARE_WORD, 1)) return 0;
  const uint8_t *semicolon = memchr(s + end, ';', n - end);
  int hold = with_hold(s, stmt, semicolon ? (size_t)(semicolon - s) : n);
  return hold < 0 ? -1 : !hold;
}

/* SQL without comments. */
static int verdict_plain(const uint8_t *s, size_t n, int flags) {
  for (size_t i = 0; i < n; i++) {
    if (!RISKY_START[s[i]]) continue;
    int k = risky_at(s, n, i, RISKY_START[s[i]]);
    if (k < 0) continue;
    int scoped = risky_leaves_nothing(s, n, i, k);
    if (scoped < 0) return PIN_UNSURE;
    if (!scoped) return PIN_PINS;
  }
  size_t at = 0;
  for (;;) {
    size_t stmt = at;
    while (at < n && is_space(s[at])) at++;
    if (at < n && s[at] >= 0x80) return PIN_UNSURE; /* maybe a Unicode space, then a word */
    size_t start = at;
    while (at < n && is_letter(s[at])) at++;
    if (!safe_first_word(s + start, at - start)) {
      int scoped = unsafe_word_scoped(s, n, stmt, start, at, flags);
      if (scoped < 0) return PIN_UNSURE;
      if (!scoped) return PIN_PINS;
    }
    while (at < n && s[at] != ';') at++;
    if (at >= n) return PIN_SAFE;
    at++; /* past the ';' */
  }
}

/* The keywords that make `SET <word>` another form than SET <parameter> (SET_PARAM's lookahead). */
static const word_t SET_FORMS[] = {
  WORD("LOCAL"), WORD("ROLE"), WORD("TRANSACTION"), WORD("CONSTRAINTS"), WORD("SESSION"), WORD("AUTHORIZATION"), WORD("CHARACTERISTICS"), WORD("TIME"),
};

static int is_ident_start(uint8_t c) { return is_letter(c) || c == '_'; }
static int is_ident_char(uint8_t c) { return is_word_char(c) || c == '$'; }

/* The identifier at s[*i] ([A-Za-z_][A-Za-z0-9_$]*, IDENT in replay-sql.ts): its end, or 0 when none starts there. */
static size_t ident_end(const uint8_t *s, size_t n, size_t i) {
  if (i >= n || !is_ident_start(s[i])) return 0;
  while (i < n && is_ident_char(s[i])) i++;
  return i;
}

/* Whether the word at s[at] is one of SET_FORMS followed by a regex word boundary (\b: '$' is no word character there). */
static int set_form_at(const uint8_t *s, size_t n, size_t at) {
  for (size_t k = 0; k < sizeof SET_FORMS / sizeof *SET_FORMS; k++) {
    size_t len = SET_FORMS[k].len;
    if (at + len <= n && one_of(s + at, len, SET_FORMS + k, 1) && (at + len == n || !is_word_char(s[at + len]))) return 1;
  }
  return 0;
}

size_t pin_session_setting(const uint8_t *s, size_t n, char name[SETTING_NAME_MAX]) {
  static const word_t SET_WORD[] = { WORD("SET") }, SESSION_WORD[] = { WORD("SESSION") };
  size_t i = 0;
  while (i < n && is_space(s[i])) i++;
  size_t end = ident_end(s, n, i);
  if (!end || !one_of(s + i, end - i, SET_WORD, 1) || end == n || !is_space(s[end])) return 0;
  for (i = end; i < n && is_space(s[i]);) i++;
  end = ident_end(s, n, i);
  if (end && end < n && is_space(s[end]) && one_of(s + i, end - i, SESSION_WORD, 1)) { /* SET SESSION <parameter> */
    for (i = end; i < n && is_space(s[i]);) i++;
    end = ident_end(s, n, i);
  }
  if (!end || set_form_at(s, n, i)) return 0;
  if (end < n && s[end] == '.') end = ident_end(s, n, end + 1);
  if (!end || end - i >= SETTING_NAME_MAX) return 0;
  size_t name_len = end - i;
  for (size_t k = 0; k < name_len; k++) name[k] = (char)lower(s[i + k]);
  name[name_len] = 0;
  /* Barriers in the replay log (isBarrier): TypeScript keeps those itself. */
  if (strcmp(name, "role") == 0 || strcmp(name, "session_authorization") == 0) return 0;
  for (i = end; i < n && is_space(s[i]);) i++;
  if (i < n && s[i] == '=') {
    i++;
  } else if (i + 2 <= n && upper(s[i]) == 'T' && upper(s[i + 1]) == 'O' && (i + 2 == n || !is_word_char(s[i + 2]))) {
    i += 2;
  } else {
    return 0;
  }
  /* One statement: replay-sql.ts splits at every ';' and drops the parts that are only spaces. */
  const uint8_t *semicolon = memchr(s + i, ';', n - i);
  if (semicolon) {
    for (const uint8_t *p = semicolon; p < s + n; p++)
      if (*p != ';' && !is_space(*p)) return 0;
  }
  /* Last, as they read the whole text: most pinning Queries are no SET and are turned away above. */
  for (size_t k = 0; k < n; k++) {
    if (s[k] == 0 || s[k] >= 0x80) return 0;
    if (RISKY_START[s[k]] && risky_at(s, n, k, RISKY_START[s[k]]) >= 0) return 0; /* settingNames' RISKY test */
  }
  if (has_comment(s, n)) return 0;
  return name_len;
}

int pin_message_verdict(uint8_t type, const uint8_t *body, size_t n, int flags) {
  switch (type) {
    case 'Q': {
      if (!body) return PIN_PINS;
      size_t len = n > 0 ? n - 1 : 0;
      int verdict = pin_sql_verdict(body, len, flags);
      char name[SETTING_NAME_MAX];
      return verdict == PIN_PINS && pin_session_setting(body, len, name) ? PIN_SETTING : verdict;
    }
    case 'P': {
      if (!body) return PIN_PINS;
      const uint8_t *name_end = memchr(body, 0, n);
      if (!name_end || name_end != body) return PIN_PINS; /* malformed, or a named statement */
      const uint8_t *sql = body + 1;
      const uint8_t *sql_end = memchr(sql, 0, n - 1);
      if (!sql_end) return PIN_PINS;
      return pin_sql_verdict(sql, (size_t)(sql_end - sql), flags);
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
