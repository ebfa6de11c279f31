#!/usr/bin/env bash
# `promtool check metrics` on every service's /metrics: starts the three binaries against a
# scratch database and NATS (the test command's), lints what they expose, stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TEST_DATABASE_URL:?set by scripts/services.sh}"
db=followup_metrics_check
psql "$TEST_DATABASE_URL" -q -c "set client_min_messages = warning" -c "drop database if exists $db with (force)" -c "create database $db"
export DATABASE_URL="${TEST_DATABASE_URL%/*}/$db"
nats_dir=$(mktemp -d)
nats_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$nats_dir" >/dev/null 2>&1 &
nats_pid=$!
pids=()
export NATS_URL="nats://127.0.0.1:$nats_port" RUST_LOG=warn JWT_SECRET=metrics-check-secret-0123456789

# Services first (SIGTERM, then SIGKILL after 10 s), then NATS, then the scratch database: a
# check must never hang the test command.
stop_all() {
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "warning: pid $pid ignored SIGTERM for 10 s; killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  kill "$nats_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$nats_dir"
  psql "$TEST_DATABASE_URL" -qc "drop database if exists $db with (force)" 2>/dev/null || true
}
trap stop_all EXIT
declare -A addr=([producer]=127.0.0.1:19101 [projector]=127.0.0.1:19102 [gateway]=127.0.0.1:18080)
for svc in producer projector gateway; do
  HTTP_ADDR=${addr[$svc]} "target/debug/followup-$svc" serve >/dev/null 2>&1 &
  pids+=($!)
done
for svc in producer projector gateway; do
  for _ in $(seq 1 100); do curl -fsS "http://${addr[$svc]}/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS "http://${addr[$svc]}/metrics" | promtool check metrics \
    || { echo "promtool check metrics failed for $svc" >&2; exit 1; }
  echo "$svc: /metrics passes promtool check metrics"
done
