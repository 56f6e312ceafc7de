#!/bin/bash
# bench/forwarders/ab.sh: pgbench through bare forwarders and baton's proxy, round after round, with
# each forwarder's CPU per transaction (utime + stime from /proc, all threads). Needs a cluster from
# `baton up` (its leader is the target), root for the BPF forwarders, and what
# `scripts/install-deps.sh --bench` installs (clang, libbpf-dev, liburing-dev).
#
#   bench/forwarders/ab.sh <baton-up-dir> [clients] [seconds] [rounds] [paths]
#
# paths (default: all): direct epoll uring batch half kernel-fwd baton
#   epoll, uring, batch  bench/forwarders/plain.c (user space, one thread)
#   half          bench/kernel-forward/half.c     (client to server in the kernel, back in user space)
#   kernel-fwd    bench/kernel-forward/forward.c  (both directions in the kernel; its CPU is in
#                 softirqs and kernel workers, charged to no process: shown as 0)
#   baton         the cluster's proxy, read-write port
# Prints one line per run: round, path, tps, mean latency (ms), CPU µs per transaction.
set -euo pipefail
dir=${1:?usage: ab.sh <baton-up-dir> [clients] [seconds] [rounds] [paths]}
clients=${2:-8}; seconds=${3:-6}; rounds=${4:-5}; paths=${5:-"direct epoll uring batch half kernel-fwd baton"}
here=$(cd "$(dirname "$0")" && pwd); kf="$here/../kernel-forward"
bin=$(mktemp -d /tmp/baton-forwarders-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$bin"; }
trap cleanup EXIT

eval "$(python3 - "$dir" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + '/cluster.json'))
print(f"host={c['host']} pgpass={sys.argv[1]}/pgpass user={c['superuser']['username']} proxy_port={c['proxy']['readWritePort']} proxy_pid={c['proxy']['pid']}")
print('ports="' + ' '.join(str(m['pgPort']) for m in c['members']) + '"')
PY
)"
export PGPASSFILE=$pgpass
pgbin=/usr/lib/postgresql/15/bin
leader=
for p in $ports; do
  [ "$($pgbin/psql -h "$host" -p "$p" -U "$user" -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null)" = f ] && leader=$p && break
done
[ -n "$leader" ] || { echo "ab.sh: no leader among ports $ports" >&2; exit 1; }
$pgbin/pgbench -h "$host" -p "$leader" -U "$user" -i -s 10 -q postgres >/dev/null 2>&1

gcc -O2 -Wall -o "$bin/plain" "$here/plain.c" -l:liburing.a
clang -O2 -g -target bpf -I/usr/include/"$(gcc -print-multiarch)" -c "$kf/half.bpf.c" -o "$bin/half.bpf.o"
clang -O2 -g -target bpf -I/usr/include/"$(gcc -print-multiarch)" -c "$kf/forward.bpf.c" -o "$bin/forward.bpf.o"
gcc -O2 -Wall -o "$bin/half" "$kf/half.c" -lbpf
gcc -O2 -Wall -o "$bin/forward" "$kf/forward.c" -lbpf
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A port pid
port[direct]=$leader; pid[direct]=
port[baton]=$proxy_port; pid[baton]=$proxy_pid
# Each forwarder in its own session, hence its own scheduler autogroup, as baton's proxy, PgBouncer and
# PostgreSQL's backends are; in this script's session it would share one group's CPU with pgbench.
for f in epoll uring batch; do port[$f]=$(free_port); setsid "$bin/plain" $f "${port[$f]}" "$leader" & pid[$f]=$!; pids+=($!); done
port[half]=$(free_port); setsid "$bin/half" "${port[half]}" "$leader" "$bin/half.bpf.o" & pid[half]=$!; pids+=($!)
port[kernel-fwd]=$(free_port); setsid "$bin/forward" 127.0.0.1 "${port[kernel-fwd]}" 127.0.0.1 "$leader" "$bin/forward.bpf.o" 2>/dev/null & pid[kernel-fwd]=$!; pids+=($!)
sleep 0.5
for f in epoll uring batch half kernel-fwd; do
  [ "$(cat /proc/${pid[$f]}/autogroup 2>/dev/null | cut -d' ' -f1)" != "$(cut -d' ' -f1 /proc/$$/autogroup)" ] || { echo "ab.sh: $f shares this script's autogroup" >&2; exit 1; }
done
tick_us=$((1000000 / $(getconf CLK_TCK)))
cpu() { if [ -n "$1" ] && [ "$2" != kernel-fwd ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }
for r in $(seq 1 "$rounds"); do
  for p in $paths; do
    c0=$(cpu "${pid[$p]}" "$p")
    out=$($pgbin/pgbench -h "$host" -p "${port[$p]}" -U "$user" -N -c "$clients" -j 2 -T "$seconds" -n postgres 2>&1)
    c1=$(cpu "${pid[$p]}" "$p")
    tps=$(awk '/^tps/ {print $3}' <<<"$out"); lat=$(awk '/latency average/ {print $4}' <<<"$out")
    n=$(awk '/actually processed/ {split($6, a, "/"); print a[1]}' <<<"$out")
    echo "$r $p tps=$tps lat=$lat cpu_us_tx=$(( (c1 - c0) * tick_us / (n > 0 ? n : 1) ))"
  done
done
