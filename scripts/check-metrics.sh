#!/usr/bin/env bash
# Metrics and dashboard check: starts the three binaries against a scratch database and a private
# NATS, makes them do real work (due leads, a run every 2 s, a CRM that keeps changing leads, an
# SSE client, JSON requests), lets a real Prometheus (Debian's package) scrape them every second
# with deploy/prometheus's scrape jobs and alert rules, then
#   1. lints every service's /metrics with `promtool check metrics`,
#   2. runs every query of deploy/grafana/dashboards/followup.json through Prometheus' HTTP API
#      (scripts/check-dashboard.py): each must be valid and return data.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TEST_DATABASE_URL:?set by scripts/services.sh}"
source scripts/services.sh # start_private_stack, free_port
# Scratch database, private NATS, $tmp; on exit services, Prometheus and clients stop first
# (SIGTERM, then SIGKILL after 10 s), then NATS, then the database goes: a check must never hang
# the test command.
start_private_stack metrics
export JWT_SECRET=metrics-check-secret-0123456789
declare -A addr
for svc in producer projector gateway; do addr[$svc]=127.0.0.1:$(free_port); done
for svc in producer projector gateway; do
  HTTP_ADDR=${addr[$svc]} FOLLOWUP_CRON="*/2 * * * * *" "target/debug/followup-$svc" serve >"$tmp/$svc.log" 2>&1 &
  pids+=($!)
done
services=(producer projector gateway)
for i in 0 1 2; do
  svc=${services[$i]}
  for _ in $(seq 1 100); do
    kill -0 "${pids[$i]}" 2>/dev/null || break
    curl -fsS "http://${addr[$svc]}/readyz" >/dev/null 2>&1 && continue 2
    sleep 0.2
  done
  tail -20 "$tmp/$svc.log" >&2
  echo "$svc did not become ready on ${addr[$svc]}" >&2
  exit 1
done

# Prometheus with the deployment's scrape jobs and rules, the targets moved to loopback.
prom_port=$(free_port)
python3 - "$tmp/prometheus.yml" "${addr[producer]}" "${addr[projector]}" "${addr[gateway]}" <<'PY'
import os, sys, yaml
out, producer, projector, gateway = sys.argv[1:]
with open("deploy/prometheus/prometheus.yml") as f:
    config = yaml.safe_load(f)
config["global"].update(scrape_interval="1s", evaluation_interval="1s")
config["rule_files"] = [os.path.abspath("deploy/prometheus/rules") + "/*.yml"]
loopback = {"producer": producer, "projector": projector, "gateway": gateway}
for job in config["scrape_configs"]:
    for static in job["static_configs"]:
        static["targets"] = [loopback[t.split(":")[0]] for t in static["targets"]]
with open(out, "w") as f:
    yaml.safe_dump(config, f)
PY
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus-data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
for _ in $(seq 1 100); do curl -fsS "$prom/-/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$prom/-/ready" >/dev/null || { cat "$tmp/prometheus.log" >&2; echo "Prometheus did not start" >&2; exit 1; }

# A cockpit user: one SSE stream (push latency needs a connected client) and JSON requests.
gw="http://${addr[gateway]}"
token=$(target/debug/followup-gateway dev-token --sub alice --role admin)
timeout 300 curl -sN -H "Authorization: Bearer $token" "$gw/api/dashboard/followup-stream" >"$tmp/sse.log" 2>&1 &
pids+=($!)

# Due leads (registered 0-9 days ago, as in demo.sh): the next run sends their T+3/T+7.
psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO leads (company_name, contact_person, email, business_type, territory_id, status,
                   owner_user_id, registered_at, t3_followup_sent, metadata)
SELECT 'Check ' || i, 'Kontakt ' || i, 'check' || i || '@example.com', 'RESTAURANT', 'DE', 'ACTIVE',
       (ARRAY['alice','bob'])[1 + i % 2],
       (now() AT TIME ZONE 'UTC') - (i % 10) * interval '1 day' - interval '1 hour',
       (i % 10) >= 8, jsonb_build_object('emailConsent', i % 7 <> 0)
FROM generate_series(1, 40) AS i;
SQL
# The CRM keeps working: a lead converts every second, so events keep flowing to the cockpit.
(for i in $(seq 1 40); do
   psql "$DATABASE_URL" -qc "update leads set status = 'CONVERTED' where company_name = 'Check $i'" >/dev/null 2>&1 || true
   sleep 1
 done) &
pids+=($!)
for _ in 1 2 3; do
  for path in /api/followup/metrics /api/followup/runs "/api/followup/metrics?owner=bob"; do
    curl -fsS -H "Authorization: Bearer $token" "$gw$path" >/dev/null
  done
  curl -sS -o /dev/null "$gw/api/followup/metrics" # 401: counted too
  sleep 1
done

python3 scripts/check-dashboard.py "$prom" deploy/grafana/dashboards/followup.json 90

for svc in producer projector gateway; do
  curl -fsS "http://${addr[$svc]}/metrics" | promtool check metrics \
    || { echo "promtool check metrics failed for $svc" >&2; exit 1; }
  echo "$svc: /metrics passes promtool check metrics"
done
