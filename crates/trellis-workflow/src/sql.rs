//! Small helpers for the engine's own tables.

use sea_orm::sea_query::{LockBehavior, LockType, SelectStatement};
use sea_orm::{ConnectionTrait, QueryResult};
use trellis_store::Dialect;

/// Milliseconds since 1970, the engine's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Claim rows other processes have not claimed: `FOR UPDATE SKIP LOCKED` on PostgreSQL.
/// SQLite has one writer and one process, so it needs no lock.
pub fn skip_locked(s: &mut SelectStatement, dialect: Dialect) {
    if dialect == Dialect::Postgres {
        s.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
}

/// Lock one row against other writers until the transaction ends (PostgreSQL).
pub fn for_update(s: &mut SelectStatement, dialect: Dialect) {
    if dialect == Dialect::Postgres {
        s.lock(LockType::Update);
    }
}

/// A timestamp in milliseconds as RFC 3339, for answers.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| trellis_query::value::format_datetime(&d))
        .unwrap_or_default()
}

/// An optional timestamp column as RFC 3339.
pub fn iso_opt(r: &QueryResult, col: &str) -> Result<Option<String>, sea_orm::DbErr> {
    Ok(r.try_get::<Option<i64>>("", col)?.map(iso))
}

/// Run a statement and answer the rows it changed.
pub async fn exec<C: ConnectionTrait, S: sea_orm::StatementBuilder>(
    c: &C,
    s: &S,
) -> Result<u64, sea_orm::DbErr> {
    Ok(c.execute(s).await?.rows_affected())
}
