//! Reports: a definition compiled to SQL (through sea-query, for SQLite and PostgreSQL)
//! with the caller's row scopes and hidden fields applied, run in the database, and shaped
//! into `{"columns", "rows"}`: pivots, filled time series, period comparisons, drill-down
//! filters, CSV and XLSX.
//!
//! Every kind is one statement: grouped reports `GROUP BY` the dimensions, funnels take the
//! highest stage each record reached from the audit history, RFM scores customers with
//! window functions. What is left to Rust is bounded by the group limit: pivoting, filling
//! gaps, conversion rates between stages, the change between periods.

pub mod export;
mod funnel;
mod grouped;
mod rfm;
pub mod time;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, SelectStatement};
use sea_orm::{ConnectionTrait, QueryResult, TransactionTrait};
use serde::Serialize;
use serde_json::{Map, Value, json};
use trellis_access::Permissions;
use trellis_meta::MetaError;
use trellis_meta::form::Label;
use trellis_meta::report::{Report, ReportKind, bind_params, bind_run_params};
use trellis_meta::role::Action;
use trellis_query::{Catalog, Dialect, Filter, FilterError, ValueKind};
use trellis_store::access::{self, Visible};
use trellis_store::db::Db;
use trellis_store::forms::Snapshot;
use trellis_store::{Store, StoreError};

/// Longest a report query may run on PostgreSQL.
const STATEMENT_TIMEOUT_MS: u32 = 30_000;

/// What a run supplies besides the definition.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// A filter ANDed with the report's own (the caller's, checked against what they see).
    pub filter: Option<Value>,
    /// Parameter values by name.
    pub params: Map<String, Value>,
    /// Return, for each row, the filter that lists its records.
    pub drill: bool,
}

/// One result column.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    /// Name (a dimension, a measure, or `value.measure` in a pivot).
    pub name: String,
    /// `text`, `integer`, `number`, `boolean`, `date`, `datetime`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Display name per language.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// What else narrows this column's cells (a measure's filter, a pivot value, a
    /// period): AND it with the row's drill filter to list a cell's records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
}

/// A report's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    /// The form the drill-down filters apply to.
    pub form: String,
    /// Columns: dimensions first, then measures in definition order.
    pub columns: Vec<Column>,
    /// One row per group.
    pub rows: Vec<Vec<Value>>,
    /// Per row, the filter that lists its records (`null` where no filter can, as for a
    /// funnel stage reached in the past).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<Vec<Value>>,
    /// More groups exist than the report's limit let through.
    pub truncated: bool,
}

/// `$and` of filters, flattened when there is one.
pub(crate) fn and(mut parts: Vec<Value>) -> Value {
    parts.retain(|p| p.as_object().is_none_or(|o| !o.is_empty()));
    match parts.len() {
        0 => json!({}),
        1 => parts.pop().unwrap_or_else(|| json!({})),
        _ => json!({"$and": parts}),
    }
}

pub(crate) fn invalid(
    path: impl Into<String>,
    code: &'static str,
    msg: impl Into<String>,
) -> StoreError {
    StoreError::Definition(vec![MetaError::new(path, code, msg)])
}

fn prefixed(mut e: FilterError, prefix: &str) -> FilterError {
    e.path = match e.path.as_str() {
        "" => prefix.to_owned(),
        p if p.starts_with('[') => format!("{prefix}{p}"),
        p => format!("{prefix}.{p}"),
    };
    e
}

/// The kind of a SQL column as the result names it.
pub(crate) fn kind_name(k: ValueKind) -> &'static str {
    match k {
        ValueKind::Text => "text",
        ValueKind::Integer => "integer",
        ValueKind::Float => "number",
        ValueKind::Boolean => "boolean",
        ValueKind::Date => "date",
        ValueKind::DateTime => "datetime",
        ValueKind::TextArray | ValueKind::Json => "json",
    }
}

/// A column of a table: `"table"."column"`.
pub(crate) fn col(table: &str, column: &str) -> Expr {
    Expr::col((Alias::new(table), Alias::new(column)))
}

/// `CAST(e AS DOUBLE PRECISION)`: integer division would truncate, and PostgreSQL's
/// numeric results need a type the driver reads.
pub(crate) fn double(e: Expr) -> Expr {
    sea_orm::sea_query::Func::cast_as(e, Alias::new("DOUBLE PRECISION")).into()
}

/// Custom SQL with `$1`, `$2`, … standing for `exprs` in order of appearance (each once):
/// sea-query takes `$N` on PostgreSQL and `?` on SQLite.
pub(crate) fn cx<I: IntoIterator<Item = Expr>>(d: Dialect, template: &str, exprs: I) -> Expr {
    let t = match d {
        Dialect::Postgres => template.to_owned(),
        Dialect::Sqlite => {
            let mut out = String::with_capacity(template.len());
            let mut it = template.chars().peekable();
            while let Some(c) = it.next() {
                if c == '$' && it.peek().is_some_and(char::is_ascii_digit) {
                    while it.peek().is_some_and(char::is_ascii_digit) {
                        it.next();
                    }
                    out.push('?');
                } else {
                    out.push(c);
                }
            }
            out
        }
    };
    Expr::cust_with_exprs(t, exprs)
}

/// What a run needs: the definition, the caller, the forms, bound parameters.
pub(crate) struct Ctx<'a> {
    pub report: &'a Report,
    pub snap: &'a Snapshot,
    pub perms: &'a Permissions,
    pub dialect: Dialect,
    pub now: DateTime<Utc>,
    /// Parameter values, defaults applied, `$me` resolved.
    pub params: Map<String, Value>,
    pub input: &'a Input,
}

/// A field reached from the report's form, perhaps through relations.
pub(crate) struct Resolved {
    pub expr: Expr,
    pub kind: ValueKind,
}

/// Tables joined for relation paths, each under the path that reached it.
#[derive(Default)]
pub(crate) struct Joins {
    /// (path prefix, table, ON condition).
    pub list: Vec<(String, String, Condition)>,
}

impl Ctx<'_> {
    fn seen(&self) -> Visible<'_> {
        Visible {
            snap: self.snap,
            perms: self.perms,
        }
    }

    /// The base table, with the caller's row scope on it (403 when they may not read the
    /// form at all).
    pub fn base(&self, form: &str) -> Result<(String, Option<Filter>), StoreError> {
        let entry = self.snap.get(form)?;
        let scope = access::rows(self.perms, self.snap, form, Action::Read)?;
        Ok((entry.table.clone(), scope))
    }

    /// A filter from the definition (parameters bound), checked against what the caller
    /// sees: a field they may not see makes the report forbidden to them, not wrong.
    pub fn definition_filter(
        &self,
        form: &str,
        f: Option<&Value>,
        at: &str,
    ) -> Result<Filter, StoreError> {
        let Some(bound) = f.and_then(|f| bind_params(f, &self.params)) else {
            return Ok(Filter::all());
        };
        Filter::parse(form, &bound, &self.seen(), self.now).map_err(|e| {
            let e = prefixed(e, at);
            if e.code == "unknown_field" || e.code == "unknown_form" {
                StoreError::forbidden(
                    e.path,
                    "field_hidden",
                    format!("this report reads something you may not see: {}", e.message),
                )
            } else {
                StoreError::Filter(e)
            }
        })
    }

    /// The report's filter, the run's filter and the caller's scope, as one filter.
    pub fn where_filter(&self, form: &str, scope: Option<Filter>) -> Result<Filter, StoreError> {
        let mut f = self.definition_filter(form, self.report.filter.as_ref(), "filter")?;
        if let Some(extra) = &self.input.filter {
            let g = Filter::parse(form, extra, &self.seen(), self.now)
                .map_err(|e| StoreError::Filter(prefixed(e, "filter")))?;
            f = f.and(g);
        }
        if let Some(s) = scope {
            f = f.and(s);
        }
        Ok(f)
    }

    /// The drill-down base: the report's and the run's filters as the record API takes
    /// them (the scope is the record API's own business).
    pub fn drill_base(&self) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(f) = self
            .report
            .filter
            .as_ref()
            .and_then(|f| bind_params(f, &self.params))
        {
            out.push(f);
        }
        if let Some(f) = &self.input.filter {
            out.push(f.clone());
        }
        out
    }

    /// Resolve `path` from `form` (whose table is `base`), joining related tables; hidden
    /// fields and unreadable forms are refused with 403 at `at`.
    pub fn resolve(
        &self,
        joins: &mut Joins,
        form: &str,
        base: &str,
        path: &str,
        at: &str,
    ) -> Result<Resolved, StoreError> {
        let segs: Vec<&str> = path.split('.').collect();
        let (mut cur_form, mut cur_table) = (form.to_owned(), base.to_owned());
        for (i, seg) in segs.iter().enumerate() {
            if !access::visible(self.perms, &cur_form, seg) {
                return Err(StoreError::forbidden(
                    at,
                    "field_hidden",
                    format!("you may not see the field {seg} of {cur_form}"),
                ));
            }
            let info = self.snap.field(&cur_form, seg).ok_or_else(|| {
                invalid(
                    at,
                    "unknown_field",
                    format!("{cur_form} has no field {seg}"),
                )
            })?;
            if i + 1 == segs.len() {
                return Ok(Resolved {
                    expr: col(&cur_table, &info.column),
                    kind: info.kind,
                });
            }
            let target = info
                .target
                .clone()
                .ok_or_else(|| invalid(at, "not_a_relation", format!("{seg} is not a relation")))?;
            if !self.perms.may(&target, Action::Read) {
                return Err(StoreError::forbidden(
                    at,
                    "not_permitted",
                    format!("you may not read {target} records"),
                ));
            }
            let prefix = segs[..=i].join(".");
            let table = self.snap.get(&target)?.table.clone();
            match joins.list.iter().find(|(p, _, _)| *p == prefix) {
                Some(_) => {}
                None => {
                    if table == base || joins.list.iter().any(|(_, t, _)| *t == table) {
                        return Err(invalid(
                            at,
                            "not_supported",
                            format!(
                                "{target} is reached by two paths (or is the report's own form); a report can join each form once"
                            ),
                        ));
                    }
                    let mut on =
                        Condition::all().add(col(&table, "id").eq(col(&cur_table, &info.column)));
                    // Rows of the target the caller may not read join as nothing, so
                    // their values group under null.
                    let scope = access::rows(self.perms, self.snap, &target, Action::Read)?;
                    if let Some(s) = scope {
                        on = on.add(s.to_condition(self.dialect));
                    }
                    joins.list.push((prefix, table.clone(), on));
                }
            }
            cur_form = target;
            cur_table = table;
        }
        Err(invalid(at, "unknown_field", "an empty path"))
    }

    /// A date or instant given as `YYYY-MM-DD`, RFC 3339 or `$today-1m`, read as a local
    /// date in `tz`.
    pub fn day(
        &self,
        v: Option<&Value>,
        tz: chrono_tz::Tz,
        at: &str,
    ) -> Result<NaiveDate, StoreError> {
        let v = match v {
            Some(v) => bind_params(v, &self.params),
            None => None,
        };
        let Some(v) = v else {
            return Ok(self.now.with_timezone(&tz).date_naive());
        };
        let s = v.as_str().unwrap_or_default();
        if let Some(t) = trellis_query::filter::relative_date(s, self.now) {
            return Ok(t.with_timezone(&tz).date_naive());
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(d);
        }
        trellis_query::value::parse_datetime(s)
            .map(|t| t.with_timezone(&tz).date_naive())
            .ok_or_else(|| invalid(at, "invalid_date", format!("{v} is not a date")))
    }
}

/// Add the joins to a statement.
pub(crate) fn apply_joins(s: &mut SelectStatement, joins: &Joins) {
    for (_, table, on) in &joins.list {
        s.left_join(Alias::new(table), on.clone());
    }
}

/// Report queries running at once in this process: one per core, so scans do not fight
/// over the CPU (32 concurrent scans on 2 cores cost twice the CPU per scan).
fn permits() -> &'static tokio::sync::Semaphore {
    static CELL: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(n.clamp(1, 16))
    })
}

fn too_slow() -> StoreError {
    invalid(
        "",
        "too_slow",
        format!(
            "the report ran longer than {} s; narrow it with a filter",
            STATEMENT_TIMEOUT_MS / 1000
        ),
    )
}

/// A reader connection with a progress handler that interrupts its statement past the
/// deadline or once the run is dropped (the client went away). Dropped mid-query, it
/// interrupts the statement and removes the handler before the connection goes back to
/// the pool, so no later query on it is stopped.
struct Armed {
    conn: Option<sea_orm::sqlx::pool::PoolConnection<sea_orm::sqlx::Sqlite>>,
    abandoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            self.abandoned
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                if let Ok(mut h) = conn.lock_handle().await {
                    h.remove_progress_handler();
                }
            });
        }
    }
}

/// Run rows of a statement on the readers, at most [`STATEMENT_TIMEOUT_MS`] long: on
/// PostgreSQL by `statement_timeout`, on SQLite by a progress handler that interrupts it.
pub(crate) async fn fetch(db: &Db, s: &SelectStatement) -> Result<Vec<QueryResult>, StoreError> {
    fetch_within(db, s, STATEMENT_TIMEOUT_MS).await
}

async fn fetch_within(
    db: &Db,
    s: &SelectStatement,
    timeout_ms: u32,
) -> Result<Vec<QueryResult>, StoreError> {
    let _permit = permits()
        .acquire()
        .await
        .map_err(|_| StoreError::Unavailable("report runs are shutting down".into()))?;
    match db.dialect {
        Dialect::Postgres => {
            let t = db.reader.begin().await?;
            t.execute_unprepared(&format!(
                "SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"
            ))
            .await?;
            let rows = t.query_all(s).await.map_err(|e| {
                let m = e.to_string();
                if m.contains("statement timeout") || m.contains("canceling statement") {
                    too_slow()
                } else {
                    StoreError::Db(e)
                }
            })?;
            t.commit().await?;
            Ok(rows)
        }
        Dialect::Sqlite => {
            use sea_orm::sqlx;
            let sqlx_err = |e: sqlx::Error| {
                StoreError::Db(sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(
                    std::sync::Arc::new(e),
                )))
            };
            let mut conn = db
                .reader
                .get_sqlite_connection_pool()
                .acquire()
                .await
                .map_err(sqlx_err)?;
            let abandoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let deadline =
                std::time::Instant::now() + std::time::Duration::from_millis(u64::from(timeout_ms));
            let flag = abandoned.clone();
            conn.lock_handle()
                .await
                .map_err(sqlx_err)?
                .set_progress_handler(100_000, move || {
                    !flag.load(std::sync::atomic::Ordering::Relaxed)
                        && std::time::Instant::now() < deadline
                });
            let mut armed = Armed {
                conn: Some(conn),
                abandoned,
            };
            let (sql, values) = s.build(sea_orm::sea_query::SqliteQueryBuilder);
            let rows = match armed.conn.as_mut() {
                Some(c) => {
                    sqlx::query_with(sqlx::AssertSqlSafe(sql), sea_query_sqlx::SqlxValues(values))
                        .fetch_all(&mut **c)
                        .await
                }
                None => Ok(Vec::new()),
            };
            // The handler goes before the connection does; dropped during this, `Armed`
            // takes over.
            let removed = match armed.conn.as_mut() {
                Some(c) => match c.lock_handle().await {
                    Ok(mut h) => {
                        h.remove_progress_handler();
                        true
                    }
                    Err(_) => false,
                },
                None => false,
            };
            if removed {
                armed.conn = None;
            }
            match rows {
                Ok(rows) => Ok(rows.into_iter().map(QueryResult::from).collect()),
                Err(e) if e.to_string().contains("interrupted") => Err(too_slow()),
                Err(e) => Err(sqlx_err(e)),
            }
        }
    }
}

/// Run a report for a caller.
pub async fn run(
    store: &Store,
    report: &Report,
    input: &Input,
    perms: &Permissions,
) -> Result<Output, StoreError> {
    let snap = store.registry.snapshot();
    let params = bind_run_params(
        &report.params,
        &input.params,
        perms.user(),
        &format!("the report {}", report.name),
    )
    .map_err(StoreError::Definition)?;
    let ctx = Ctx {
        report,
        snap: &snap,
        perms,
        dialect: store.db.dialect,
        now: Utc::now(),
        params,
        input,
    };
    let mut out = match report.kind {
        ReportKind::Grouped => grouped::run(&ctx, &store.db).await?,
        ReportKind::Funnel => funnel::run(&ctx, &store.db).await?,
        ReportKind::Rfm => rfm::run(&ctx, &store.db).await?,
    };
    if !input.drill {
        out.drill = None;
    }
    Ok(out)
}

/// Run a report for a caller with parameters a dashboard passes: only those the report
/// declares are kept.
pub async fn run_widget(
    store: &Store,
    report: &Report,
    fixed: &Map<String, Value>,
    shared: &Map<String, Value>,
    perms: &Permissions,
) -> Result<Output, StoreError> {
    let mut params = Map::new();
    for p in &report.params {
        if let Some(v) = fixed.get(&p.name).or_else(|| shared.get(&p.name)) {
            params.insert(p.name.clone(), v.clone());
        }
    }
    let input = Input {
        filter: None,
        params,
        drill: false,
    };
    run(store, report, &input, perms).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sqlite_query_past_its_deadline_is_interrupted_and_the_reader_stays_usable() {
        let path = std::env::temp_dir().join(format!("trellis-fetch-{}.db", std::process::id()));
        let db = Db::connect(&trellis_store::db::DbOptions {
            url: format!("sqlite:{}", path.display()),
            max_connections: 1,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let mut slow = sea_orm::sea_query::Query::select();
        slow.expr(Expr::cust(
            "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) SELECT COUNT(*) FROM c)",
        ));
        let t = std::time::Instant::now();
        let err = fetch_within(&db, &slow, 300).await.err();
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert!(
            matches!(&err, Some(StoreError::Definition(e)) if e[0].code == "too_slow"),
            "{err:?}"
        );
        // The one reader answers the next query: the handler went with the run.
        let mut quick = sea_orm::sea_query::Query::select();
        quick.expr(Expr::val(7));
        let rows = fetch_within(&db, &quick, 300).await.unwrap_or_default();
        assert_eq!(rows.len(), 1);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
    }

    #[test]
    fn and_flattens() {
        assert_eq!(and(vec![json!({"a": 1})]), json!({"a": 1}));
        assert_eq!(and(vec![json!({}), json!({"a": 1})]), json!({"a": 1}));
        assert_eq!(
            and(vec![json!({"a": 1}), json!({"b": 2})]),
            json!({"$and": [{"a": 1}, {"b": 2}]})
        );
    }
}
