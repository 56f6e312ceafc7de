#!/usr/bin/env bash
# Installs the system packages Baton needs on Debian 12: PostgreSQL 15, etcd-server, and the tools
# the tests use (openssl for a test certificate, iproute2), and what node-gyp builds the proxy's native
# relay with (g++, make, python3, and liburing-dev, linked in statically).
# With --test, also what the proxy suite drives a real JDBC client with: a JDK and Debian's pgjdbc.
# With --bench, also what bench/proxy.ts compares Baton's proxy with: HAProxy and PgBouncer (the
# benchmark runs its own instances, with their own config files and ports), clang with libbpf-dev,
# which its --kernel-forward option builds bench/kernel-forward with.
# Safe to run again: it installs only what is missing.
set -euo pipefail
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
missing=()
[ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15 postgresql-client-15)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
[ -f /usr/include/liburing.h ] || missing+=(liburing-dev)
if [ "${1:-}" = "--test" ]; then
  command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
  [ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
fi
if [ "${1:-}" = "--bench" ]; then
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
  command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
  command -v clang >/dev/null 2>&1 || missing+=(clang)
  [ -f /usr/include/bpf/libbpf.h ] || missing+=(libbpf-dev)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian's packages start services of their own where an init system runs; Baton starts its own.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
fi
