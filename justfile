# Everyday recipes. `just --list` shows them.

# Run Trellis with the demo CRM on http://127.0.0.1:8080 (API docs at /docs/).
serve:
    cargo run --release -- serve --demo

# The whole test suite, on SQLite and PostgreSQL.
test:
    bash tests/run.sh

# End-to-end tests only, on SQLite (db=postgres for PostgreSQL).
e2e db="sqlite":
    TRELLIS_TEST_DATABASE={{db}} cargo test --test e2e

# Format the code.
fmt:
    cargo fmt --all

# Lints, as CI would want them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Side-by-side benchmark with PocketBase (../shared/bench): SQLite, then PostgreSQL.
bench n="100000":
    command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
    cargo build --release --bin trellis
    python3 ../shared/bench/workload.py --system pocketbase --manage --n {{n}} --tag pb
    python3 ../shared/bench/workload.py --system trellis --manage --n {{n}} --tag trellis-sqlite
    psql postgres://postgres@127.0.0.1:5432/postgres -qc 'drop database if exists trellis_bench' -c 'create database trellis_bench'
    TRELLIS_DATABASE_URL=postgres://postgres@127.0.0.1:5432/trellis_bench python3 ../shared/bench/workload.py --system trellis --manage --n {{n}} --tag trellis-pg
    python3 ../shared/bench/workload.py --table ../shared/bench/results/pocketbase-pb.json ../shared/bench/results/trellis-trellis-sqlite.json ../shared/bench/results/trellis-trellis-pg.json
