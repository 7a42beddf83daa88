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

# Lead scoring: the CRM's lead_score rule in rhai against native Rust, records/s.
bench-rules n="1000000":
    cargo bench -p trellis-rules --bench score -- {{n}}

# Latency a single create gains from the CRM's lead rules: scoring, then routing.
bench-route n="2000" preload="100000":
    bash bench/route.sh {{n}} {{preload}}

# The workflow engine: events/s through three steps, commit-to-done latency, 100k timers.
bench-workflow events="20000" latency="1000" timers="100000":
    bash bench/workflow.sh {{events}} {{latency}} {{timers}}

# The filtered list as an administrator and as a sales rep with `own` scope.
bench-scope n="100000":
    bash bench/scope.sh {{n}}

# Side-by-side benchmark with PocketBase (../shared/bench): SQLite, then PostgreSQL.
bench n="100000":
    bash bench/run.sh {{n}}

# Reports over 1M orders (revenue by month and region, funnel, RFM): the API against hand-written SQL, SQLite then PostgreSQL. mode=workload: the shared workload's aggregate phase; mode=all: both.
bench-reports mode="reports" orders="1000000" customers="100000" leads="100000":
    bash bench/reports.sh {{mode}} {{orders}} {{customers}} {{leads}}

# Import of N generated leads (conversion, validation, rules, duplicate rules) with the CLI: rows/s and peak memory, SQLite then PostgreSQL.
bench-import n="1000000":
    bash bench/import.sh {{n}}
