#!/usr/bin/env bash
# Row-level scopes in SQL: the filtered list as an administrator and as a sales rep with
# `own` scope, over N leads, on SQLite then PostgreSQL (see bench/scope.py).
#   bash bench/scope.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
BENCH="${TRELLIS_BENCH_DIR:-../shared/bench}"
OUT="${TRELLIS_BENCH_OUT:-target/bench}"
ROOT=/tmp/trellis-peer
PORT="${TRELLIS_PORT:-8088}"
export TRELLIS_ADMIN_EMAIL=bench@example.com TRELLIS_ADMIN_PASSWORD=bench-pass-12345
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --bin trellis
mkdir -p "$OUT"
rm -rf "$OUT/harness" && cp -r "$BENCH" "$OUT/harness"

start() {
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  (cd "$ROOT" && { nohup "$OLDPWD/target/release/trellis" serve --bind "127.0.0.1:$PORT" "$@" >"$ROOT/trellis.log" 2>&1 </dev/null & echo $! >"$ROOT/trellis.pid"; })
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "trellis did not start"; cat "$ROOT/trellis.log"; exit 1
}
stop() { kill "$(cat "$ROOT/trellis.pid")" 2>/dev/null || true; sleep 1; }

for owners in 10 1; do
  echo "== SQLite, $owners owner(s)"
  start
  python3 bench/scope.py --harness "$OUT/harness" --n "$N" --owners "$owners" --out "$OUT/scope-sqlite-$owners.json"
  stop
done
PG=postgres://postgres@127.0.0.1:5432
echo "== PostgreSQL, 10 owners"
psql "$PG/postgres" -qc 'drop database if exists trellis_bench' -c 'create database trellis_bench'
start --database-url "$PG/trellis_bench"
python3 bench/scope.py --harness "$OUT/harness" --n "$N" --owners 10 --out "$OUT/scope-pg-10.json"
stop
