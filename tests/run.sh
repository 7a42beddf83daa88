#!/usr/bin/env bash
# The whole test suite: unit and end-to-end tests on SQLite, then the end-to-end tests
# again on PostgreSQL (127.0.0.1:5432, a fresh database per test server).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is needed: install Rust from https://rustup.rs" >&2
  exit 1
fi

PG_ADMIN="${TRELLIS_TEST_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
export TRELLIS_TEST_PG_ADMIN="$PG_ADMIN"

# PostgreSQL: start the local cluster when it is installed but not running.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    sleep 2
  fi
fi
# Drop databases left behind by earlier runs.
if command -v psql >/dev/null 2>&1; then
  psql "$PG_ADMIN" -Atqc "select datname from pg_database where datname like 'trellis_t_%'" 2>/dev/null |
    while read -r db; do psql "$PG_ADMIN" -qc "drop database if exists \"$db\"" >/dev/null 2>&1 || true; done
fi

echo "== unit and end-to-end tests on SQLite"
cargo test --workspace --all-targets

echo "== end-to-end tests on PostgreSQL"
TRELLIS_TEST_DATABASE=postgres cargo test --test e2e
