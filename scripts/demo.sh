#!/usr/bin/env bash
# The demo: starts or reuses PostgreSQL and NATS (JetStream), builds the services, loads demo
# leads that become due, and runs producer, projector and gateway with a follow-up run every
# 20 seconds; prints cockpit URLs with development tokens.
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

ensure_rust
ensure_postgres
ensure_nats_running

DB=${DEMO_DATABASE:-followup_demo}
admin_url=$TEST_DATABASE_URL
export DATABASE_URL="${admin_url%/*}/$DB"
if [ "$(psql "$admin_url" -Atc "select 1 from pg_database where datname = '$DB'")" != 1 ]; then
  psql "$admin_url" -qc "create database $DB"
fi

log "building"
cargo build --quiet --bins

export FOLLOWUP_CRON=${FOLLOWUP_CRON:-"*/20 * * * * *"}
export MAILER_LOG_FILE=${MAILER_LOG_FILE:-"${TMPDIR:-/tmp}/followup-demo-mails.jsonl"}
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

export JWT_SECRET=${JWT_SECRET:-demo-secret-change-me-0123456789}
HTTP_ADDR=127.0.0.1:9101 target/debug/followup-producer serve &
pids+=($!)
HTTP_ADDR=127.0.0.1:9102 target/debug/followup-projector serve &
pids+=($!)
HTTP_ADDR=127.0.0.1:8080 target/debug/followup-gateway serve &
pids+=($!)

# Wait for the producer's migrations, then load demo leads (idempotent per company name).
for _ in $(seq 1 100); do
  psql "$DATABASE_URL" -Atc "select 1 from information_schema.tables where table_name = 'followup_outbox'" | grep -q 1 && break
  sleep 0.2
done
log "loading demo leads"
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO leads (company_name, contact_person, email, business_type, territory_id, status,
                   owner_user_id, registered_at, t3_followup_sent, metadata)
SELECT 'Demo ' || i || ' ' || (ARRAY['Gasthaus','Hotel','Kantine','Catering'])[1 + i % 4],
       'Kontakt ' || i, 'demo' || i || '@example.com',
       (ARRAY['RESTAURANT','HOTEL','KANTINE','CATERING'])[1 + i % 4], 'DE', 'ACTIVE',
       (ARRAY['alice','bob','carol'])[1 + i % 3],
       (now() AT TIME ZONE 'UTC') - (i % 10) * interval '1 day' - interval '1 hour',
       (i % 10) >= 8,
       jsonb_build_object('emailConsent', i % 7 <> 0)
FROM generate_series(1, 60) AS i
WHERE NOT EXISTS (SELECT 1 FROM leads WHERE company_name LIKE 'Demo %');
-- Collaborators live in lead_collaborators, as in the CRM.
INSERT INTO lead_collaborators (lead_id, user_id)
SELECT id, 'alice' FROM leads
WHERE company_name LIKE 'Demo %' AND id % 5 = 0 AND owner_user_id <> 'alice'
ON CONFLICT DO NOTHING;
SQL

admin_url_cockpit=$(target/debug/followup-gateway dev-token --sub alice --role admin --url http://127.0.0.1:8080)
sales_url_cockpit=$(target/debug/followup-gateway dev-token --sub bob --role sales --url http://127.0.0.1:8080)
cat <<INFO

  Demo running (Ctrl-C stops it). Database: $DATABASE_URL
  - cockpit (admin alice): $admin_url_cockpit
  - cockpit (sales bob):   $sales_url_cockpit
  - follow-up runs: cron "$FOLLOWUP_CRON" in Europe/Berlin; e-mails: $MAILER_LOG_FILE
  - metrics: producer http://127.0.0.1:9101/metrics, projector http://127.0.0.1:9102/metrics,
             gateway http://127.0.0.1:8080/metrics
  - change a lead and watch the cockpit: psql "$DATABASE_URL" -c "update leads set status = 'CONVERTED' where id = 3"
  - events: nats stream view FOLLOWUP

INFO
wait
