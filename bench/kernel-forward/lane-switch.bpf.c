// The in-kernel half of bench/kernel-forward/lane-switch.c, an experiment for docs/kernel-lane.md
// (items 3 and 4): segments go to the partner socket in the kernel while what that socket has not
// yet sent stays under a budget; past it the source switches to the user lane (SK_PASS: the process
// reads and writes the bytes itself) until the process asks back and has written all it was passed.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* CO-RE: only the fields read; their offsets come from the running kernel's BTF. */
struct tcp_sock {
  __u32 write_seq;
  __u32 snd_una;
} __attribute__((preserve_access_index));

enum { LANE_KERNEL = 0, LANE_USER = 1, LANE_WANT_KERNEL = 2 };

/* Per socket, indexed by its slot (its descriptor in the process). The process writes only
 * user_written, consumed and mode (USER -> WANT_KERNEL); the verdict writes the rest. */
struct lane {
  __u64 redirected;   /* bytes the kernel moved into this socket */
  __u64 user_written; /* bytes the process wrote into it */
  __u64 passed;       /* bytes of this socket's input passed up to the process */
  __u64 consumed;     /* of those, bytes the process has read and written on */
  __u32 base;         /* write_seq when the kernel lane first wrote here */
  __u32 has_base;
  __u32 mode;
  __u32 pad;
  __u64 switches; /* times this socket's input went to the user lane */
};

struct {
  __uint(type, BPF_MAP_TYPE_SOCKMAP);
  __uint(max_entries, 4096);
  __type(key, __u32);
  __type(value, __u64);
} socks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u64);   /* socket cookie */
  __type(value, __u64); /* own slot | partner slot << 32 */
} slots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 4096);
  __uint(map_flags, BPF_F_MMAPABLE);
  __type(key, __u32);
  __type(value, struct lane);
} lanes SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64); /* the budget in bytes */
} budget SEC(".maps");

static __u64 read_once(__u64 *p) {
  return *(volatile __u64 *)p;
}

SEC("sk_skb/stream_verdict")
int forward(struct __sk_buff *skb) {
  __u64 cookie = bpf_get_socket_cookie(skb);
  __u64 *s = bpf_map_lookup_elem(&slots, &cookie);
  if (!s) return SK_PASS;
  __u32 own = (__u32)*s, peer = (__u32)(*s >> 32), zero = 0;
  struct lane *src = bpf_map_lookup_elem(&lanes, &own), *dst = bpf_map_lookup_elem(&lanes, &peer);
  __u64 *limit = bpf_map_lookup_elem(&budget, &zero);
  if (!src || !dst || !limit) return SK_PASS;
  if (src->mode == LANE_WANT_KERNEL && src->passed == read_once(&src->consumed)) src->mode = LANE_KERNEL;
  if (src->mode != LANE_KERNEL) {
    src->passed += skb->len;
    return SK_PASS;
  }
  struct bpf_sock *sk = bpf_map_lookup_elem(&socks, &peer);
  if (!sk) return SK_PASS;
  struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
  __s64 outstanding = 0;
  if (tp) {
    if (!dst->has_base) {
      dst->base = BPF_CORE_READ(tp, write_seq);
      dst->has_base = 1;
    }
    /* Written into the partner (by either lane) and not yet acknowledged by its peer. */
    __s32 acked = (__s32)(BPF_CORE_READ(tp, snd_una) - dst->base);
    outstanding = (__s64)(dst->redirected + read_once(&dst->user_written)) - acked;
  }
  bpf_sk_release(sk);
  if (!tp || outstanding + skb->len > (__s64)*limit) {
    src->mode = LANE_USER;
    src->switches++;
    src->passed += skb->len;
    return SK_PASS;
  }
  dst->redirected += skb->len;
  return bpf_sk_redirect_map(skb, &socks, peer, 0);
}

char LICENSE[] SEC("license") = "GPL";
