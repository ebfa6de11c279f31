#!/usr/bin/env bash
# The benchmark suite (issue 7): every benchmark, each figure beside a baseline measured in the
# same run, BENCH_RUNS runs each (median and spread), results as Markdown, JSON and SVG charts in
# bench/results/<date>.{md,json} and bench/results/latest.{md,json}, and the README's figures
# (the block between its bench-report markers) generated from them.
#
# Exits non-zero when a benchmark fails (its command exits non-zero), when a figure with a target
# misses it, or when a benchmark that ran did not emit one of its figures; the report is written
# either way and names them.
#
#   ./scripts/bench.sh                 # all: relay projector snapshot pipeline latency fanout json widget producer metrics whole replicas insights
#   ./scripts/bench.sh latency fanout  # only these (the report keeps the other benches' last samples of the day)
#
# Env: BENCH_RUNS (3); BENCH_QUICK=1 for small sizes (trying the suite, not for figures);
# BENCH_OUT (bench/results). Needs PostgreSQL (TEST_DATABASE_URL), nats-server, Chromium + node
# for the widget, and oha (installed with `cargo install --locked oha` when missing). Run it on a
# quiet machine: every figure moves with the load average, which the report prints per bench.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

ALL=(relay projector snapshot pipeline latency fanout json widget producer metrics whole replicas insights)
if [ $# -gt 0 ]; then selected=("$@"); else selected=("${ALL[@]}"); fi
for b in "${selected[@]}"; do
  [[ " ${ALL[*]} " == *" $b "* ]] || die "unknown benchmark '$b' (known: ${ALL[*]})"
done

ensure_rust
ensure_postgres
ensure_nats_binary
if [[ " ${selected[*]} " == *" widget "* ]]; then ensure_browser; fi
if [[ " ${selected[*]} " == *" json "* ]] && ! command -v oha >/dev/null; then
  log "installing oha (the fixed-rate HTTP load generator) from crates.io"
  cargo install --locked --quiet oha || die "cargo install --locked oha failed"
fi

RUNS=${BENCH_RUNS:-3}
export BENCH_RUNS=$RUNS BENCH_REPEAT=$RUNS BENCH_ROUNDS=$RUNS
# Databases of the suite are not `followup_test_*`, which test runs drop as leftovers.
export FOLLOWUP_TEST_DB_PREFIX=followup_bench
unset RUST_LOG
if [ -n "${BENCH_QUICK:-}" ]; then
  export BENCH_EVENTS=20000 BENCH_LEADS=100000 BENCH_DUE=10000 BENCH_PIPELINE_CHANGES=20000 \
    BENCH_SECONDS=5 BENCH_CLIENTS=1000
fi
# Fan-out: 10 000 client sockets in the bench process and as many in the gateway's.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 10500 ] || log "warning: fd limit $(ulimit -n) is below what 10 000 SSE clients need"

drop_bench_databases() {
  psql "$TEST_DATABASE_URL" -Atc "select datname from pg_database where datname like 'followup_bench_%'" \
    | while read -r db; do psql "$TEST_DATABASE_URL" -qc "drop database if exists \"$db\" with (force)"; done
}
drop_bench_databases
trap drop_bench_databases EXIT

date=$(date -u +%F)
out=${BENCH_OUT:-bench/results}
work=target/bench-suite/$date
mkdir -p "$out" "$work"

log "building the benchmarks (release)"
# The benchmarks that run the services as processes (fanout, whole, replicas) use these copies:
# left to themselves they would build the binaries with cargo, whose feature set differs from the
# test binary's, so every switch between the two rebuilt shared crates for minutes.
cargo build --release --quiet -p followup-gateway --bin followup-gateway \
  -p followup-producer --bin followup-producer -p followup-projector --bin followup-projector
mkdir -p "$work/bin"
# Unlinked first: a service left running (e.g. SIGSTOPped by a killed run of `whole`) keeps its
# binary busy, and copying over a busy executable fails with "Text file busy".
rm -f "$work/bin/followup-gateway" "$work/bin/followup-producer" "$work/bin/followup-projector"
cp target/release/followup-gateway target/release/followup-producer target/release/followup-projector "$work/bin/"
export BENCH_SERVICE_BIN_DIR=$PWD/$work/bin
cargo bench -p followup-producer -p followup-projector --no-run --quiet
cargo test -p followup-e2e --release --test it --no-run --quiet

gateway_test() {
  cargo test -p followup-e2e --release --quiet --test it -- --ignored --nocapture \
    --test-threads 1 --exact "$1"
}

run_bench() {
  case "$1" in
    relay) BENCH_ONLY=relay cargo bench -p followup-producer --bench pipeline --quiet ;;
    producer) BENCH_ONLY=run cargo bench -p followup-producer --bench pipeline --quiet ;;
    projector) cargo bench -p followup-projector --bench throughput --quiet ;;
    snapshot) cargo bench -p followup-projector --bench snapshot --quiet ;;
    pipeline) gateway_test bench_pipeline::bench_pipeline_end_to_end ;;
    latency) gateway_test bench_pipeline::bench_latency_at_rate ;;
    fanout) gateway_test bench_fanout::bench_sse_fanout ;;
    json) gateway_test bench::bench_metrics_endpoint ;;
    widget) gateway_test bench::bench_widget_first_figures ;;
    metrics) gateway_test bench_metrics::bench_metrics_cost ;;
    whole) gateway_test bench_whole::bench_whole_pipeline ;;
    insights) gateway_test bench_insights::bench_insights_endpoints ;;
    replicas) gateway_test bench_replicas::bench_replicas ;;
  esac
}

failed=()

for b in "${selected[@]}"; do
  log "benchmark: $b ($RUNS runs; load average $(cut -d' ' -f1-3 /proc/loadavg))"
  load_start=$(cut -d' ' -f1 /proc/loadavg)
  started=$(date -u +%FT%TZ)
  t0=$(date +%s)
  status=0
  run_bench "$b" 2>&1 | tee "$work/$b.log" || status=$?
  if [ "$status" -ne 0 ]; then
    log "benchmark $b FAILED with exit status $status (see $work/$b.log)"
    failed+=("$b")
  fi
  # The JSON lines the benchmark printed, plus when and under which load it ran.
  {
    grep -E '^\{.*"bench":' "$work/$b.log" || true
    printf '{"bench":"_meta","name":"%s","started":"%s","seconds":%s,"exit":%s,"load_start":%s,"load_end":%s}\n' \
      "$b" "$started" "$(($(date +%s) - t0))" "$status" "$load_start" "$(cut -d' ' -f1 /proc/loadavg)"
  } >"$work/$b.jsonl"
done

report=0
python3 scripts/bench_report.py "$work" "$out" "$date" || report=$?
log "results: $out/$date.md, $out/$date.json, $out/latest.md"
if [ "${#failed[@]}" -gt 0 ]; then
  die "benchmarks failed: ${failed[*]} (logs in $work)"
fi
[ "$report" -eq 0 ] || die "targets missed or figures missing (see $out/$date.md)"
