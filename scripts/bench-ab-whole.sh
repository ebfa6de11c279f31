#!/usr/bin/env bash
# A/B of the whole-pipeline benchmark (issue 17): two builds, each a directory holding its three
# release binaries (followup-gateway, followup-producer, followup-projector) and its e2e test
# binary named `it` (it brings that build's migrations), run one after the other in one script on
# one machine, in the order given. Prints the benchmark's figures and the projector's stage split,
# each line prefixed with the build's label.
#
#   ./scripts/bench-ab-whole.sh old=/work/old-bin new=/work/new-bin old new
#
# Build a directory: `cargo build --release -p followup-gateway --bin followup-gateway -p
# followup-producer --bin followup-producer -p followup-projector --bin followup-projector`, then
# `cargo test -p followup-e2e --release --test it --no-run` (it names the test binary); copy the
# four. Env as for the suite: BENCH_RUNS (3), BENCH_SECONDS (5 here), BENCH_WHOLE_SIZES.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_postgres
ensure_nats_binary
declare -A dirs=()
while [ $# -gt 0 ] && [[ "$1" == *=* ]]; do dirs[${1%%=*}]=${1#*=}; shift; done
[ $# -gt 0 ] || die "usage: $0 LABEL=DIR ... LABEL ..."
export FOLLOWUP_TEST_DB_PREFIX=followup_bench BENCH_RUNS=${BENCH_RUNS:-3} BENCH_SECONDS=${BENCH_SECONDS:-5}
unset RUST_LOG
ulimit -n "$(ulimit -Hn)"
for label in "$@"; do
  dir=${dirs[$label]:?no directory for $label}
  log "$label: $dir ($(date -u +%T), load average $(cut -d' ' -f1-3 /proc/loadavg))"
  (cd e2e && BENCH_SERVICE_BIN_DIR=$dir "$dir/it" --ignored --nocapture --test-threads 1 \
    --exact bench_whole::bench_whole_pipeline 2>&1) \
    | grep --line-buffered -E '"figure":"whole_|stages of projector alone' | sed "s/^/$label /"
  psql "$TEST_DATABASE_URL" -Atc "select datname from pg_database where datname like 'followup_bench_%'" \
    | while read -r db; do psql "$TEST_DATABASE_URL" -qc "drop database if exists \"$db\" with (force)"; done
done
log "end ($(date -u +%T), load average $(cut -d' ' -f1-3 /proc/loadavg))"
