// The in-kernel half of bench/kernel-forward/half: segments from a client socket (in `clients`, the
// map this verdict program is attached to) go to the send queue of its server socket (in `servers`,
// a map with no program, so the server's replies take TCP's usual path to the process).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

SOCKMAP(clients);

SOCKMAP(servers);

/* client socket cookie -> its server's slot in `servers` */
PARTNER_HASH(partner);

SEC("sk_skb/stream_verdict")
int to_server(struct __sk_buff *skb) {
  __u64 cookie = bpf_get_socket_cookie(skb);
  __u32 *slot = bpf_map_lookup_elem(&partner, &cookie);
  /* A client socket enters `clients` only once its partner is known. */
  if (!slot) return SK_DROP;
  return bpf_sk_redirect_map(skb, &servers, *slot, 0);
}

char LICENSE[] SEC("license") = "GPL";
