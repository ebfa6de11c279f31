#!/usr/bin/env bash
# Hostile input against the real gateway: schemathesis generates requests from /openapi.json,
# with an admin token, a sales user's token and invalid tokens (garbage, expired, wrong
# signature). Fails on any 5xx, on a response that does not match the document, and on a
# "panicked" line in the gateway's log. Starts producer, projector and gateway against a scratch
# database (with leads, so the figures are not all zero) and a private nats-server.
# Bounded: API_EXAMPLES (default 50) examples per operation and run.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TEST_DATABASE_URL:?set by scripts/services.sh}"
source scripts/services.sh # start_private_stack, free_port
examples=${API_EXAMPLES:-50}
out=target/check-api
mkdir -p "$out"
start_private_stack api
export JWT_SECRET=api-check-secret-0123456789abcdef
# Configured as in production: without it /unsubscribe answers 503 (documented) by design.
export UNSUBSCRIBE_SECRET=api-check-unsubscribe-0123456789abcdef
export FOLLOWUP_CRON="*/5 * * * * *" MAILER_LOG_FILE="$out/mails.jsonl"
declare -A addr=([producer]=127.0.0.1:$(free_port) [projector]=127.0.0.1:$(free_port) [gateway]=127.0.0.1:$(free_port))
for svc in producer projector gateway; do
  HTTP_ADDR=${addr[$svc]} "target/debug/followup-$svc" serve >"$out/$svc.log" 2>&1 &
  pids+=($!)
  ready=0
  for _ in $(seq 1 300); do curl -fsS "http://${addr[$svc]}/readyz" >/dev/null 2>&1 && { ready=1; break; }; sleep 0.2; done
  [ "$ready" = 1 ] || { echo "$svc not ready" >&2; cat "$out/$svc.log" >&2; exit 1; }
done
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO leads (company_name, contact_person, email, business_type, territory_id, status,
                   owner_user_id, registered_at, metadata)
SELECT 'API ' || i, 'Kontakt', 'api' || i || '@example.com', 'RESTAURANT', 'DE',
       CASE WHEN i % 4 = 0 THEN 'CONVERTED' ELSE 'ACTIVE' END,
       (ARRAY['alice','bob','carol'])[1 + i % 3],
       (now() AT TIME ZONE 'UTC') - (i % 9) * interval '1 day' - interval '1 hour', '{"emailConsent": true}'
FROM generate_series(1, 40) AS i;
INSERT INTO lead_collaborators (lead_id, user_id)
SELECT id, 'bob' FROM leads WHERE id % 5 = 0 AND owner_user_id <> 'bob';
SQL

gw="http://${addr[gateway]}"
token() { target/debug/followup-gateway dev-token "$@"; }
admin=$(token --sub alice --role admin)
sales=$(token --sub bob --role sales)
expired=$(python3 - "$JWT_SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=")
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b(json.dumps({"sub": "alice", "roles": ["admin"], "exp": int(time.time()) - 3600}).encode())
sig = b(hmac.new(sys.argv[1].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
PY
)
wrong_signature=$(JWT_SECRET=another-secret-0123456789abcdef token --sub alice --role admin)
# The figures are there before the run (the pipeline is asynchronous).
for _ in $(seq 1 150); do
  curl -fsS -H "Authorization: Bearer $admin" "$gw/api/followup/metrics" | grep -q '"pendingT3":[1-9]' && break
  sleep 0.2
done

run() {
  local name=$1; shift
  echo "schemathesis: $name"
  st run "$gw/openapi.json" --url "$gw" --max-examples "$examples" --seed 8 --workers 1 \
    --phases examples,coverage,fuzzing --request-timeout 10 --no-color --generation-database none \
    --report junit --report-junit-path "$out/$name.xml" "$@"
}
failed=0
# A valid token makes a stream an endless response: the streams (ours and the CRM's path) are
# fuzzed with bad tokens only (their authorised behaviour is covered by e2e/tests/it/sse.rs
# and rbac.rs).
for who in admin sales; do
  run "$who" -H "Authorization: Bearer ${!who}" --checks all \
    --exclude-path /api/dashboard/followup-stream --exclude-path /metrics/followup/stream \
    || failed=1
done
for who in expired wrong_signature; do
  run "$who" -H "Authorization: Bearer ${!who}" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    || failed=1
done
run garbage -H "Authorization: Bearer not.a.token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  || failed=1
if grep -n "panicked" "$out/gateway.log"; then
  echo "the gateway panicked (see $out/gateway.log)" >&2
  failed=1
fi
[ "$failed" = 0 ] && echo "schemathesis: no 5xx, no panic, responses match the document"
exit "$failed"
