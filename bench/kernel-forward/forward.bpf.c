// The in-kernel half of bench/kernel-forward: every segment that arrives on a socket in `socks` is
// moved to the send queue of its partner (`partner`: socket cookie -> slot) without waking the
// forwarding process. A socket with no partner yet keeps its bytes for the process to read.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

SOCKMAP(socks);

PARTNER_HASH(partner);

SEC("sk_skb/stream_verdict")
int forward(struct __sk_buff *skb) {
  __u64 cookie = bpf_get_socket_cookie(skb);
  __u32 *slot = bpf_map_lookup_elem(&partner, &cookie);
  if (!slot) return SK_PASS;
  return bpf_sk_redirect_map(skb, &socks, *slot, 0);
}

char LICENSE[] SEC("license") = "GPL";
