# Sourced by the checks that run the real binaries against a stack of their own
# (check-cloudevents.sh, check-examples.sh). Needs scripts/services.sh sourced first.
#
# start_private_stack NAME: a scratch database followup_test_NAME_<pid> (exported as
# DATABASE_URL), a private nats-server with JetStream on a free port and a temporary store
# (NATS_URL), the SMTP test server on a free port (smtp_port; it answers 550 to a local part
# containing "reject"), a temporary directory $tmp, and an EXIT trap that stops every pid in
# $pids (SIGTERM, then SIGKILL), nats-server, and drops the database: unique names and free ports
# so several checkouts may run at once on one machine, and no check leaves anything behind.
start_private_stack() {
  : "${TEST_DATABASE_URL:?set by scripts/services.sh}"
  db=followup_test_$1_$$
  psql "$TEST_DATABASE_URL" -q -c "set client_min_messages = warning" \
    -c "drop database if exists $db with (force)" -c "create database $db"
  export DATABASE_URL="${TEST_DATABASE_URL%/*}/$db"
  tmp=$(mktemp -d)
  nats_port=$(free_port)
  smtp_port=$(free_port)
  nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/nats" >"$tmp/nats.log" 2>&1 &
  nats_pid=$!
  pids=()
  export NATS_URL="nats://127.0.0.1:$nats_port" RUST_LOG=warn
  trap stop_private_stack EXIT
  for _ in $(seq 1 50); do nats_listening "$nats_port" && break; sleep 0.2; done
  nats_listening "$nats_port" || { cat "$tmp/nats.log" >&2; echo "nats-server did not start" >&2; exit 1; }
  python3 producer/tests/smtp_server.py --port "$smtp_port" --log "$tmp/smtp.jsonl" >"$tmp/smtp.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do grep -q READY "$tmp/smtp.out" 2>/dev/null && break; sleep 0.2; done
  grep -q READY "$tmp/smtp.out" || { cat "$tmp/smtp.out" >&2; echo "SMTP test server did not start" >&2; exit 1; }
}

stop_private_stack() {
  stop_pids "${pids[@]}"
  kill "$nats_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
  psql "$TEST_DATABASE_URL" -qc "drop database if exists $db with (force)" 2>/dev/null || true
}
