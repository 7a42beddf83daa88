#!/usr/bin/env bash
# Side-by-side benchmark with the shared workload (../shared/bench): PocketBase, then
# Trellis on SQLite, then Trellis on PostgreSQL, back to back; prints the table.
#   bash bench/run.sh [N]
# Trellis is started here rather than through the workload's --manage, so that the PID
# file names the server itself (CPU per request is read from it).
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
# The workload writes its results beside itself: run a copy.
rm -rf "$OUT/harness" && cp -r "$BENCH" "$OUT/harness"

start() {
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  (cd "$ROOT" && { nohup "$OLDPWD/target/release/trellis" serve --bind "127.0.0.1:$PORT" "$@" >"$ROOT/trellis.log" 2>&1 </dev/null & echo $! >"$ROOT/trellis.pid"; })
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "trellis did not start"; cat "$ROOT/trellis.log"; exit 1
}
stop() { kill "$(cat "$ROOT/trellis.pid")" 2>/dev/null || true; sleep 1; }

python3 "$OUT/harness/workload.py" --system pocketbase --manage --n "$N" --tag pb
start
python3 "$OUT/harness/workload.py" --system trellis --n "$N" --tag sqlite
stop
PG=postgres://postgres@127.0.0.1:5432
psql "$PG/postgres" -qc 'drop database if exists trellis_bench' -c 'create database trellis_bench'
start --database-url "$PG/trellis_bench"
touch "$ROOT/trellis.db"   # the workload reads a SQLite size; there is none on PostgreSQL
python3 "$OUT/harness/workload.py" --system trellis --n "$N" --tag pg
echo "PostgreSQL database size: $(psql "$PG/postgres" -Atc "select pg_size_pretty(pg_database_size('trellis_bench'))")"
stop
python3 "$OUT/harness/workload.py" --table "$OUT"/harness/results/pocketbase-pb.json "$OUT"/harness/results/trellis-sqlite.json "$OUT"/harness/results/trellis-pg.json
