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
# Its own server directory (start wipes it), so a run never touches another bench's; the
# shared workload's adapter finds the server through these.
ROOT=/tmp/trellis-reports
export TRELLIS_ROOT="$ROOT" TRELLIS_PORT="$PORT"
# This benchmark's own scratch database, fresh for each configuration.
DB=trellis_reports_bench
fresh_db() { psql "$PG/postgres" -qc "drop database if exists $DB" -c "create database $DB"; }
drop_db() { [ -n "${KEEP:-}" ] || psql "$PG/postgres" -qc "drop database if exists $DB"; }
trap 'stop; drop_db' EXIT

# The hand SQL runs on the SQLite the server is built with: libsqlite3-sys's bundled
# amalgamation (3.5x, its JSON much faster than Debian's 3.40) with the same flags, as a
# libsqlite3.so.0 that Python's sqlite3 loads through LD_LIBRARY_PATH.
sqlite_lib() {
  local ver src
  ver=$(awk '$0 == "name = \"libsqlite3-sys\"" {getline; gsub(/"/, "", $3); print $3}' Cargo.lock)
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"libsqlite3-sys-$ver"/sqlite3 2>/dev/null | head -1)
  [ -n "$src" ] || { echo "libsqlite3-sys $ver not found in the cargo registry"; exit 1; }
  SQLITE_VERSION=$(sed -n 's/^#define SQLITE_VERSION *"\(.*\)"/\1/p' "$src/sqlite3.h")
  SQLITE_LIB="$OUT/sqlite-$SQLITE_VERSION"
  if [ ! -f "$SQLITE_LIB/libsqlite3.so.0" ]; then
    echo "building SQLite $SQLITE_VERSION (libsqlite3-sys $ver) for the hand SQL ..."
    mkdir -p "$SQLITE_LIB"
    gcc -O3 -fPIC -shared -Wl,-soname,libsqlite3.so.0 \
      -DSQLITE_CORE -DSQLITE_DEFAULT_FOREIGN_KEYS=1 -DSQLITE_ENABLE_API_ARMOR \
      -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_ENABLE_FTS3 \
      -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_JSON1 \
      -DSQLITE_ENABLE_LOAD_EXTENSION=1 -DSQLITE_ENABLE_MEMORY_MANAGEMENT -DSQLITE_ENABLE_RTREE \
      -DSQLITE_ENABLE_STAT4 -DSQLITE_SOUNDEX -DSQLITE_THREADSAFE=1 -DSQLITE_USE_URI \
      -DHAVE_USLEEP=1 -DHAVE_ISNAN -D_POSIX_THREAD_SAFE_FUNCTIONS -DHAVE_LOCALTIME_R \
      -DSQLITE_ENABLE_UNLOCK_NOTIFY \
      "$src/sqlite3.c" -o "$SQLITE_LIB/libsqlite3.so.0.tmp" -lpthread -lm -ldl
    mv "$SQLITE_LIB/libsqlite3.so.0.tmp" "$SQLITE_LIB/libsqlite3.so.0"
  fi
}

if [ "$MODE" != workload ]; then
  sqlite_lib
  echo "== reports, SQLite"
  start
  LD_LIBRARY_PATH="$SQLITE_LIB" python3 bench/reports.py --port "$PORT" --db "$ROOT/trellis.db" \
    --orders "$ORDERS" --customers "$CUSTOMERS" --runs "$RUNS" --sqlite-version "$SQLITE_VERSION" \
    --out "$OUT/reports-sqlite.json"
  stop
  echo "== reports, PostgreSQL"
  fresh_db
  start --database-url "$PG/$DB"
  python3 bench/reports.py --port "$PORT" --db "$PG/$DB" --orders "$ORDERS" \
    --customers "$CUSTOMERS" --runs "$RUNS" --out "$OUT/reports-pg.json"
  stop
  echo
  python3 bench/reports.py --table "$OUT/reports-sqlite.json" "$OUT/reports-pg.json"
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
  python3 "$OUT/harness/workload.py" --system trellis --n "$LEADS" --phases load,agg --tag reports-sqlite \
    >"$OUT/workload-reports-sqlite.log" 2>&1 || { tail -20 "$OUT/workload-reports-sqlite.log"; exit 1; }
  agg "$OUT/harness/results/trellis-reports-sqlite.json"
  stop
  echo "== workload aggregate phase, PostgreSQL"
  fresh_db
  start --database-url "$PG/$DB"
  touch "$ROOT/trellis.db"   # the workload reads a SQLite size; there is none on PostgreSQL
  python3 "$OUT/harness/workload.py" --system trellis --n "$LEADS" --phases load,agg --tag reports-pg \
    >"$OUT/workload-reports-pg.log" 2>&1 || { tail -20 "$OUT/workload-reports-pg.log"; exit 1; }
  agg "$OUT/harness/results/trellis-reports-pg.json"
  stop
  python3 "$OUT/harness/workload.py" --table "$OUT"/harness/results/trellis-reports-{sqlite,pg}.json
fi
