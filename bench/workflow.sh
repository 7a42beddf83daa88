#!/usr/bin/env bash
# The workflow engine under load (see bench/workflow.py): SQLite, then PostgreSQL with one
# and with two server processes on the same database.
#   bash bench/workflow.sh [EVENTS] [LATENCY] [TIMERS]
N="${1:-20000}"
M="${2:-1000}"
T="${3:-100000}"
source "$(dirname "$0")/common.sh"
export TRELLIS_BENCH_HARNESS="$OUT/harness"
PORT2=$((PORT + 1))
ROOT2=/tmp/trellis-peer2

second() {
  rm -rf "$ROOT2" && mkdir -p "$ROOT2"
  (cd "$ROOT2" && { nohup "$OLDPWD/target/release/trellis" serve --bind "127.0.0.1:$PORT2" "$@" >"$ROOT2/trellis.log" 2>&1 </dev/null & echo $! >"$ROOT2/trellis.pid"; })
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT2/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "the second trellis did not start"; cat "$ROOT2/trellis.log"; exit 1
}
stop2() { kill "$(cat "$ROOT2/trellis.pid" 2>/dev/null)" 2>/dev/null || true; sleep 1; }
trap 'stop; stop2' EXIT

echo "== SQLite, one process"
start
python3 bench/workflow.py --port "$PORT" --n "$N" --m "$M" --timers "$T" --out "$OUT/workflow-sqlite.json"
stop
echo "== PostgreSQL, one process"
fresh_pg
start --database-url "$PG/trellis_bench"
python3 bench/workflow.py --port "$PORT" --n "$N" --m "$M" --timers "$T" --out "$OUT/workflow-pg.json"
stop
echo "== PostgreSQL, two processes"
fresh_pg
start --database-url "$PG/trellis_bench"
second --database-url "$PG/trellis_bench"
python3 bench/workflow.py --port "$PORT" --n "$N" --m "$M" --timers "$T" --out "$OUT/workflow-pg2.json"
stop
stop2
