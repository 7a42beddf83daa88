#!/usr/bin/env bash
# Import N generated leads into the CRM's lead form with `trellis import` (conversion,
# validation, normalization, the scoring and grading rules, duplicate rules), on SQLite
# and on PostgreSQL: rows per second and the process's peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
OUT="${TRELLIS_BENCH_OUT:-target/bench}/import"
PG=postgres://postgres@127.0.0.1:5432
mkdir -p "$OUT"
cargo build --release --bin trellis
BIN="$PWD/target/release/trellis"
[ -f "$OUT/leads-$N.csv" ] || python3 bench/import_data.py "$N" "$OUT/leads-$N.csv"
echo "file: $(du -h "$OUT/leads-$N.csv" | cut -f1), $N rows"
for db in ${TRELLIS_BENCH_DBS:-sqlite postgres}; do
  rm -rf "$OUT/run" && mkdir -p "$OUT/run"
  if [ "$db" = sqlite ]; then
    URL="sqlite:$OUT/run/trellis.db"
  else
    psql "$PG/postgres" -qc 'drop database if exists trellis_bench_import' -c 'create database trellis_bench_import'
    URL="$PG/trellis_bench_import"
  fi
  "$BIN" --database-url "$URL" bundle install examples/crm >/dev/null
  # An owner given by the file: the routing rule keeps it (routing is measured apart).
  "$BIN" --database-url "$URL" user create --email owner@example.com --password bench-pass-12345 >/dev/null
  /usr/bin/time -f "%e %M" -o "$OUT/run/time" "$BIN" --database-url "$URL" import lead "$OUT/leads-$N.csv" \
    --on-error skip --batch "${BATCH:-2000}" --tz Asia/Shanghai --constants '{"owner": "owner@example.com"}' \
    --files-dir "$OUT/run/files" --json >"$OUT/run/job.json"
  read -r secs kib <"$OUT/run/time"
  python3 - "$OUT/run/job.json" "$secs" "$kib" "$db" <<'PY'
import json, sys
job, secs, kib, db = json.load(open(sys.argv[1])), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
p = job["progress"]
print(f"{db}: {p['rows']} rows in {secs:.1f} s = {p['rows'] / secs:,.0f} rows/s; peak RSS {kib / 1024:.0f} MiB; "
      f"created {p['created']}, flagged {p['flagged']}, skipped {p['skipped']}, rejected {p['rejected']}")
PY
  if [ "$db" = sqlite ] && command -v sqlite3 >/dev/null; then
    # The floor: SQLite alone inserting the imported rows (in id order, one transaction)
    # into an empty copy of the table with the same indexes, then the audit entries and
    # duplicate keys. No Trellis code runs: this is what the schema costs.
    DB="$OUT/run/trellis.db" FLOOR="$OUT/run/floor.db"
    { sqlite3 "$DB" ".schema rec_lead" ".schema trellis_audit" ".schema trellis_match_keys"; } | sqlite3 "$FLOOR"
    n_idx=$(sqlite3 "$DB" "select count(*) from sqlite_master where type = 'index' and tbl_name = 'rec_lead'")
    rows=$(sqlite3 "$DB" "select count(*) from rec_lead")
    t=$( { echo "pragma journal_mode=wal; pragma synchronous=normal; pragma cache_size=-16000;"
           echo "attach '$DB' as src;"; echo ".timer on"
           echo "begin; insert into rec_lead select * from src.rec_lead order by id; commit;"
           echo "begin; insert into trellis_audit select * from src.trellis_audit order by id; commit;"
           echo "begin; insert into trellis_match_keys select * from src.trellis_match_keys order by rowid; commit;"
         } | sqlite3 "$FLOOR" | awk '/^Run Time/ {s += $4} END {print s}')
    python3 -c "import sys; n, t, i = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]; print(f'sqlite floor (the sqlite3 shell alone: {n} rows into the lead table and its {i} indexes (the primary key included), their audit entries and keys): {t:.1f} s = {n / t:,.0f} rows/s')" "$rows" "$t" "$n_idx"
  fi
done
