#!/usr/bin/env bash
# The fault-injection suite (README "Reliability"): builds the binaries, then runs
# `followup-faults`, which starts its own PostgreSQL 15 instance (initdb in a temporary
# directory) holding the CRM's production schema (the test kit's fixture), a three-node NATS
# cluster and the three services, drives CRM load, injects every fault several times and checks
# the exact oracle. Exits non-zero when anything was lost, duplicated, differs, was sent without
# consent, did not recover or did not shut down, and when a phase proved nothing (its load
# committed no change, or a fault was not confirmed injected).
#
#   ./scripts/faults.sh --short        # CI: each fault twice, NATS down 10 s (about 3-4 minutes)
#   ./scripts/faults.sh                # long: each fault 5 times, NATS down 60 s; writes FAULTS.md
#   ./scripts/faults.sh --seed N ...   # replay a run's fault moments and load
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_rust
ensure_nats_binary
[ -x /usr/lib/postgresql/15/bin/initdb ] || ensure_postgres
[ -x /usr/lib/postgresql/15/bin/initdb ] || die "the suite needs PostgreSQL 15's initdb (Debian: postgresql-15)"

log "building the binaries"
cargo build --quiet --bins
if [[ " $* " == *" --short "* ]]; then
  exec target/debug/followup-faults "$@"
fi
out=$(mktemp)
status=0
target/debug/followup-faults --out "$out" "$@" || status=$?
[ -s "$out" ] || { echo "no table (the suite stopped early)"; exit "$status"; }
{
  echo "# Fault suite results"
  echo
  echo "Run of \`./scripts/faults.sh $*\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores (shared"
  echo "with other builds), debug binaries. The oracle and what each column means: README \"Reliability\"."
  echo
  cat "$out"
} > FAULTS.md
rm -f "$out"
echo "table written to FAULTS.md"
exit "$status"
