#!/usr/bin/env bash
# CloudEvents interoperability check: the producer publishes every event type of the contract to a
# real JetStream stream, then three independent readers read that stream and must agree event by
# event (scripts/cloudevents/compare.py):
#   - Rust: `followup-projector show-events` (our own parser, the reference),
#   - Python: the CloudEvents Python SDK (scripts/cloudevents/read_python.py),
#   - JavaScript: the CloudEvents JavaScript SDK (scripts/cloudevents/read_node.mjs).
# Other CRM modules consume FOLLOWUP with these SDKs; an event they reject or read differently
# (an attribute, a time, a number in `data`) breaks them even when our own tests pass.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh # start_private_stack, free_port, stop_pids, ensure_*
ensure_cloudevents_readers
ensure_aiosmtpd
# A real SMTP server (start_smtp_test_server): the log mailer accepts any address, only
# the SMTP mailer finds an invalid one (lettre's parse → permanent failure), and a `failed` event
# needs a failure. The test server answers 550 to a local part containing "reject": a second,
# server-side permanent failure.
start_private_stack cloudevents
start_smtp_test_server

target/debug/followup-producer migrate

# CRM writes, as the CRM makes them (created_by set, naive UTC timestamps, emailConsent): every
# insert, update, collaborator and consent row below is a lead.changed.v1 through the triggers.
#   1, 2: registered 4 days ago, T+3 due → sent        3: invalid address → T+3 failed (lettre)
#   4: 8 days ago, T+3 sent 4 days ago → T+7 sent       5: T+7 due, server answers 550 → failed
#   6: changed only (collaborators, owner, consent opt-out, converted, deleted)
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO leads (company_name, contact_person, email, business_type, territory_id, status,
                   owner_user_id, registered_at, t3_followup_sent, last_followup_at, metadata,
                   created_by)
VALUES
  ('Bäckerei Süß', 'Jürgen Müller', 'juergen@example.com', 'RESTAURANT', 'DE', 'ACTIVE', 'alice',
   (now() AT TIME ZONE 'UTC') - interval '4 days 1 hour', false, NULL, '{"emailConsent": true}', 'crm'),
  ('Hotel Zwei', 'Anna', 'anna@example.com', 'HOTEL', 'DE', 'ACTIVE', 'bob',
   (now() AT TIME ZONE 'UTC') - interval '4 days 2 hours', false, NULL, '{"emailConsent": true}', 'crm'),
  ('Kantine Drei', 'Ohne Adresse', 'not an address', 'KANTINE', 'DE', 'ACTIVE', 'alice',
   (now() AT TIME ZONE 'UTC') - interval '4 days 3 hours', false, NULL, '{"emailConsent": true}', 'crm'),
  ('Catering Vier', 'Vera', 'vera@example.com', 'CATERING', 'DE', 'ACTIVE', 'bob',
   (now() AT TIME ZONE 'UTC') - interval '8 days', true,
   (now() AT TIME ZONE 'UTC') - interval '4 days', '{"emailConsent": true}', 'crm'),
  ('Hotel Fünf', 'Fritz', 'reject-fritz@example.com', 'HOTEL', 'DE', 'ACTIVE', 'alice',
   (now() AT TIME ZONE 'UTC') - interval '8 days', true,
   (now() AT TIME ZONE 'UTC') - interval '4 days', '{"emailConsent": true}', 'crm'),
  ('Sonstiges Sechs', 'Sina', 'sina@example.com', 'SONSTIGES', 'DE', 'REGISTERED', 'bob',
   (now() AT TIME ZONE 'UTC') - interval '1 day', false, NULL, '{"emailConsent": true}', 'crm');
INSERT INTO lead_collaborators (lead_id, user_id)
  SELECT id, u FROM leads, unnest(ARRAY['carol', 'dave']) AS u WHERE company_name = 'Sonstiges Sechs';
UPDATE leads SET owner_user_id = 'carol', version = version + 1, updated_at = now() AT TIME ZONE 'UTC' WHERE company_name = 'Sonstiges Sechs';
INSERT INTO lead_consent (lead_id, channel, status)
  SELECT id, 'EMAIL', 'OPT_OUT' FROM leads WHERE company_name = 'Sonstiges Sechs';
UPDATE leads SET status = 'CONVERTED', version = version + 1, updated_at = now() AT TIME ZONE 'UTC' WHERE company_name = 'Sonstiges Sechs';
DELETE FROM leads WHERE company_name = 'Sonstiges Sechs';
SQL

# One run: claims, sends or fails, records, and returns once the outbox is in the stream.
HTTP_ADDR=127.0.0.1:$(free_port) MAILER=smtp SMTP_URL="smtp://127.0.0.1:$smtp_port" \
  SMTP_FROM=noreply@freshplan.example UNSUBSCRIBE_BASE_URL=http://127.0.0.1:8080 \
  UNSUBSCRIBE_SECRET=cloudevents-check-secret-0123 FOLLOWUP_TZ=Europe/Berlin \
  timeout 120 target/debug/followup-producer run-once

# ---- Rust reader (the reference): the stream as our contract crate parses it ------------------
timeout 60 target/debug/followup-projector show-events >"$tmp/rust.jsonl"
# ---- the SDK readers -------------------------------------------------------------------------
timeout 60 python3 scripts/cloudevents/read_python.py >"$tmp/python.jsonl"
timeout 60 node scripts/cloudevents/read_node.mjs >"$tmp/node.jsonl"

# Run in $tmp so the report names the readers (rust.jsonl, ...); in a subshell, so the cleanup
# does not run from a deleted directory (psql refuses to start there).
(cd "$tmp" && python3 "$OLDPWD/scripts/cloudevents/compare.py" rust.jsonl python.jsonl node.jsonl)
