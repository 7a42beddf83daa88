# Shared by the benchmark scripts (sourced): settings, wrk, a release build, a copy of the
# shared workload, and start/stop of a Trellis server whose PID file names the server
# itself (CPU per request is read from it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH="${TRELLIS_BENCH_DIR:-../shared/bench}"
OUT="${TRELLIS_BENCH_OUT:-target/bench}"
ROOT=/tmp/trellis-peer
PORT="${TRELLIS_PORT:-8088}"
PG=postgres://postgres@127.0.0.1:5432
export TRELLIS_ADMIN_EMAIL=bench@example.com TRELLIS_ADMIN_PASSWORD=bench-pass-12345
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --bin trellis
mkdir -p "$OUT"
# The workload writes its results beside itself: run a copy.
rm -rf "$OUT/harness" && cp -r "$BENCH" "$OUT/harness"

start() {
  # A server left over from an aborted run would answer for the new one.
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then
    echo "something already answers on port $PORT; stop it first"; exit 1
  fi
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  (cd "$ROOT" && { nohup "$OLDPWD/target/release/trellis" serve --bind "127.0.0.1:$PORT" "$@" >"$ROOT/trellis.log" 2>&1 </dev/null & echo $! >"$ROOT/trellis.pid"; })
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "trellis did not start"; cat "$ROOT/trellis.log"; exit 1
}
stop() { kill "$(cat "$ROOT/trellis.pid")" 2>/dev/null || true; sleep 1; }
# An aborted run stops its server too.
trap stop EXIT

# A fresh, empty PostgreSQL database for a run.
fresh_pg() {
  psql "$PG/postgres" -qc 'drop database if exists trellis_bench' -c 'create database trellis_bench'
}
