#!/usr/bin/env bash
# The report engine against hand-written SQL (see bench/reports.py): revenue by month and
# region, the order funnel and RFM over ORDERS orders and CUSTOMERS customers, on SQLite then
# PostgreSQL, each on a fresh database; and the shared workload's aggregate phase.
#   bash bench/reports.sh [reports|workload|all] [ORDERS] [CUSTOMERS] [LEADS]
#     reports   (default) the three reports, API against hand SQL, median ms
#     workload  ../shared/bench/workload.py --phases load,agg over LEADS leads (default
#               100000), on SQLite then PostgreSQL: the aggregate phase's figures
#     all       both
# RUNS (default 5) timed runs per query; KEEP=1 keeps the PostgreSQL database afterwards.
MODE="${1:-reports}"
ORDERS="${2:-1000000}"
CUSTOMERS="${3:-100000}"
LEADS="${4:-100000}"
RUNS="${RUNS:-5}"
case "$MODE" in reports|workload|all) ;; *) echo "usage: bash bench/reports.sh [reports|workload|all] [ORDERS] [CUSTOMERS] [LEADS]"; exit 2;; esac
source "$(dirname "$0")/common.sh"
export TRELLIS_BENCH_HARNESS="$OUT/harness"
# This benchmark's own scratch database, fresh for each configuration.
DB=trellis_reports_bench
fresh_db() { psql "$PG/postgres" -qc "drop database if exists $DB" -c "create database $DB"; }
drop_db() { [ -n "${KEEP:-}" ] || psql "$PG/postgres" -qc "drop database if exists $DB"; }
trap 'stop; drop_db' EXIT

if [ "$MODE" != workload ]; then
  echo "== reports, SQLite"
  start
  python3 bench/reports.py --port "$PORT" --db "$ROOT/trellis.db" --orders "$ORDERS" \
    --customers "$CUSTOMERS" --runs "$RUNS" --out "$OUT/reports-sqlite.json"
  stop
  echo "== reports, PostgreSQL"
  fresh_db
  start --database-url "$PG/$DB"
  python3 bench/reports.py --port "$PORT" --db "$PG/$DB" --orders "$ORDERS" \
    --customers "$CUSTOMERS" --runs "$RUNS" --out "$OUT/reports-pg.json"
  stop
fi

if [ "$MODE" != reports ]; then
  # The workload loads its leads through the API, then runs its `lead_by_source` report
  # under wrk (agg). Its results land beside the copy, in $OUT/harness/results.
  agg() {
    python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for ph in r["phases"]:
    if ph["phase"] == "load":
        print(f"   load: {ph['records']:,} leads, {ph['throughput']:,} records/s")
    if ph["phase"] != "agg":
        continue
    if ph.get("unsupported"):
        print("   agg: unsupported (POST /api/v1/reports refused: no report engine in this build)")
    else:
        print(f"   agg: {ph['throughput']:,} req/s, p50 {ph['p50_ms']} ms, p99 {ph['p99_ms']} ms, "
              f"server CPU {ph.get('server_cpu_ms_per_req')} ms/req, errors {ph.get('errors')}, check: {ph['check']}")
EOF
  }
  echo "== workload aggregate phase, SQLite"
  start
  python3 "$OUT/harness/workload.py" --system trellis --n "$LEADS" --phases load,agg --tag reports-sqlite >"$OUT/workload-reports-sqlite.log"
  agg "$OUT/harness/results/trellis-reports-sqlite.json"
  stop
  echo "== workload aggregate phase, PostgreSQL"
  fresh_db
  start --database-url "$PG/$DB"
  touch "$ROOT/trellis.db"   # the workload reads a SQLite size; there is none on PostgreSQL
  python3 "$OUT/harness/workload.py" --system trellis --n "$LEADS" --phases load,agg --tag reports-pg >"$OUT/workload-reports-pg.log"
  agg "$OUT/harness/results/trellis-reports-pg.json"
  stop
  python3 "$OUT/harness/workload.py" --table "$OUT"/harness/results/trellis-reports-{sqlite,pg}.json
fi
