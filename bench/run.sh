#!/usr/bin/env bash
# Side-by-side benchmark with the shared workload (../shared/bench): PocketBase, then
# Trellis on SQLite, then Trellis on PostgreSQL, back to back; prints the table.
#   bash bench/run.sh [N]
# Trellis is started here rather than through the workload's --manage, so that the PID
# file names the server itself (CPU per request is read from it).
N="${1:-100000}"
source "$(dirname "$0")/common.sh"

python3 "$OUT/harness/workload.py" --system pocketbase --manage --n "$N" --tag pb
start
python3 "$OUT/harness/workload.py" --system trellis --n "$N" --tag sqlite
stop
fresh_pg
start --database-url "$PG/trellis_bench"
touch "$ROOT/trellis.db"   # the workload reads a SQLite size; there is none on PostgreSQL
python3 "$OUT/harness/workload.py" --system trellis --n "$N" --tag pg
echo "PostgreSQL database size: $(psql "$PG/postgres" -Atc "select pg_size_pretty(pg_database_size('trellis_bench'))")"
stop
python3 "$OUT/harness/workload.py" --table "$OUT"/harness/results/pocketbase-pb.json "$OUT"/harness/results/trellis-sqlite.json "$OUT"/harness/results/trellis-pg.json
