// See balance.h. The thresholds leave a gap between spreading and packing, so a steady load
// settles instead of moving sessions back and forth.
#include "balance.h"

int balance_pick(const thread_load_t *t, int n) {
  int least = 0;
  for (int i = 0; i < n; i++) {
    if (t[i].load <= BALANCE_SPILL) return i;
    if (t[i].load < t[least].load) least = i;
  }
  return least;
}

int balance_decide(const thread_load_t *t, int n, int self, int *count) {
  *count = 0;
  if (self < 0 || self >= n || t[self].sessions == 0) return -1;
  if (t[self].load > BALANCE_SPILL && t[self].sessions >= 2) {
    int to = -1;
    for (int i = 0; i < n; i++)
      if (i != self && t[i].load < BALANCE_QUIET && (to < 0 || t[i].load < t[to].load)) to = i;
    if (to >= 0) *count = t[self].sessions / 2;
    return to;
  }
  /* Pack towards the first threads, so the last ones empty out and sleep. */
  for (int i = 0; i < self; i++) {
    if (t[i].load + t[self].load < BALANCE_PACK) {
      *count = t[self].sessions;
      return i;
    }
  }
  return -1;
}
