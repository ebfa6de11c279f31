#!/usr/bin/env bash
# Runs every check and test of the project: formatting, clippy, and the whole workspace's tests
# against real PostgreSQL, private nats-servers and a real SMTP server (Python aiosmtpd).
# Installs/starts what is missing. Ends with the short fault-injection suite (scripts/faults.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

ensure_rust
ensure_postgres
ensure_nats_binary
ensure_browser
ensure_promtool
ensure_aiosmtpd
ensure_pyyaml
ensure_schemathesis
ensure_cloudevents_readers
ensure_example_consumers

# Leftover databases of earlier, interrupted runs.
psql "$TEST_DATABASE_URL" -Atc "select datname from pg_database where datname like 'followup_test_%'" \
  | while read -r db; do psql "$TEST_DATABASE_URL" -qc "drop database if exists \"$db\" with (force)"; done

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "promtool: alert rules"
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.test.yml
log "event catalog: no breaking change against the released one (nats/released/)"
python3 scripts/test_catalog_compat.py
python3 scripts/catalog_compat.py
log "README: benchmark figures generated from bench/results/latest.json"
python3 scripts/bench_report.py --check-readme
log "widget package: types against the gateway's OpenAPI document, typecheck, Vitest, build"
(cd widget && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check:types \
  && npm run --silent typecheck && npm test --silent && npm run --silent build)
log "cargo test"
cargo test --workspace
log "docker-compose.yml against the binaries"
cargo build --quiet --bins
python3 scripts/check-compose.py
log "Grafana dashboard queries against a real Prometheus; promtool check metrics on every service"
timeout 300 ./scripts/check-metrics.sh
log "CloudEvents: the stream as read by Rust, the Python SDK and the JavaScript SDK"
timeout 180 ./scripts/check-cloudevents.sh
log "example consumers (Python, TypeScript): SIGKILL mid-stream, restart, projection = stream"
timeout 240 ./scripts/check-examples.sh
log "schemathesis against the gateway (hostile input, bounded)"
timeout 300 ./scripts/check-api.sh
log "fault suite (short)"
# Its own Postgres instance, NATS cluster and service processes; SIGTERM (from timeout) stops them.
timeout 420 ./scripts/faults.sh --short
