// Which relay thread carries which sessions: pure decisions on the threads' recent loads, so the
// relay keeps sessions on as few threads as their load needs (fewer wake-ups, as PgBouncer's single
// loop) and spreads them when one thread gets busy (parallel, as HAProxy's threads).
#ifndef BATON_BALANCE_H
#define BATON_BALANCE_H

/* Load is the CPU time a thread used over its last window, in per mille of the window. */
#define BALANCE_WINDOW_MS 100
#define BALANCE_SPILL 400 /* busier than this: give half the sessions to a quiet thread */
#define BALANCE_QUIET 250 /* a thread that takes sessions from a busy one must be under this */
#define BALANCE_PACK 300  /* two threads whose loads add up to less than this become one */

typedef struct {
  int sessions;
  int load;
} thread_load_t;

/** The thread for a new session: the first one not busier than BALANCE_SPILL, else the least busy. */
int balance_pick(const thread_load_t *t, int n);

/** At the end of thread `self`'s window: the thread to move `*count` of its sessions to, or -1. */
int balance_decide(const thread_load_t *t, int n, int self, int *count);

#endif
