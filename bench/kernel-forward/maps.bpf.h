// The maps forward.bpf.c and half.bpf.c declare alike.
#ifndef BATON_BENCH_MAPS_BPF_H
#define BATON_BENCH_MAPS_BPF_H

/* Sockets by slot (the slot is the process's descriptor number). */
#define SOCKMAP(name)                       \
  struct {                                  \
    __uint(type, BPF_MAP_TYPE_SOCKMAP);     \
    __uint(max_entries, 65536);             \
    __type(key, __u32);                     \
    __type(value, __u64);                   \
  } name SEC(".maps")

/* Socket cookie -> the slot of its partner. */
#define PARTNER_HASH(name)                  \
  struct {                                  \
    __uint(type, BPF_MAP_TYPE_HASH);        \
    __uint(max_entries, 65536);             \
    __type(key, __u64);                     \
    __type(value, __u32);                   \
  } name SEC(".maps")

#endif
