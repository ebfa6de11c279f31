#!/usr/bin/env bash
# The example consumers (examples/python, examples/typescript) against a private nats-server and
# the real producer: a `followup-producer run-once` with SMTP publishes every event type into a
# private FOLLOWUP stream, `followup-projector consumers apply` creates the examples' durables
# from nats/consumers/, then each example is started, SIGKILLed mid-stream (after it acked some
# batches, before it has all), started again, and its projection must equal the stream's truth
# computed independently from `followup-projector show-events` (scripts/check-examples.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh # start_private_stack, free_port, stop_pids, ensure_*
ensure_example_consumers
ensure_aiosmtpd
started=$(date +%s)
start_private_stack examples
start_smtp_test_server

target/debug/followup-producer migrate
# 160 leads due for T+3 (every tenth one's server answers 550: failed), 40 due for T+7, then CRM
# edits: owner changes and conversions (lead.changed.v1 with later sequences).
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO leads (company_name, email, business_type, status, owner_user_id, registered_at,
                   t3_followup_sent, last_followup_at, metadata, created_by)
SELECT 'Firma ' || i,
       CASE WHEN i % 10 = 0 THEN 'reject-' ELSE 'lead-' END || i || '@example.com',
       'RESTAURANT', 'ACTIVE', 'user' || (i % 7),
       (now() AT TIME ZONE 'UTC') - CASE WHEN i <= 160 THEN interval '4 days' ELSE interval '8 days' END,
       i > 160, CASE WHEN i > 160 THEN (now() AT TIME ZONE 'UTC') - interval '4 days' END,
       '{"emailConsent": true}', 'crm'
FROM generate_series(1, 200) AS i;
UPDATE leads SET owner_user_id = 'carol', version = version + 1 WHERE id % 9 = 0;
SQL
HTTP_ADDR=127.0.0.1:$(free_port) MAILER=smtp SMTP_URL="smtp://127.0.0.1:$smtp_port" \
  SMTP_FROM=noreply@freshplan.example UNSUBSCRIBE_BASE_URL=http://127.0.0.1:8080 \
  UNSUBSCRIBE_SECRET=examples-check-secret-0123456 SMTP_RETRY_BASE_MS=100 \
  timeout 120 target/debug/followup-producer run-once 2>>"$tmp/producer.log" \
  || { cat "$tmp/producer.log" >&2; exit 1; }
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 \
  -c "UPDATE leads SET status = 'CONVERTED', version = version + 1 WHERE id % 5 = 0"
HTTP_ADDR=127.0.0.1:$(free_port) timeout 120 target/debug/followup-producer run-once 2>>"$tmp/producer.log" \
  || { cat "$tmp/producer.log" >&2; exit 1; }
timeout 60 target/debug/followup-projector consumers apply --dir nats/consumers
timeout 60 target/debug/followup-projector show-events >"$tmp/truth.jsonl" 2>/dev/null
total=$(wc -l <"$tmp/truth.jsonl")
echo "stream: $total events ($(( $(date +%s) - started )) s)"

applied() { "$@" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["applied"])' || echo 0; }

# check NAME STATE_FILE COMMAND...: start, SIGKILL mid-stream, start again, compare.
check() {
  local name=$1 state=$2; shift 2
  local run=("$@") log="$tmp/$name.log" pid n=0
  export EXAMPLE_STATE=$state EXAMPLE_BATCH_SIZE=10 EXAMPLE_PAUSE_MS=100
  "${run[@]}" >>"$log" 2>&1 &
  pid=$!; pids+=("$pid")
  for _ in $(seq 1 300); do
    n=$(applied "${run[@]}" --dump)
    [ "$n" -ge 60 ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "$name exited" >&2; return 1; }
    sleep 0.1
  done
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
  n=$(applied "${run[@]}" --dump)
  if [ "$n" -lt 60 ] || [ "$n" -ge "$total" ]; then
    cat "$log" >&2; echo "$name: not killed mid-stream ($n of $total applied)" >&2; return 1
  fi
  echo "$name: SIGKILL after $n of $total events; restarting ($(( $(date +%s) - started )) s)"
  "${run[@]}" >>"$log" 2>&1 &
  pid=$!; pids+=("$pid")
  EXAMPLE_STATE=$state python3 scripts/check-examples.py "$tmp/truth.jsonl" --wait 90 -- "${run[@]}" --dump \
    || { cat "$log" >&2; return 1; }
  stop_pids "$pid"
}

check example-python "$tmp/python.sqlite" python3 examples/python/consumer.py
check example-typescript "$tmp/typescript.json" node examples/typescript/dist/consumer.js
echo "examples: done in $(( $(date +%s) - started )) s"
