//! The admin audit: logins, failed logins, role and permission changes, tokens, ownership
//! transfers. Record changes have their own history per record (`records::history`).

use chrono::Utc;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use serde::Serialize;
use serde_json::Value;
use trellis_query::value::format_datetime;

use crate::db::Db;
use crate::error::StoreError;
use crate::migrate::ADMIN_AUDIT;

/// Most entries one query answers.
pub const MAX_LIMIT: u64 = 1000;

/// Who makes an administrative change, and from where.
#[derive(Debug, Clone, Copy, Default)]
pub struct By<'a> {
    /// The acting user.
    pub actor: Option<&'a str>,
    /// The client address.
    pub ip: Option<&'a str>,
}

/// One event to record.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// Who did it (None: anonymous or the system).
    pub actor: Option<&'a str>,
    /// What, e.g. `login`, `login_failed`, `role.update`, `token.create`, `reassign`.
    pub action: &'a str,
    /// What it was done to: a user id, role name, token id, form.
    pub target: Option<&'a str>,
    /// The client address, when it came over HTTP.
    pub ip: Option<&'a str>,
    /// Everything else worth keeping.
    pub detail: Value,
}

/// Append an event, inside the caller's transaction when there is one.
pub async fn record<C: ConnectionTrait>(c: &C, e: Event<'_>) -> Result<(), StoreError> {
    let mut ins = Query::insert();
    ins.into_table(Alias::new(ADMIN_AUDIT))
        .columns(["at", "actor", "action", "target", "ip", "detail"].map(Alias::new))
        .values([
            Expr::val(format_datetime(&Utc::now())),
            Expr::val(e.actor.map(str::to_owned)),
            Expr::val(e.action),
            Expr::val(e.target.map(str::to_owned)),
            Expr::val(e.ip.map(str::to_owned)),
            Expr::val(e.detail.to_string()),
        ])
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    c.execute(&ins).await?;
    Ok(())
}

/// What to look for; every part optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Exact action, or a prefix ending in `.` (`role.`).
    pub action: Option<String>,
    /// Who.
    pub actor: Option<String>,
    /// What it was done to.
    pub target: Option<String>,
    /// At or after (RFC 3339).
    pub since: Option<String>,
    /// Before (RFC 3339).
    pub until: Option<String>,
    /// Only entries older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Page size.
    pub limit: u64,
}

/// One recorded event.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// Entry id, increasing.
    pub id: i64,
    /// When.
    pub at: String,
    /// Who.
    pub actor: Option<String>,
    /// What.
    pub action: String,
    /// To what.
    pub target: Option<String>,
    /// From where.
    pub ip: Option<String>,
    /// Details.
    pub detail: Value,
}

/// Newest first.
pub async fn query(db: &Db, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    let mut s = Query::select();
    s.columns(["id", "at", "actor", "action", "target", "ip", "detail"].map(Alias::new))
        .from(Alias::new(ADMIN_AUDIT));
    if let Some(a) = &q.action {
        if let Some(prefix) = a.strip_suffix('.') {
            // Prefixes are names like `role`: no LIKE wildcards can sneak in.
            s.and_where(
                Expr::col(Alias::new("action"))
                    .gte(format!("{prefix}."))
                    .and(Expr::col(Alias::new("action")).lt(format!("{prefix}/"))),
            );
        } else {
            s.and_where(Expr::col(Alias::new("action")).eq(a.as_str()));
        }
    }
    if let Some(a) = &q.actor {
        s.and_where(Expr::col(Alias::new("actor")).eq(a.as_str()));
    }
    if let Some(t) = &q.target {
        s.and_where(Expr::col(Alias::new("target")).eq(t.as_str()));
    }
    if let Some(t) = &q.since {
        s.and_where(Expr::col(Alias::new("at")).gte(t.as_str()));
    }
    if let Some(t) = &q.until {
        s.and_where(Expr::col(Alias::new("at")).lt(t.as_str()));
    }
    if let Some(b) = q.before {
        s.and_where(Expr::col(Alias::new("id")).lt(b));
    }
    s.order_by(Alias::new("id"), Order::Desc)
        .limit(q.limit.clamp(1, MAX_LIMIT));
    let rows = db.reader.query_all(&s).await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                id: r.try_get_by_index(0)?,
                at: r.try_get_by_index(1)?,
                actor: r.try_get_by_index(2)?,
                action: r.try_get_by_index(3)?,
                target: r.try_get_by_index(4)?,
                ip: r.try_get_by_index(5)?,
                detail: serde_json::from_str(&r.try_get_by_index::<String>(6)?)?,
            })
        })
        .collect()
}
