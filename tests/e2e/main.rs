//! End-to-end tests: the real `trellis` binary on a free port, spoken to over HTTP, on
//! SQLite by default and on PostgreSQL when `TRELLIS_TEST_DATABASE=postgres`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod sinks;

mod access;
mod bundles;
mod cli;
mod dedupe;
mod flows;
mod forms;
mod formulas;
mod imports;
mod ops;
mod people;
mod records;
mod reports;
mod routing;
mod rules;
mod stages;
mod workflows;
