#!/usr/bin/env bash
# Row-level scopes in SQL: the filtered list as an administrator and as a sales rep with
# `own` scope, over N leads, on SQLite then PostgreSQL (see bench/scope.py).
#   bash bench/scope.sh [N]
N="${1:-100000}"
source "$(dirname "$0")/common.sh"

for owners in 10 1; do
  echo "== SQLite, $owners owner(s)"
  start
  python3 bench/scope.py --harness "$OUT/harness" --n "$N" --owners "$owners" --out "$OUT/scope-sqlite-$owners.json"
  stop
done
echo "== PostgreSQL, 10 owners"
fresh_pg
start --database-url "$PG/trellis_bench"
python3 bench/scope.py --harness "$OUT/harness" --n "$N" --owners 10 --out "$OUT/scope-pg-10.json"
stop
