#!/usr/bin/env bash
# Soak (on demand, not in CI): runs producer, projector and gateway for SOAK_MINUTES (default 10)
# against a scratch database and a private nats-server, with a steady CRM load (lead inserts and
# updates, conversions, a follow-up run every 20 s) and SOAK_CLIENTS (default 1000) SSE clients
# connected. Samples RSS and open fds of each service every 10 s, counts ERROR/panicked log
# lines, prints a table with a verdict ("flat" or not) and writes it to $SOAK_OUT/soak.md.
# Exit status 0 when flat. Uses target/debug binaries (cargo build --bins).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_postgres
ensure_nats_binary

minutes=${SOAK_MINUTES:-10}
clients=${SOAK_CLIENTS:-1000}
out=${SOAK_OUT:-target/soak}
warmup=${SOAK_WARMUP_SECS:-60}
rate=${SOAK_LEADS_PER_SEC:-4}
mkdir -p "$out"
rm -f "$out"/{producer,projector,gateway,nats,load,sse}.log "$out"/samples.tsv "$out"/errors.tsv "$out"/sse.json
# 1000 clients need 1000 sockets in the gateway and in the client.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((clients + 200)) ] || die "ulimit -n $(ulimit -n) is too low for $clients clients"

log "building"
cargo build --quiet --bins

db=followup_soak
psql "$TEST_DATABASE_URL" -q -c "set client_min_messages = warning" \
  -c "drop database if exists $db with (force)" -c "create database $db"
export DATABASE_URL="${TEST_DATABASE_URL%/*}/$db"
nats_dir=$(mktemp -d)
nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$nats_dir" >"$out/nats.log" 2>&1 &
nats_pid=$!
export NATS_URL="nats://127.0.0.1:$nats_port" JWT_SECRET=soak-secret-0123456789abcdef
export FOLLOWUP_CRON="*/20 * * * * *" MAILER=log MAILER_LOG_FILE="$out/mails.jsonl"
export RUST_LOG=${RUST_LOG:-info,sqlx::postgres::notice=warn}

declare -A pid addr=([producer]=127.0.0.1:$(free_port) [projector]=127.0.0.1:$(free_port) [gateway]=127.0.0.1:$(free_port))
load_pid="" sse_pid=""
cleanup() {
  [ -n "$sse_pid" ] && kill "$sse_pid" 2>/dev/null || true
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
  for svc in gateway producer projector; do [ -n "${pid[$svc]:-}" ] && kill "${pid[$svc]}" 2>/dev/null || true; done
  sleep 2
  for svc in gateway producer projector; do [ -n "${pid[$svc]:-}" ] && kill -9 "${pid[$svc]}" 2>/dev/null || true; done
  kill "$nats_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$nats_dir"
  psql "$TEST_DATABASE_URL" -qc "drop database if exists $db with (force)" 2>/dev/null || true
  true
}
trap cleanup EXIT

for svc in producer projector gateway; do
  # The SSE clients share six users' tokens: lift the gateway's per-user stream cap (20).
  HTTP_ADDR=${addr[$svc]} SSE_MAX_CONNECTIONS_PER_USER=100000 "target/debug/followup-$svc" serve >"$out/$svc.log" 2>&1 &
  pid[$svc]=$!
  # The producer migrates first; the others wait for it.
  ready=0
  for _ in $(seq 1 300); do curl -fsS "http://${addr[$svc]}/readyz" >/dev/null 2>&1 && { ready=1; break; }; sleep 0.2; done
  [ "$ready" = 1 ] || die "$svc not ready (see $out/$svc.log)"
done

# Steady CRM load: every second $rate new leads (some already due), $rate updates of random
# leads (collaborators, status changes, conversions, clock stops).
load() {
  local users="ARRAY['alice','bob','carol','dave','erin','frank','gina','hugo']"
  while true; do
    psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 >/dev/null <<SQL || echo "load: psql failed" >&2
INSERT INTO leads (company_name, contact_person, email, business_type, territory_id, status,
                   owner_user_id, registered_at, metadata)
SELECT 'Soak ' || g, 'Kontakt', 'soak' || g || '@example.com', 'RESTAURANT', 'DE', 'ACTIVE',
       ($users)[1 + floor(random() * 8)::int],
       (now() AT TIME ZONE 'UTC') - floor(random() * 10) * interval '1 day' - interval '1 hour',
       '{"emailConsent": true}'
FROM generate_series(1, $rate) AS g;
UPDATE leads SET
  status = (ARRAY['ACTIVE','ACTIVE','CONVERTED','LOST'])[1 + floor(random() * 4)::int],
  clock_stopped_at = CASE WHEN random() < 0.1 THEN now() AT TIME ZONE 'UTC' END,
  version = version + 1, updated_at = now() AT TIME ZONE 'UTC'
WHERE id IN (SELECT id FROM leads ORDER BY random() LIMIT $rate);
INSERT INTO lead_collaborators (lead_id, user_id)
SELECT id, ($users)[1 + floor(random() * 8)::int] FROM leads ORDER BY random() LIMIT $rate
ON CONFLICT DO NOTHING;
SQL
    sleep 1
  done
}
load 2>>"$out/load.log" &
load_pid=$!

tokens=()
for who in "alice admin" "mgr manager" "bob sales" "carol sales" "dave sales" "erin sales"; do
  set -- $who
  tokens+=("$(target/debug/followup-gateway dev-token --sub "$1" --role "$2" --ttl-secs 86400)")
done
python3 scripts/soak_sse.py "${addr[gateway]}" "$clients" "$out/sse.json" "${tokens[@]}" 2>"$out/sse.log" &
sse_pid=$!

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "soak: $minutes min, $clients SSE clients, $rate lead inserts + $rate updates per second; load average $load_start"
end=$((SECONDS + minutes * 60))
start=$SECONDS
while [ $SECONDS -lt $end ]; do
  t=$((SECONDS - start))
  for svc in producer projector gateway; do
    p=${pid[$svc]}
    kill -0 "$p" 2>/dev/null || die "$svc (pid $p) died (see $out/$svc.log)"
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")
    fds=$(ls "/proc/$p/fd" | wc -l)
    printf '%s %s %s %s\n' "$t" "$svc" "$rss" "$fds" >>"$out/samples.tsv"
  done
  conn=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("connected", 0))' "$out/sse.json" 2>/dev/null || echo 0)
  printf '%4ss  gateway rss %s KiB fds %s  sse connected %s  load %s\n' "$t" "$rss" "$fds" "$conn" \
    "$(cut -d' ' -f1 /proc/loadavg)" >&2
  sleep 10
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
kill -TERM "$sse_pid"; wait "$sse_pid" 2>/dev/null || true; sse_pid=""
kill "$load_pid"; wait "$load_pid" 2>/dev/null || true; load_pid=""

: >"$out/errors.tsv"
for svc in producer projector gateway; do
  printf '%s %s\n' "$svc" "$(grep -cE ' ERROR |panicked' "$out/$svc.log" || true)" >>"$out/errors.tsv"
done
python3 - "$out/sse.json" "$clients" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); s["wanted"] = int(sys.argv[2]); json.dump(s, open(sys.argv[1], "w"))
PY
counts=$(psql "$DATABASE_URL" -Atc "select (select count(*) from leads), (select count(*) from projection_inbox),
  (select count(*) from followup_runs), (select count(*) from followup_deliveries)" | tr '|' ' ')
read -r n_leads n_events n_runs n_deliveries <<<"$counts"
header="Soak $(date -u '+%Y-%m-%d %H:%M UTC'): $minutes min, $clients SSE clients, $(nproc) cores; \
load average $load_start at start, $load_end at end (machine shared with other builds). \
Load: $n_leads leads inserted, $n_events events applied by the projector, $n_runs follow-up runs, $n_deliveries deliveries. \
Samples every 10 s; first $warmup s are warm-up."
status=0
python3 scripts/soak_report.py "$out/samples.tsv" "$out/errors.tsv" "$out/sse.json" "$warmup" "$header" \
  | tee "$out/soak.md" || status=$?
grep -hE ' ERROR |panicked' "$out"/{producer,projector,gateway}.log | head -20 >&2 || true
exit $status
