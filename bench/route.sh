#!/usr/bin/env bash
# What the CRM's lead rules (scoring, then routing) add to a single create through the API,
# on the demo CRM, SQLite then PostgreSQL (see bench/route.py).
#   bash bench/route.sh [CREATES] [PRELOAD]
N="${1:-2000}"
PRELOAD="${2:-100000}"
source "$(dirname "$0")/common.sh"
export TRELLIS_BENCH_HARNESS="$OUT/harness"

echo "== SQLite"
start --demo
python3 bench/route.py --port "$PORT" --n "$N" --preload "$PRELOAD" --out "$OUT/route-sqlite.json"
stop
echo "== PostgreSQL"
fresh_pg
start --demo --database-url "$PG/trellis_bench"
python3 bench/route.py --port "$PORT" --n "$N" --preload "$PRELOAD" --out "$OUT/route-pg.json"
stop
