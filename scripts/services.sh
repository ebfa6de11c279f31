#!/usr/bin/env bash
# Sourced by test.sh and demo.sh: makes sure PostgreSQL and nats-server are installed and
# running on this machine, installing Debian's packages when they are missing (as root), or
# says exactly what is missing. Exports TEST_DATABASE_URL / NATS_URL for the callers.

PG_HOST=127.0.0.1
PG_PORT=5432
NATS_PORT=4222

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31mERROR: %s\033[0m\n' "$*" >&2; exit 1; }

# A loopback TCP port that was free a moment ago (for the scripts' private servers).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# SIGTERM to every pid given, then SIGKILL (with a warning) to any still alive after 10 s: a check
# must never hang the test command on a process that ignores SIGTERM.
stop_pids() {
  [ "$#" -gt 0 ] || return 0
  kill "$@" 2>/dev/null || true
  local alive pid
  for _ in $(seq 1 50); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "warning: pid $pid ignored SIGTERM for 10 s; killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "$1 is missing. Install it (Debian: sudo apt-get install -y $*) and run this command again."
  fi
  log "installing Debian packages: $*"
  if [ -z "${FOLLOWUP_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null
    export FOLLOWUP_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
    :
  else
    if ! command -v pg_ctlcluster >/dev/null; then
      apt_install postgresql postgresql-client
      FRESH_PG=1
    fi
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || die "PostgreSQL is installed but has no cluster (pg_createcluster 15 main)."
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
      || pg_ctlcluster "$version" main start \
      || die "cannot start PostgreSQL $version (see /var/log/postgresql/)"
    for _ in $(seq 1 50); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break; sleep 0.2; done
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || die "PostgreSQL does not answer on $PG_HOST:$PG_PORT"
  fi
  if [ -z "${TEST_DATABASE_URL:-}" ]; then
    if psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
      export TEST_DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/postgres"
    elif [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
      # A stock Debian cluster wants a password over TCP: give the local superuser a known one.
      runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null \
        || die "cannot set a password for the postgres role"
      export TEST_DATABASE_URL="postgres://postgres:postgres@$PG_HOST:$PG_PORT/postgres"
    else
      die "cannot log in to PostgreSQL as postgres on $PG_HOST:$PG_PORT; set TEST_DATABASE_URL"
    fi
  fi
}

nats_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_nats_binary() {
  command -v nats-server >/dev/null || apt_install nats-server
}

# The demo needs a running server; tests start their own from the binary.
ensure_nats_running() {
  ensure_nats_binary
  if ! nats_listening "$NATS_PORT"; then
    local store=/var/lib/nats-server
    [ -w "$(dirname "$store")" ] || store="${TMPDIR:-/tmp}/followup-nats"
    mkdir -p "$store"
    log "starting nats-server with JetStream on 127.0.0.1:$NATS_PORT (store $store)"
    nohup nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$store" >"${TMPDIR:-/tmp}/followup-nats.log" 2>&1 &
    for _ in $(seq 1 50); do nats_listening "$NATS_PORT" && break; sleep 0.2; done
    nats_listening "$NATS_PORT" || die "nats-server did not start (see ${TMPDIR:-/tmp}/followup-nats.log)"
  fi
  export NATS_URL="${NATS_URL:-nats://127.0.0.1:$NATS_PORT}"
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo is missing: install Rust ≥ 1.94 (rustup) and run this command again."
}

# The cockpit's browser test drives Debian's Chromium with Playwright (Node.js).
ensure_browser() {
  command -v chromium >/dev/null || apt_install chromium
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
  fi
}

# promtool (Debian's prometheus package) checks and unit-tests the alert rules; the server of the
# same package runs the dashboard's queries in check-metrics.sh.
ensure_promtool() {
  if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    apt_install prometheus
  fi
}

# The producer's SMTP tests start a real SMTP server: Python 3 with aiosmtpd. pip first (works for
# pyenv/venv interpreters); Debian's python3-aiosmtpd for a system python that refuses pip.
ensure_aiosmtpd() {
  command -v python3 >/dev/null || apt_install python3 python3-pip
  python3 -c 'import aiosmtpd' 2>/dev/null && return
  log "installing aiosmtpd for the SMTP test server"
  python3 -m pip install --quiet aiosmtpd >/dev/null 2>&1 || apt_install python3-aiosmtpd
  python3 -c 'import aiosmtpd' 2>/dev/null \
    || die "aiosmtpd is missing: run python3 -m pip install aiosmtpd and run this command again."
}

# schemathesis (PyPI) fuzzes the gateway's API from its OpenAPI document (scripts/check-api.sh).
ensure_schemathesis() {
  command -v python3 >/dev/null || apt_install python3 python3-pip
  command -v st >/dev/null && return
  log "installing schemathesis for the API check"
  python3 -m pip install --quiet schemathesis >/dev/null 2>&1 \
    || python3 -m pip install --quiet --user schemathesis >/dev/null 2>&1 \
    || python3 -m pip install --quiet --break-system-packages schemathesis >/dev/null 2>&1 || true
  export PATH="$PATH:$HOME/.local/bin"
  command -v st >/dev/null \
    || die "schemathesis is missing: run python3 -m pip install schemathesis and run this command again."
}

# PyYAML reads docker-compose.yml for scripts/check-compose.py.
ensure_pyyaml() {
  python3 -c 'import yaml' 2>/dev/null && return
  python3 -m pip install --quiet pyyaml >/dev/null 2>&1 || apt_install python3-yaml
  python3 -c 'import yaml' 2>/dev/null || die "PyYAML is missing: run python3 -m pip install pyyaml"
}

# For the checks that run the real binaries against a stack of their own (check-metrics.sh,
# check-api.sh, check-cloudevents.sh, check-examples.sh). start_private_stack NAME: a scratch
# database followup_test_NAME_<pid> (exported as DATABASE_URL), a private nats-server with
# JetStream on a free port and a temporary store (NATS_URL), a temporary directory $tmp, and an
# EXIT trap that stops every pid in $pids (SIGTERM, then SIGKILL), nats-server, and drops the
# database: unique names and free ports so several checkouts may run at once on one machine, and
# no check leaves anything behind.
start_private_stack() {
  : "${TEST_DATABASE_URL:?set by scripts/services.sh}"
  db=followup_test_$1_$$
  psql "$TEST_DATABASE_URL" -q -c "set client_min_messages = warning" \
    -c "drop database if exists $db with (force)" -c "create database $db"
  export DATABASE_URL="${TEST_DATABASE_URL%/*}/$db"
  tmp=$(mktemp -d)
  nats_port=$(free_port)
  nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/nats" >"$tmp/nats.log" 2>&1 &
  nats_pid=$!
  pids=()
  export NATS_URL="nats://127.0.0.1:$nats_port" RUST_LOG=warn
  trap stop_private_stack EXIT
  for _ in $(seq 1 50); do nats_listening "$nats_port" && break; sleep 0.2; done
  nats_listening "$nats_port" || { cat "$tmp/nats.log" >&2; echo "nats-server did not start" >&2; exit 1; }
}

# The SMTP test server of a private stack, on a free port (smtp_port; it answers 550 to a local
# part containing "reject"), stopped with the stack.
start_smtp_test_server() {
  smtp_port=$(free_port)
  python3 producer/tests/smtp_server.py --port "$smtp_port" --log "$tmp/smtp.jsonl" >"$tmp/smtp.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do grep -q READY "$tmp/smtp.out" 2>/dev/null && break; sleep 0.2; done
  grep -q READY "$tmp/smtp.out" || { cat "$tmp/smtp.out" >&2; echo "SMTP test server did not start" >&2; exit 1; }
}

stop_private_stack() {
  stop_pids "${pids[@]}"
  kill "$nats_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
  psql "$TEST_DATABASE_URL" -qc "drop database if exists $db with (force)" 2>/dev/null || true
}

# The example consumers (scripts/check-examples.sh): the Python one needs the same packages as
# the CloudEvents readers (examples/python/requirements.txt pins them); the TypeScript one is
# installed from its package-lock.json and compiled with its pinned tsc.
ensure_example_consumers() {
  ensure_cloudevents_readers
  if [ ! examples/typescript/node_modules/.package-lock.json -nt examples/typescript/package-lock.json ]; then
    log "installing the TypeScript example's packages (npm ci)"
    (cd examples/typescript && npm ci --quiet --no-audit --no-fund >/dev/null) \
      || die "npm ci failed in examples/typescript"
  fi
  (cd examples/typescript && ./node_modules/.bin/tsc -p .) || die "tsc failed in examples/typescript"
}

# scripts/check-cloudevents.sh reads the stream with the CloudEvents SDKs for Python and
# JavaScript. Versions pinned: the check compares what these exact SDKs read (a new SDK release
# that parses differently should be a deliberate bump, not a red CI on an unrelated change).
ensure_cloudevents_readers() {
  command -v python3 >/dev/null || apt_install python3 python3-pip
  local pkgs=(nats-py==2.16.0 cloudevents==2.2.0)
  local have="import importlib.metadata as m, sys
sys.exit(any(m.version(n) != v for n, v in (p.split('==') for p in sys.argv[1:])))"
  if ! python3 -c "$have" "${pkgs[@]}" 2>/dev/null; then
    log "installing nats-py and cloudevents (Python) for the CloudEvents check"
    python3 -m pip install --quiet "${pkgs[@]}" >/dev/null 2>&1 \
      || python3 -m pip install --quiet --user "${pkgs[@]}" >/dev/null 2>&1 \
      || python3 -m pip install --quiet --break-system-packages "${pkgs[@]}" >/dev/null 2>&1 || true
    python3 -c "$have" "${pkgs[@]}" 2>/dev/null \
      || die "run python3 -m pip install ${pkgs[*]} and run this command again."
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
  fi
  # package-lock.json pins nats and cloudevents (and what they pull in); npm ci installs exactly
  # it, again whenever the lock is newer than the installed tree.
  if [ ! scripts/cloudevents/node_modules/.package-lock.json -nt scripts/cloudevents/package-lock.json ]; then
    log "installing nats and cloudevents (npm) for the CloudEvents check"
    (cd scripts/cloudevents && npm ci --quiet --no-audit --no-fund >/dev/null) \
      || die "npm ci failed in scripts/cloudevents"
  fi
}
