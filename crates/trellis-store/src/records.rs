//! Records of every form: create, read, list, update, delete, batch, history. Every write
//! commits in one transaction with its audit entry (single creates may share that
//! transaction with other creates through group commit, each in its own savepoint).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, SqlErr, TransactionTrait};
use serde::Serialize;
use serde_json::{Map, Value, json};
use trellis_meta::FieldError;
use trellis_meta::autonumber;
use trellis_meta::form::{Field, FieldType, OnDelete};
use trellis_meta::record::Mode;
use trellis_query::value::{format_datetime, parse_datetime, to_sql};
use trellis_query::{Cursor, Dialect, Filter, FilterError, Sort, ValueKind, cursor};

use crate::Store;
use crate::access;
use crate::db::{Db, Watch};
use crate::error::{BlockingRow, StoreError};
use crate::facts::{Host, Turns};
use crate::forms::{FormEntry, SYSTEM, Snapshot, field_kind};
use crate::migrate::{AUDIT, SEQUENCES};
use crate::row::decode;
use trellis_access::Permissions;
use trellis_meta::role::Action;
use trellis_rules::RuleError;

/// Who performs a write.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The user id, if a user.
    pub user: Option<String>,
    /// How many workflow runs led to this write (0 for a person's), so a workflow that
    /// sets itself off again is cut off.
    pub depth: u32,
}

impl Actor {
    /// A person or an API client.
    pub fn user(user: Option<String>) -> Self {
        Self { user, depth: 0 }
    }
}

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Filter in the filter language.
    pub filter: Option<Value>,
    /// `-score,company`.
    pub sort: Option<String>,
    /// Page size.
    pub limit: u64,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
    /// Only these fields (id always).
    pub fields: Option<Vec<String>>,
    /// Relation fields whose records to embed.
    pub expand: Vec<String>,
    /// Also count all matching records.
    pub count: bool,
}

/// One page of a list.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The records.
    pub data: Vec<Map<String, Value>>,
    /// Cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
    /// Number of matching records, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// One audit entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Entry id.
    pub id: i64,
    /// Record version after the change.
    pub version: i64,
    /// `create`, `update`, `delete` or `merge`.
    pub action: String,
    /// The record the entry is about: this one, or one merged into it.
    pub record_id: String,
    /// Who.
    pub actor: Option<String>,
    /// When.
    pub at: String,
    /// Field → {before, after}.
    pub changes: Value,
}

/// Largest page.
pub const MAX_LIMIT: u64 = 1000;
/// Most records in one batch.
pub const MAX_BATCH: usize = 1000;
const CASCADE_DEPTH: usize = 16;

pub(crate) fn now_micros() -> DateTime<Utc> {
    let n = Utc::now();
    parse_datetime(&format_datetime(&n)).unwrap_or(n)
}

fn col(table: &str, c: &str) -> Expr {
    Expr::col((Alias::new(table), Alias::new(c)))
}

fn sql_value(
    kind: ValueKind,
    v: &Value,
    dialect: Dialect,
    field: &str,
) -> Result<sea_orm::Value, StoreError> {
    to_sql(kind, v, dialect)
        .map_err(|e| StoreError::field(field, "type", e.to_string(), format!("类型错误：{e}")))
}

/// `updated_at` as a bound value.
pub(crate) fn stamp(now: &DateTime<Utc>, dialect: Dialect) -> Result<sea_orm::Value, StoreError> {
    sql_value(
        ValueKind::DateTime,
        &json!(format_datetime(now)),
        dialect,
        "updated_at",
    )
}

/// Canonical JSON of a stored value (numbers of float columns as floats, times in the fixed format).
pub(crate) fn canonical(kind: ValueKind, v: Value) -> Value {
    match (kind, &v) {
        (ValueKind::Float, Value::Number(n)) => n.as_f64().map(Value::from).unwrap_or(v),
        (ValueKind::DateTime, Value::String(s)) => parse_datetime(s)
            .map(|d| Value::String(format_datetime(&d)))
            .unwrap_or(v),
        _ => v,
    }
}

pub(crate) async fn count_all<C: ConnectionTrait>(c: &C, table: &str) -> Result<u64, StoreError> {
    let row = c
        .query_one(
            Query::select()
                .expr(Func::count(Expr::col(Alias::new("id"))))
                .from(Alias::new(table)),
        )
        .await?;
    Ok(row
        .and_then(|r| r.try_get_by_index::<i64>(0).ok())
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// A whole record by id, as the system sees it (rules' lookups).
pub(crate) async fn read_one<C: ConnectionTrait>(
    c: &C,
    dialect: Dialect,
    entry: &FormEntry,
    id: &str,
) -> Result<Option<Map<String, Value>>, StoreError> {
    let proj = Projection::new(entry, None, &[])?;
    let mut s = proj.select(&entry.table);
    s.and_where(col(&entry.table, "id").eq(id));
    match c.query_one(&s).await? {
        Some(r) => proj.read(&r, dialect).map(Some),
        None => Ok(None),
    }
}

/// Whole records in id order after `after` ("" for the start), at most `limit`.
pub(crate) async fn read_page<C: ConnectionTrait>(
    c: &C,
    dialect: Dialect,
    entry: &FormEntry,
    after: &str,
    limit: u64,
) -> Result<Vec<Map<String, Value>>, StoreError> {
    let proj = Projection::new(entry, None, &[])?;
    let mut s = proj.select(&entry.table);
    s.and_where(col(&entry.table, "id").gt(after))
        .order_by(Alias::new("id"), Order::Asc)
        .limit(limit);
    c.query_all(&s)
        .await?
        .iter()
        .map(|r| proj.read(r, dialect))
        .collect()
}

/// The columns a select reads: system columns, then the wanted fields.
struct Projection {
    cols: Vec<(String, String, ValueKind)>,
}

impl Projection {
    fn new(
        entry: &FormEntry,
        fields: Option<&[String]>,
        extra: &[String],
    ) -> Result<Self, StoreError> {
        Self::seen_by(entry, fields, extra, &Permissions::system())
    }

    /// The columns a reader may see: hidden fields are neither read nor accepted in `fields`.
    fn seen_by(
        entry: &FormEntry,
        fields: Option<&[String]>,
        extra: &[String],
        perms: &Permissions,
    ) -> Result<Self, StoreError> {
        let form = entry.form.name.as_str();
        let mut cols = Vec::new();
        let want = |name: &str| {
            // id and version always: they make the cursor and the ETag.
            fields.is_none_or(|f| f.iter().any(|x| x == name) || name == "id" || name == "version")
                || extra.iter().any(|x| x == name)
        };
        for (name, kind) in SYSTEM {
            if want(name) {
                cols.push((name.to_owned(), name.to_owned(), kind));
            }
        }
        if let Some(fs) = fields {
            for (i, f) in fs.iter().enumerate() {
                if entry.column(f).is_none() || !access::visible(perms, form, f) {
                    return Err(FilterError::new(
                        format!("fields[{i}]"),
                        "unknown_field",
                        format!("no field named {f:?}"),
                    )
                    .into());
                }
            }
        }
        for f in &entry.form.fields {
            if want(&f.name)
                && access::visible(perms, form, &f.name)
                && let Some((c, k)) = entry.column(&f.name)
            {
                cols.push((f.name.clone(), c.to_owned(), k));
            }
        }
        Ok(Self { cols })
    }

    fn select(&self, table: &str) -> SelectStatement {
        let mut s = Query::select();
        for (_, c, _) in &self.cols {
            s.expr(col(table, c));
        }
        s.from(Alias::new(table));
        s
    }

    fn read(
        &self,
        row: &sea_orm::QueryResult,
        dialect: Dialect,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut m = Map::with_capacity(self.cols.len());
        for (i, (name, _, kind)) in self.cols.iter().enumerate() {
            m.insert(name.clone(), decode(row, i, *kind, dialect)?);
        }
        Ok(m)
    }
}

fn unique_field(entry: &FormEntry, err: &DbErr) -> Option<String> {
    let msg = match err.sql_err()? {
        SqlErr::UniqueConstraintViolation(m) => m,
        _ => return None,
    };
    entry
        .form
        .fields
        .iter()
        .filter(|f| f.unique)
        .find(|f| {
            entry.column(&f.name).is_some_and(|(c, _)| {
                // SQLite names `table.column`, PostgreSQL the index.
                let sqlite = format!("{}.{c}", entry.table);
                let by_sqlite = msg.match_indices(&sqlite).any(|(i, _)| {
                    msg[i + sqlite.len()..]
                        .chars()
                        .next()
                        .is_none_or(|ch| !(ch.is_ascii_alphanumeric() || ch == '_'))
                });
                by_sqlite
                    || msg.contains(&format!(
                        "\"{}\"",
                        crate::forms::index_name("uq", &entry.table, c)
                    ))
            })
        })
        .map(|f| f.name.clone())
        .or_else(|| Some(String::new()))
}

pub(crate) fn map_write_err(entry: &FormEntry, e: DbErr, prefix: &str) -> StoreError {
    match unique_field(entry, &e) {
        Some(f) => StoreError::Unique {
            field: format!("{prefix}{f}"),
        },
        None => StoreError::Db(e),
    }
}

impl Store {
    /// Create one record.
    pub async fn create(
        &self,
        form: &str,
        input: Map<String, Value>,
        actor: &Actor,
        perms: &Permissions,
    ) -> Result<Map<String, Value>, StoreError> {
        let form_rules = self.rules.for_form(form);
        // Routing counts workloads inside the create's own transaction.
        if let Some(g) = self
            .group
            .as_ref()
            .filter(|_| !crate::rules::routes(&form_rules))
        {
            // Validate here, in parallel on the caller's task; the writer only writes.
            let snap = self.registry.snapshot();
            let entry = snap.get(form)?;
            let mut host = Host::new(&self.db.reader, self.db.dialect, &snap, &entry, Turns::Peek);
            let (values, recorded) = match new_record(
                &mut host,
                &snap,
                &entry,
                &form_rules,
                input,
                perms,
                now_micros(),
                "",
            )
            .await?
            {
                NewRecord::Ready(v, recorded) => (v, recorded),
                NewRecord::Invalid(es) => return Err(StoreError::Validation(es)),
            };
            self.check_references(
                &snap,
                &entry,
                std::slice::from_ref(&values),
                None,
                perms,
                false,
            )
            .await?;
            let (reply, rx) = tokio::sync::oneshot::channel();
            g.submit(crate::group::Job {
                form: form.to_owned(),
                values,
                actor: actor.clone(),
                reply,
            })
            .await?;
            let mut rec = match rx
                .await
                .map_err(|_| StoreError::Unavailable("the writer dropped the create".into()))?
            {
                Ok(r) => r,
                Err(e) => return Err(self.redact_duplicate(form, e, perms).await),
            };
            crate::rules::record_failures(&self.db, form, &recorded).await;
            access::redact(perms, form, &mut rec);
            return Ok(rec);
        }
        let mut out = self
            .create_batch(form, vec![input], actor, false, perms)
            .await?;
        out.pop()
            .ok_or_else(|| StoreError::Corrupt("no record created".into()))
    }

    /// Create several records, all or nothing. Errors name `records[i].field` when `batch`.
    pub async fn create_batch(
        &self,
        form: &str,
        inputs: Vec<Map<String, Value>>,
        actor: &Actor,
        batch: bool,
        perms: &Permissions,
    ) -> Result<Vec<Map<String, Value>>, StoreError> {
        let writing = self.registry.change.read().await;
        let (records, recorded) = self
            .create_with(&self.db.writer, form, inputs, actor, batch, perms)
            .await?;
        drop(writing);
        crate::rules::record_failures(&self.db, form, &recorded).await;
        // The records are committed: a failed ANALYZE must not turn that into an error.
        if let Ok(entry) = self.registry.get(form)
            && let Err(e) = self
                .stats
                .note_form(
                    &self.db.writer,
                    self.db.dialect,
                    &entry.form,
                    records.len() as u64,
                )
                .await
        {
            tracing::warn!(error = %e, "analyzing a table failed");
        }
        Ok(records)
    }

    /// Create records in a transaction of `conn` (a savepoint when `conn` is one), for a
    /// caller that commits more with them. Answers the records and the rule failures that
    /// were kept rather than refused, for the caller to record after its commit. The caller
    /// holds `registry.change.read()`, taken before its transaction began (form changes
    /// take that lock first and the writer second).
    pub async fn create_with<C: TransactionTrait<Transaction = DatabaseTransaction>>(
        &self,
        conn: &C,
        form: &str,
        inputs: Vec<Map<String, Value>>,
        actor: &Actor,
        batch: bool,
        perms: &Permissions,
    ) -> Result<(Vec<Map<String, Value>>, Vec<RuleError>), StoreError> {
        let snap = self.registry.snapshot();
        let entry = snap.get(form)?;
        let now = now_micros();
        let prefix = |i: usize| {
            if batch {
                format!("records[{i}].")
            } else {
                String::new()
            }
        };
        let mut prepared = Vec::with_capacity(inputs.len());
        let mut errors = Vec::new();
        let form_rules = self.rules.for_form(form);
        let mut recorded = Vec::new();
        let mut host = Host::new(&self.db.reader, self.db.dialect, &snap, &entry, Turns::Peek);
        for (i, input) in inputs.into_iter().enumerate() {
            match new_record(
                &mut host,
                &snap,
                &entry,
                &form_rules,
                input,
                perms,
                now,
                &prefix(i),
            )
            .await?
            {
                NewRecord::Ready(v, r) => {
                    recorded.extend(r);
                    prepared.push(v);
                }
                NewRecord::Invalid(es) => errors.extend(es),
            }
        }
        if !errors.is_empty() {
            return Err(StoreError::Validation(errors));
        }
        check_unique_within(&entry, &prepared, batch)?;
        self.check_references(&snap, &entry, &prepared, None, perms, batch)
            .await?;
        let txn = conn.begin().await?;
        if crate::rules::routes(&form_rules) {
            // In the transaction: the turns taken and the workloads counted hold until commit.
            let mut host = Host::new(&txn, self.db.dialect, &snap, &entry, Turns::Take);
            for (i, v) in prepared.iter_mut().enumerate() {
                let by = actor.user.as_deref();
                recorded
                    .extend(crate::rules::route(&mut host, &form_rules, v, by, &prefix(i)).await?);
            }
            let gates: Vec<FieldError> = prepared
                .iter()
                .enumerate()
                .flat_map(|(i, v)| {
                    let at = prefix(i);
                    entry
                        .form
                        .stage_errors(None, v)
                        .into_iter()
                        .map(move |mut e| {
                            e.field = format!("{at}{}", e.field);
                            e
                        })
                })
                .collect();
            if !gates.is_empty() {
                return Err(StoreError::Validation(gates));
            }
        }
        let mut records = match insert_records(
            &txn, &self.db, &snap, &entry, prepared, actor, now, batch, true,
        )
        .await
        {
            Ok(r) => r,
            // A block rule's refusal names only what the caller may read.
            Err(e) => {
                drop(txn);
                return Err(self.redact_duplicate(form, e, perms).await);
            }
        };
        txn.commit().await?;
        self.db.watch.ring();
        for r in &mut records {
            access::redact(perms, form, r);
        }
        Ok((records, recorded))
    }

    /// A whole record by id as the system sees it (no permissions), read over `conn`.
    pub async fn read_record<C: ConnectionTrait>(
        &self,
        conn: &C,
        form: &str,
        id: &str,
    ) -> Result<Option<Map<String, Value>>, StoreError> {
        let entry = self.registry.get(form)?;
        read_one(conn, self.db.dialect, &entry, id).await
    }

    /// One record by id.
    pub async fn get(
        &self,
        form: &str,
        id: &str,
        fields: Option<&[String]>,
        perms: &Permissions,
    ) -> Result<Map<String, Value>, StoreError> {
        let snap = self.registry.snapshot();
        let entry = snap.get(form)?;
        let scope = access::rows(perms, &snap, form, Action::Read)?;
        let proj = Projection::seen_by(&entry, fields, &[], perms)?;
        let mut s = proj.select(&entry.table);
        s.and_where(col(&entry.table, "id").eq(id));
        if let Some(f) = scope {
            s.cond_where(f.to_condition(self.db.dialect));
        }
        let row = self.db.reader.query_one(&s).await?;
        match row {
            Some(r) => proj.read(&r, self.db.dialect),
            None => Err(StoreError::RecordNotFound {
                form: form.to_owned(),
                id: id.to_owned(),
            }),
        }
    }

    /// A page of records: only rows the caller may read, only fields they may see.
    pub async fn list(
        &self,
        form: &str,
        q: &ListQuery,
        perms: &Permissions,
    ) -> Result<Page, StoreError> {
        let snap = self.registry.snapshot();
        let entry = snap.get(form)?;
        let dialect = self.db.dialect;
        let scope = access::rows(perms, &snap, form, Action::Read)?;
        let seen = access::Visible { snap: &snap, perms };
        let mut filter = match &q.filter {
            Some(f) => Filter::parse(form, f, &seen, Utc::now()).map_err(|mut e| {
                e.path = match e.path.as_str() {
                    "" => "filter".to_owned(),
                    p if p.starts_with('[') => format!("filter{p}"),
                    p => format!("filter.{p}"),
                };
                e
            })?,
            None => Filter::all(),
        };
        if let Some(s) = scope {
            filter = filter.and(s);
        }
        let sort = Sort::parse(form, q.sort.as_deref().unwrap_or(""), &seen)?;
        // Sort keys feed the cursor and relation fields feed expand, even when not asked for.
        let mut extra: Vec<String> = sort.keys.iter().map(|k| k.field.clone()).collect();
        extra.extend(q.expand.iter().cloned());
        let proj = Projection::seen_by(&entry, q.fields.as_deref(), &extra, perms)?;
        let limit = q.limit.clamp(1, MAX_LIMIT);
        let mut s = proj.select(&entry.table);
        let cond = filter.to_condition(dialect);
        s.cond_where(cond.clone());
        if let Some(c) = &q.cursor {
            let c = Cursor::decode(c)?;
            s.cond_where(cursor::after(&sort, &c, &entry.table, dialect)?);
        }
        sort.apply(&entry.table, dialect, &mut s);
        s.limit(limit + 1);
        let rows = self.db.reader.query_all(&s).await?;
        let more = rows.len() as u64 > limit;
        let mut data = Vec::with_capacity(rows.len().min(limit as usize));
        for r in rows.iter().take(limit as usize) {
            data.push(proj.read(r, dialect)?);
        }
        let next_cursor = if more {
            data.last().map(|r| cursor::from_record(&sort, r).encode())
        } else {
            None
        };
        let total = if q.count {
            let mut c = Query::select();
            c.expr(Func::count(col(&entry.table, "id")))
                .from(Alias::new(&entry.table))
                .cond_where(cond);
            let row = self.db.reader.query_one(&c).await?;
            Some(
                row.and_then(|r| r.try_get_by_index::<i64>(0).ok())
                    .map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            )
        } else {
            None
        };
        if !q.expand.is_empty() {
            self.expand(&snap, &entry, &mut data, &q.expand, perms)
                .await?;
        }
        if let Some(fs) = &q.fields {
            for r in &mut data {
                r.retain(|k, _| k == "id" || k == "expand" || fs.iter().any(|f| f == k));
            }
        }
        Ok(Page {
            data,
            next_cursor,
            total,
        })
    }

    /// Embed the records that relation fields point at, under `expand`.
    pub async fn expand(
        &self,
        snap: &Snapshot,
        entry: &FormEntry,
        data: &mut [Map<String, Value>],
        fields: &[String],
        perms: &Permissions,
    ) -> Result<(), StoreError> {
        for (i, name) in fields.iter().enumerate() {
            let target = entry
                .form
                .field(name)
                .filter(|_| access::visible(perms, &entry.form.name, name))
                .and_then(|f| f.target.clone());
            let Some(target) = target else {
                return Err(FilterError::new(
                    format!("expand[{i}]"),
                    "not_a_relation",
                    format!("{name:?} is not a relation field"),
                )
                .into());
            };
            let te = snap.get(&target)?;
            let ids: Vec<String> = data
                .iter()
                .filter_map(|r| r.get(name).and_then(Value::as_str).map(str::to_owned))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let mut found: HashMap<String, Map<String, Value>> = HashMap::new();
            // Records the caller may not read expand to null, like missing ones.
            let scope = match access::rows(perms, snap, &target, Action::Read) {
                Ok(s) => Some(s),
                Err(StoreError::Forbidden { .. }) => None,
                Err(e) => return Err(e),
            };
            let proj = Projection::seen_by(&te, None, &[], perms)?;
            for chunk in ids.chunks(500).filter(|_| scope.is_some()) {
                let mut s = proj.select(&te.table);
                s.and_where(col(&te.table, "id").is_in(chunk.iter().cloned()));
                if let Some(Some(f)) = &scope {
                    s.cond_where(f.to_condition(self.db.dialect));
                }
                for r in self.db.reader.query_all(&s).await? {
                    let m = proj.read(&r, self.db.dialect)?;
                    if let Some(id) = m.get("id").and_then(Value::as_str) {
                        found.insert(id.to_owned(), m.clone());
                    }
                }
            }
            for r in data.iter_mut() {
                let v = r
                    .get(name)
                    .and_then(Value::as_str)
                    .and_then(|id| found.get(id))
                    .cloned()
                    .map(Value::Object)
                    .unwrap_or(Value::Null);
                let ex = r
                    .entry("expand")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = ex {
                    m.insert(name.clone(), v);
                }
            }
        }
        Ok(())
    }

    /// Change some fields of a record; `if_match` is the version the caller last saw.
    pub async fn update(
        &self,
        form: &str,
        id: &str,
        patch: Map<String, Value>,
        if_match: Option<i64>,
        actor: &Actor,
        perms: &Permissions,
    ) -> Result<Map<String, Value>, StoreError> {
        let writing = self.registry.change.read().await;
        let (rec, recorded) = self
            .update_with(&self.db.writer, form, id, patch, if_match, actor, perms)
            .await?;
        drop(writing);
        crate::rules::record_failures(&self.db, form, &recorded).await;
        Ok(rec)
    }

    /// Update a record in a transaction of `conn` (a savepoint when `conn` is one).
    /// Answers the record and the rule failures kept rather than refused. The caller holds
    /// `registry.change.read()`, as for [`Store::create_with`].
    #[allow(clippy::too_many_arguments)]
    pub async fn update_with<C: TransactionTrait<Transaction = DatabaseTransaction>>(
        &self,
        conn: &C,
        form: &str,
        id: &str,
        patch: Map<String, Value>,
        if_match: Option<i64>,
        actor: &Actor,
        perms: &Permissions,
    ) -> Result<(Map<String, Value>, Vec<RuleError>), StoreError> {
        self.update_as(
            conn,
            form,
            id,
            patch,
            if_match,
            actor,
            perms,
            &Audited::UPDATE,
        )
        .await
    }

    /// [`Store::update_with`], audited as `how` says (a merge is one entry of its own).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_as<C: TransactionTrait<Transaction = DatabaseTransaction>>(
        &self,
        conn: &C,
        form: &str,
        id: &str,
        patch: Map<String, Value>,
        if_match: Option<i64>,
        actor: &Actor,
        perms: &Permissions,
        how: &Audited,
    ) -> Result<(Map<String, Value>, Vec<RuleError>), StoreError> {
        let snap = self.registry.snapshot();
        let entry = snap.get(form)?;
        // Only rows the caller may both read and change.
        let scope = both(
            access::rows(perms, &snap, form, Action::Update)?,
            access::rows(perms, &snap, form, Action::Read)?,
        );
        let dialect = self.db.dialect;
        let now = now_micros();
        // A hidden field is refused whatever its value, so a PATCH cannot guess it.
        if let Some(k) = patch.keys().find(|k| !access::visible(perms, form, k)) {
            return Err(StoreError::forbidden(
                k.clone(),
                "read_only",
                format!("you may not change the field {k:?}"),
            ));
        }
        let values = entry
            .validator
            .prepare(patch, Mode::Update, now)
            .map_err(StoreError::Validation)?;
        let txn = conn.begin().await?;
        let mut one = [values];
        crate::files::resolve(&txn, &entry.form.fields, &mut one, &|_| String::new()).await?;
        let [values] = one;
        let current = match read_for_update(&txn, dialect, &entry, id, scope.as_ref()).await {
            Err(StoreError::RecordNotFound { .. }) if scope.is_some() => {
                drop(txn);
                return Err(self.out_of_scope(form, id, perms, Action::Update).await);
            }
            r => r?,
        };
        let version = current.get("version").and_then(Value::as_i64).unwrap_or(0);
        if let Some(v) = if_match
            && v != version
        {
            return Err(StoreError::Stale { current: version });
        }
        let mut changes = Map::new();
        let mut sets: Vec<(String, sea_orm::Value)> = Vec::new();
        let mut changed = Map::new();
        let mut merged = current.clone();
        for (k, v) in values {
            let (column, kind) = entry
                .column(&k)
                .map(|(c, k)| (c.to_owned(), k))
                .ok_or_else(|| {
                    StoreError::field(&k, "unknown_field", "no such field", "没有这个字段")
                })?;
            let v = canonical(kind, v);
            let before = current.get(&k).cloned().unwrap_or(Value::Null);
            if before == v {
                continue;
            }
            sets.push((column, sql_value(kind, &v, dialect, &k)?));
            changes.insert(k.clone(), json!({"before": before, "after": v}));
            changed.insert(k.clone(), v.clone());
            merged.insert(k, v);
        }
        if changes.is_empty() && !how.always {
            txn.rollback().await?;
            let mut current = current;
            access::redact(perms, form, &mut current);
            return Ok((current, Vec::new()));
        }
        access::check_fields(perms, form, changed.keys(), "")?;
        if let Some(o) = changed.get("owner")
            && !perms.may_own(form, Action::Update, o.as_str().unwrap_or_default())
        {
            return Err(StoreError::forbidden(
                "owner",
                "owner_out_of_scope",
                "you may not hand the record to this owner",
            ));
        }
        // Only what changed: an old reference must not block an unrelated edit.
        check_refs(&txn, &snap, &entry, std::slice::from_ref(&changed), false).await?;
        self.check_references(
            &snap,
            &entry,
            std::slice::from_ref(&changed),
            Some(&current),
            perms,
            false,
        )
        .await?;
        // Rules and formulas follow their inputs (a lead's source, an order's lines).
        let form_rules = self.rules.for_form(form);
        let keys: Vec<String> = changes.keys().cloned().collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut outputs: Vec<String> = entry
            .formulas
            .outputs()
            .into_iter()
            .map(str::to_owned)
            .collect();
        // Any rule may run (one rule's output can trigger another), so all their fields.
        outputs.extend(crate::rules::outputs(&form_rules));
        let mut recorded = Vec::new();
        if !outputs.is_empty() || !form_rules.is_empty() {
            let mut full = merged.clone();
            entry.formulas.apply(&mut full, "")?;
            let mut host = Host::new(&txn, dialect, &snap, &entry, Turns::Peek);
            recorded =
                crate::rules::apply(&mut host, &form_rules, &mut full, Some(&current), &keys, "")
                    .await?
                    .recorded;
            crate::rules::check_outputs(&entry, &form_rules, &mut full, "")?;
            entry.formulas.apply(&mut full, "")?;
            for name in outputs.iter().map(String::as_str) {
                let Some((column, kind)) = entry.column(name) else {
                    continue;
                };
                let v = canonical(kind, full.get(name).cloned().unwrap_or(Value::Null));
                sets.retain(|(c, _)| c != column);
                changes.remove(name);
                let before = current.get(name).cloned().unwrap_or(Value::Null);
                if v != before {
                    sets.push((column.to_owned(), sql_value(kind, &v, dialect, name)?));
                    changes.insert(name.to_owned(), json!({"before": before, "after": v}));
                }
                merged.insert(name.to_owned(), v);
            }
            if changes.is_empty() && !how.always {
                txn.rollback().await?;
                let mut current = current;
                access::redact(perms, form, &mut current);
                return Ok((current, recorded));
            }
        }
        // Stage gates see the record as it will be stored, rules' work included.
        let gates = entry.form.stage_errors(Some(&current), &merged);
        if !gates.is_empty() {
            return Err(StoreError::Validation(gates));
        }
        let mut u = Query::update();
        u.table(Alias::new(&entry.table));
        for (c, v) in sets {
            u.value(Alias::new(c), v);
        }
        u.value(Alias::new("version"), version + 1);
        u.value(Alias::new("updated_at"), stamp(&now, dialect)?);
        u.and_where(Expr::col(Alias::new("id")).eq(id))
            .and_where(Expr::col(Alias::new("version")).eq(version));
        txn.execute(&u)
            .await
            .map_err(|e| map_write_err(&entry, e, ""))?;
        merged.insert("version".into(), json!(version + 1));
        merged.insert("updated_at".into(), json!(format_datetime(&now)));
        let mut entry_changes = changes.clone();
        if let Some((k, v)) = &how.extra {
            entry_changes.insert((*k).to_owned(), v.clone());
        }
        write_audit(
            &txn,
            &self.db.watch,
            &[(
                form,
                id,
                version + 1,
                how.action,
                Value::Object(entry_changes),
            )],
            actor,
            now,
        )
        .await?;
        let changed: Vec<&str> = changes.keys().map(String::as_str).collect();
        crate::dedupe::rekey(&txn, &entry.form, id, &merged, &changed).await?;
        txn.commit().await?;
        self.db.watch.ring();
        access::redact(perms, form, &mut merged);
        Ok((merged, recorded))
    }

    /// The error for a record the action's scope does not reach: 403 when the caller may
    /// read it, else 404 (never confirm that a record exists).
    async fn out_of_scope(
        &self,
        form: &str,
        id: &str,
        perms: &Permissions,
        action: Action,
    ) -> StoreError {
        match self.get(form, id, Some(&["id".to_owned()]), perms).await {
            Ok(_) => StoreError::forbidden(
                "",
                "not_permitted",
                format!("you may not {} this {form} record", action.as_str()),
            ),
            Err(e) => e,
        }
    }

    /// Delete a record, applying the on-delete policy of every relation that points at it.
    pub async fn delete(
        &self,
        form: &str,
        id: &str,
        if_match: Option<i64>,
        actor: &Actor,
        perms: &Permissions,
    ) -> Result<(), StoreError> {
        let _writing = self.registry.change.read().await;
        self.delete_with(&self.db.writer, form, id, if_match, actor, perms)
            .await
    }

    /// Delete a record in a transaction of `conn` (a savepoint when `conn` is one). The
    /// caller holds `registry.change.read()`, as for [`Store::create_with`].
    pub async fn delete_with<C: TransactionTrait<Transaction = DatabaseTransaction>>(
        &self,
        conn: &C,
        form: &str,
        id: &str,
        if_match: Option<i64>,
        actor: &Actor,
        perms: &Permissions,
    ) -> Result<(), StoreError> {
        let snap = self.registry.snapshot();
        let entry = snap.get(form)?;
        let scope = both(
            access::rows(perms, &snap, form, Action::Delete)?,
            access::rows(perms, &snap, form, Action::Read)?,
        );
        let txn = conn.begin().await?;
        let current = match read_for_update(&txn, self.db.dialect, &entry, id, scope.as_ref()).await
        {
            Err(StoreError::RecordNotFound { .. }) if scope.is_some() => {
                drop(txn);
                return Err(self.out_of_scope(form, id, perms, Action::Delete).await);
            }
            r => r?,
        };
        let version = current.get("version").and_then(Value::as_i64).unwrap_or(0);
        if let Some(v) = if_match
            && v != version
        {
            return Err(StoreError::Stale { current: version });
        }
        delete_in(
            &txn,
            &self.db,
            &snap,
            entry,
            current,
            actor,
            now_micros(),
            0,
        )
        .await
        .map_err(|e| match e {
            // The records in the way may be ones the caller cannot read: only the count.
            StoreError::Conflict {
                field,
                code,
                message,
                ..
            } if !perms.may_inspect() => StoreError::Conflict {
                field,
                code,
                message,
                rows: vec![],
            },
            e => e,
        })?;
        txn.commit().await?;
        self.db.watch.ring();
        Ok(())
    }

    /// The audit history of a record, oldest first, with only the fields the caller may
    /// see. Limited to some rows, the caller sees the history of records they can read.
    pub async fn history(
        &self,
        form: &str,
        id: &str,
        perms: &Permissions,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let snap = self.registry.snapshot();
        snap.get(form)?;
        if access::rows(perms, &snap, form, Action::Read)?.is_some() {
            self.get(form, id, Some(&["id".to_owned()]), perms).await?;
        }
        // Records merged into this one (and into those) keep their history here.
        let mut ids = vec![id.to_owned()];
        let mut i = 0;
        while i < ids.len() && ids.len() < 1000 {
            let mut m = Query::select();
            m.column(Alias::new("changes"))
                .from(Alias::new(AUDIT))
                .and_where(Expr::col(Alias::new("form")).eq(form))
                .and_where(Expr::col(Alias::new("record_id")).eq(ids[i].as_str()))
                .and_where(Expr::col(Alias::new("action")).eq("merge"));
            for r in self.db.reader.query_all(&m).await? {
                let ch: Value = serde_json::from_str(&r.try_get_by_index::<String>(0)?)?;
                if let Some(from) = ch[crate::merge::MERGED_FROM]["after"]["id"].as_str()
                    && !ids.iter().any(|x| x == from)
                {
                    ids.push(from.to_owned());
                }
            }
            i += 1;
        }
        let mut s = Query::select();
        s.columns(
            [
                "id",
                "version",
                "action",
                "actor",
                "at",
                "changes",
                "record_id",
            ]
            .map(Alias::new),
        )
        .from(Alias::new(AUDIT))
        .and_where(Expr::col(Alias::new("form")).eq(form))
        .and_where(Expr::col(Alias::new("record_id")).is_in(ids))
        .order_by(Alias::new("id"), Order::Asc);
        let rows = self.db.reader.query_all(&s).await?;
        if rows.is_empty() {
            return Err(StoreError::RecordNotFound {
                form: form.to_owned(),
                id: id.to_owned(),
            });
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let action: String = r.try_get_by_index(2)?;
            let mut changes = expand_changes(
                &action,
                serde_json::from_str(&r.try_get_by_index::<String>(5)?)?,
            );
            if let Value::Object(m) = &mut changes {
                let before = m.len();
                m.retain(|k, _| {
                    access::visible(perms, form, k)
                        || (action == "merge" && k == crate::merge::MERGED_FROM)
                });
                if let Some(gone) = m
                    .get_mut(crate::merge::MERGED_FROM)
                    .and_then(|v| v["after"]["values"].as_object_mut())
                {
                    gone.retain(|k, _| access::visible(perms, form, k));
                }
                // An update of hidden fields only is not the caller's business.
                if m.is_empty() && before > 0 && action == "update" {
                    continue;
                }
            }
            out.push(AuditEntry {
                id: r.try_get_by_index(0)?,
                version: r.try_get_by_index(1)?,
                action,
                actor: r.try_get_by_index(3)?,
                at: r.try_get_by_index(4)?,
                changes,
                record_id: r.try_get_by_index(6)?,
            });
        }
        Ok(out)
    }
}

/// A new record as it will be stored, or the field errors a batch collects before it fails.
pub(crate) enum NewRecord {
    /// Validated and computed, with the failures of rules that keep the write.
    Ready(Map<String, Value>, Vec<trellis_rules::RuleError>),
    /// Field errors (of validation or of validation rules).
    Invalid(Vec<FieldError>),
}

/// Everything a create does to one input before it is written, the same for a single
/// create and each record of a batch: permission to create, validation, formulas, the
/// create filters, rules (whose outputs are checked and may feed formulas).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn new_record<C: ConnectionTrait>(
    host: &mut Host<'_, C>,
    snap: &Snapshot,
    entry: &FormEntry,
    rules: &[crate::rules::RuleEntry],
    input: Map<String, Value>,
    perms: &Permissions,
    now: DateTime<Utc>,
    prefix: &str,
) -> Result<NewRecord, StoreError> {
    let form = entry.form.name.as_str();
    access::check_may_create(perms, form, &input, prefix)?;
    let mut v = match entry.validator.prepare(input, Mode::Create, now) {
        Ok(v) => v,
        Err(es) => {
            return Ok(NewRecord::Invalid(
                es.into_iter()
                    .map(|mut e| {
                        e.field = format!("{prefix}{}", e.field);
                        e
                    })
                    .collect(),
            ));
        }
    };
    entry.formulas.apply(&mut v, prefix)?;
    access::check_create(perms, snap, form, &v, prefix)?;
    let recorded = match crate::rules::apply(host, rules, &mut v, None, &[], prefix).await {
        Ok(a) => a.recorded,
        Err(StoreError::Validation(es)) => return Ok(NewRecord::Invalid(es)),
        Err(e) => return Err(e),
    };
    if !rules.is_empty() {
        crate::rules::check_outputs(entry, rules, &mut v, prefix)?;
        // What rules set may feed formulas.
        entry.formulas.apply(&mut v, prefix)?;
    }
    // With route rules the gates wait for routing (a state may need the routed assignee).
    let gates = if crate::rules::routes(rules) {
        Vec::new()
    } else {
        entry.form.stage_errors(None, &v)
    };
    if !gates.is_empty() {
        return Ok(NewRecord::Invalid(
            gates
                .into_iter()
                .map(|mut e| {
                    e.field = format!("{prefix}{}", e.field);
                    e
                })
                .collect(),
        ));
    }
    Ok(NewRecord::Ready(v, recorded))
}

/// How an update is audited.
pub(crate) struct Audited {
    /// The entry's action.
    pub action: &'static str,
    /// One more key of the entry's changes.
    pub extra: Option<(&'static str, Value)>,
    /// Write (and bump the version) even when no value changes.
    pub always: bool,
}

impl Audited {
    /// An ordinary update: nothing is written when nothing changes.
    pub const UPDATE: Audited = Audited {
        action: "update",
        extra: None,
        always: false,
    };
}

/// Both filters (None: no limit).
pub(crate) fn both(a: Option<Filter>, b: Option<Filter>) -> Option<Filter> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.and(b)),
        (a, b) => a.or(b),
    }
}

/// The ids of the files an attachment value holds (one object or a list of them).
fn file_ids(v: Option<&Value>) -> Vec<String> {
    let one = |o: &Value| o.get("id").and_then(Value::as_str).map(str::to_owned);
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(one).collect(),
        Some(o @ Value::Object(_)) => one(o).into_iter().collect(),
        _ => Vec::new(),
    }
}

impl Store {
    /// What a non-administrator writes may only point at what they can see: a related
    /// record they cannot read is answered like one that does not exist, and a file can be
    /// attached only by its uploader (or kept where it already is).
    pub(crate) async fn check_references(
        &self,
        snap: &Snapshot,
        entry: &FormEntry,
        records: &[Map<String, Value>],
        current: Option<&Map<String, Value>>,
        perms: &Permissions,
        batch: bool,
    ) -> Result<(), StoreError> {
        if perms.may_inspect() {
            return Ok(());
        }
        let prefix = |i: usize| {
            if batch {
                format!("records[{i}].")
            } else {
                String::new()
            }
        };
        // (path, target form, id)
        let mut refs: Vec<(String, String, String)> = Vec::new();
        let mut files: Vec<(String, String)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            for f in &entry.form.fields {
                match f.kind {
                    FieldType::Relation => {
                        if let (Some(t), Some(id)) =
                            (&f.target, r.get(&f.name).and_then(Value::as_str))
                        {
                            refs.push((
                                format!("{}{}", prefix(i), f.name),
                                t.clone(),
                                id.to_owned(),
                            ));
                        }
                    }
                    FieldType::Attachment => {
                        let kept = file_ids(current.and_then(|c| c.get(&f.name)));
                        for id in file_ids(r.get(&f.name)) {
                            if !kept.contains(&id) {
                                files.push((format!("{}{}", prefix(i), f.name), id));
                            }
                        }
                    }
                    FieldType::Subtable => {
                        let Some(Value::Array(lines)) = r.get(&f.name) else {
                            continue;
                        };
                        for (j, line) in lines.iter().enumerate() {
                            for nf in f.fields.iter().filter(|nf| nf.kind == FieldType::Relation) {
                                if let (Some(t), Some(id)) =
                                    (&nf.target, line.get(&nf.name).and_then(Value::as_str))
                                {
                                    refs.push((
                                        format!("{}{}[{j}].{}", prefix(i), f.name, nf.name),
                                        t.clone(),
                                        id.to_owned(),
                                    ));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut errors = Vec::new();
        let mut targets: Vec<&str> = refs.iter().map(|r| r.1.as_str()).collect();
        targets.sort_unstable();
        targets.dedup();
        for t in targets {
            let scope = match access::rows(perms, snap, t, Action::Read) {
                Ok(None) => continue,
                Ok(Some(f)) => Some(f),
                Err(StoreError::Forbidden { .. }) => None,
                Err(e) => return Err(e),
            };
            let ids: Vec<String> = refs
                .iter()
                .filter(|r| r.1 == t)
                .map(|r| r.2.clone())
                .collect();
            let mut seen: HashSet<String> = HashSet::new();
            if let (Some(f), Ok(te)) = (&scope, snap.get(t)) {
                for chunk in ids.chunks(500) {
                    let mut s = Query::select();
                    s.expr(col(&te.table, "id"))
                        .from(Alias::new(&te.table))
                        .and_where(col(&te.table, "id").is_in(chunk.iter().cloned()))
                        .cond_where(f.to_condition(self.db.dialect));
                    for row in self.db.reader.query_all(&s).await? {
                        seen.insert(row.try_get_by_index::<String>(0)?);
                    }
                }
            }
            for (path, _, id) in refs.iter().filter(|r| r.1 == t && !seen.contains(&r.2)) {
                errors.push(FieldError::new(
                    path,
                    "not_found",
                    format!("no {t} record with id {id:?}"),
                    format!("找不到 id 为 {id:?} 的记录"),
                ));
            }
        }
        if !files.is_empty() {
            let mut s = Query::select();
            s.columns(["id", "created_by"].map(Alias::new))
                .from(Alias::new("trellis_files"))
                .and_where(Expr::col(Alias::new("id")).is_in(files.iter().map(|f| f.1.clone())));
            let mut mine = HashSet::new();
            for row in self.db.reader.query_all(&s).await? {
                let by: Option<String> = row.try_get_by_index(1)?;
                if by.as_deref() == Some(perms.user()) {
                    mine.insert(row.try_get_by_index::<String>(0)?);
                }
            }
            for (path, id) in files.iter().filter(|f| !mine.contains(&f.1)) {
                errors.push(FieldError::new(
                    path,
                    "not_found",
                    format!("no uploaded file with id {id:?}"),
                    format!("找不到文件 {id:?}"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Validation(errors))
        }
    }
}

/// A create entry stores only the values it set (the audit log is the biggest table);
/// show it as before/after like every other entry.
fn expand_changes(action: &str, changes: Value) -> Value {
    match (action, changes) {
        ("create", Value::Object(m)) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, json!({"before": null, "after": v})))
                .collect(),
        ),
        (_, c) => c,
    }
}

pub(crate) async fn read_for_update(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    entry: &FormEntry,
    id: &str,
    scope: Option<&Filter>,
) -> Result<Map<String, Value>, StoreError> {
    let proj = Projection::new(entry, None, &[])?;
    let mut s = proj.select(&entry.table);
    s.and_where(col(&entry.table, "id").eq(id));
    if let Some(f) = scope {
        s.cond_where(f.to_condition(dialect));
    }
    if dialect == Dialect::Postgres {
        s.lock(sea_orm::sea_query::LockType::Update);
    }
    match txn.query_one(&s).await? {
        Some(r) => proj.read(&r, dialect),
        None => Err(StoreError::RecordNotFound {
            form: entry.form.name.clone(),
            id: id.to_owned(),
        }),
    }
}

/// Two records of one batch with the same unique value: the second is refused.
fn check_unique_within(
    entry: &FormEntry,
    records: &[Map<String, Value>],
    batch: bool,
) -> Result<(), StoreError> {
    if records.len() < 2 {
        return Ok(());
    }
    for f in entry.form.fields.iter().filter(|f| f.unique) {
        let mut seen = HashSet::new();
        for (i, r) in records.iter().enumerate() {
            if let Some(v) = r.get(&f.name).filter(|v| !v.is_null())
                && !seen.insert(v.to_string())
            {
                let field = if batch {
                    format!("records[{i}].{}", f.name)
                } else {
                    f.name.clone()
                };
                return Err(StoreError::Unique { field });
            }
        }
    }
    Ok(())
}

/// Relation and user values must point at existing records.
async fn check_refs<C: ConnectionTrait>(
    c: &C,
    snap: &Snapshot,
    entry: &FormEntry,
    records: &[Map<String, Value>],
    batch: bool,
) -> Result<(), StoreError> {
    // An owner given by the client must be a user.
    let owners: HashSet<&str> = records
        .iter()
        .filter_map(|r| r.get("owner").and_then(Value::as_str))
        .collect();
    if !owners.is_empty() {
        let mut s = Query::select();
        s.column(Alias::new("id"))
            .from(Alias::new("trellis_users"))
            .and_where(Expr::col(Alias::new("id")).is_in(owners.iter().map(|s| (*s).to_owned())));
        let found: HashSet<String> = c
            .query_all(&s)
            .await?
            .iter()
            .filter_map(|r| r.try_get_by_index::<String>(0).ok())
            .collect();
        for (i, r) in records.iter().enumerate() {
            if let Some(o) = r
                .get("owner")
                .and_then(Value::as_str)
                .filter(|o| !found.contains(*o))
            {
                let field = if batch {
                    format!("records[{i}].owner")
                } else {
                    "owner".to_owned()
                };
                return Err(StoreError::Validation(vec![FieldError::new(
                    field,
                    "not_found",
                    format!("no user with id {o:?}"),
                    format!("找不到 id 为 {o:?} 的用户"),
                )]));
            }
        }
    }
    // Relations and users, at the top level and inside subtable lines.
    let mut refs: Vec<(String, String, &str, String)> = Vec::new();
    let prefix = |i: usize| {
        if batch {
            format!("records[{i}].")
        } else {
            String::new()
        }
    };
    let target = |f: &Field| -> Option<(String, String)> {
        match f.kind {
            FieldType::User => Some(("trellis_users".to_owned(), "user".to_owned())),
            FieldType::Relation => {
                let t = f.target.as_deref()?;
                snap.0
                    .get(t)
                    .map(|e| (e.table.clone(), format!("{t} record")))
            }
            _ => None,
        }
    };
    for (i, r) in records.iter().enumerate() {
        for f in &entry.form.fields {
            if let Some((table, what)) = target(f)
                && let Some(id) = r.get(&f.name).and_then(Value::as_str)
            {
                refs.push((format!("{}{}", prefix(i), f.name), table, id, what));
            }
            if f.kind == FieldType::Subtable
                && let Some(Value::Array(lines)) = r.get(&f.name)
            {
                for (j, line) in lines.iter().enumerate() {
                    for nf in &f.fields {
                        if let Some((table, what)) = target(nf)
                            && let Some(id) = line.get(&nf.name).and_then(Value::as_str)
                        {
                            refs.push((
                                format!("{}{}[{j}].{}", prefix(i), f.name, nf.name),
                                table,
                                id,
                                what,
                            ));
                        }
                    }
                }
            }
        }
    }
    let mut by_table: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (_, table, id, _) in &refs {
        by_table.entry(table.as_str()).or_default().insert(id);
    }
    let mut found: HashSet<(String, String)> = HashSet::new();
    for (table, ids) in by_table {
        let ids: Vec<&str> = ids.into_iter().collect();
        for chunk in ids.chunks(500) {
            let mut s = Query::select();
            s.column(Alias::new("id"))
                .from(Alias::new(table))
                .and_where(
                    Expr::col(Alias::new("id")).is_in(chunk.iter().map(|s| (*s).to_owned())),
                );
            for r in c.query_all(&s).await? {
                found.insert((table.to_owned(), r.try_get_by_index::<String>(0)?));
            }
        }
    }
    let missing: Vec<FieldError> = refs
        .iter()
        .filter(|(_, table, id, _)| !found.contains(&(table.clone(), (*id).to_owned())))
        .map(|(field, _, id, what)| {
            FieldError::new(
                field,
                "not_found",
                format!("no {what} with id {id:?}"),
                format!("找不到 id 为 {id:?} 的记录"),
            )
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Validation(missing))
    }
}

/// The next value of an autonumber counter, inside the write transaction (gap-free:
/// a rolled-back write rolls the counter back too).
async fn next_seq(
    txn: &DatabaseTransaction,
    form: &str,
    field: &str,
    scope: &str,
) -> Result<i64, StoreError> {
    let sql = format!(
        "INSERT INTO {SEQUENCES} (form, field, scope, value) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (form, field, scope) DO UPDATE SET value = {SEQUENCES}.value + 1 RETURNING value"
    );
    let backend = txn.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Sqlite {
        sql.replace('$', "?")
    } else {
        sql
    };
    let sql = if backend == sea_orm::DbBackend::Sqlite {
        sql.replace("?1", "?").replace("?2", "?").replace("?3", "?")
    } else {
        sql
    };
    let stmt = sea_orm::Statement::from_sql_and_values(
        backend,
        sql,
        [form.into(), field.into(), scope.into()],
    );
    let row = txn
        .query_one_raw(stmt)
        .await?
        .ok_or_else(|| StoreError::Corrupt("sequence returned nothing".into()))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_records(
    txn: &DatabaseTransaction,
    db: &Db,
    snap: &Snapshot,
    entry: &Arc<FormEntry>,
    mut prepared: Vec<Map<String, Value>>,
    actor: &Actor,
    now: DateTime<Utc>,
    batch: bool,
    block_duplicates: bool,
) -> Result<Vec<Map<String, Value>>, StoreError> {
    let dialect = db.dialect;
    let prefix = |i: usize| {
        if batch {
            format!("records[{i}].")
        } else {
            String::new()
        }
    };
    crate::files::resolve(txn, &entry.form.fields, &mut prepared, &prefix).await?;
    check_refs(txn, snap, entry, &prepared, batch).await?;
    if block_duplicates {
        crate::dedupe::block(txn, &entry.form, &prepared, &prefix).await?;
    }
    let form = &entry.form;
    let now_s = json!(format_datetime(&now));
    let autos: Vec<(String, autonumber::Format)> = form
        .fields
        .iter()
        .filter(|f| f.kind == FieldType::Autonumber)
        .filter_map(|f| {
            f.format
                .as_deref()
                .and_then(|s| autonumber::Format::parse(s).ok())
                .map(|fm| (f.name.clone(), fm))
        })
        .collect();
    let mut records = Vec::with_capacity(prepared.len());
    for mut values in prepared {
        let mut r = Map::with_capacity(6 + form.fields.len());
        r.insert("id".into(), json!(uuid::Uuid::now_v7().to_string()));
        r.insert("version".into(), json!(1));
        r.insert("created_at".into(), now_s.clone());
        r.insert("updated_at".into(), now_s.clone());
        r.insert(
            "created_by".into(),
            actor.user.clone().map(Value::String).unwrap_or(Value::Null),
        );
        let owner = values
            .remove("owner")
            .filter(|v| !v.is_null())
            .or_else(|| actor.user.clone().map(Value::String))
            .unwrap_or(Value::Null);
        r.insert("owner".into(), owner);
        for f in &form.fields {
            let v = values.remove(&f.name).unwrap_or(Value::Null);
            r.insert(f.name.clone(), canonical(field_kind(f), v));
        }
        for (name, fmt) in &autos {
            let scope = fmt.scope(now.date_naive());
            let n = next_seq(txn, &form.name, name, &scope).await?;
            r.insert(
                name.clone(),
                json!(fmt.render(now.date_naive(), u64::try_from(n).unwrap_or(0))),
            );
        }
        records.push(r);
    }
    // Columns: system columns then active fields, in the entry's order.
    let mut cols: Vec<(String, String, ValueKind)> = SYSTEM
        .iter()
        .map(|(n, k)| ((*n).to_owned(), (*n).to_owned(), *k))
        .collect();
    for f in &form.fields {
        if let Some((c, k)) = entry.column(&f.name) {
            cols.push((f.name.clone(), c.to_owned(), k));
        }
    }
    // Stay under SQLite's bound-parameter limit.
    let per_stmt = (30_000 / cols.len().max(1)).clamp(1, 500);
    let backend = txn.get_database_backend();
    let names: Vec<&str> = cols.iter().map(|(_, c, _)| c.as_str()).collect();
    let statement = |chunk: &[Map<String, Value>]| {
        let mut values = Vec::with_capacity(chunk.len() * cols.len());
        for r in chunk {
            for (name, _, kind) in &cols {
                let v = r.get(name).unwrap_or(&Value::Null);
                values.push(sql_value(*kind, v, dialect, name)?);
            }
        }
        Ok::<_, StoreError>((
            chunk.len(),
            crate::bulk::insert_statement(backend, &entry.table, &names, values),
        ))
    };
    let mut chunks = crate::bulk::runs(&records, per_stmt).into_iter();
    let mut next = chunks.next().map(statement).transpose()?;
    let mut offset = 0;
    while let Some((len, ins)) = next.take() {
        // The next statement is built while the database runs this one.
        let (done, built) = tokio::join!(txn.execute_raw(ins), async {
            chunks.next().map(statement).transpose()
        });
        if let Err(e) = done {
            let prefix = if batch && len == 1 {
                format!("records[{offset}].")
            } else {
                String::new()
            };
            return Err(map_write_err(entry, e, &prefix));
        }
        next = built?;
        offset += len;
    }
    let refs: Vec<(&str, &str, i64, &str, Value)> = records
        .iter()
        .map(|r| {
            let mut ch = Map::new();
            for f in &form.fields {
                if let Some(v) = r.get(&f.name).filter(|v| !v.is_null()) {
                    ch.insert(f.name.clone(), v.clone());
                }
            }
            if let Some(o) = r.get("owner").filter(|v| !v.is_null()) {
                ch.insert("owner".into(), o.clone());
            }
            let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
            (form.name.as_str(), id, 1, "create", Value::Object(ch))
        })
        .collect();
    // Duplicate keys are computed while the audit entries are written.
    let (audited, keyed) = tokio::join!(write_audit(txn, &db.watch, &refs, actor, now), async {
        if form.duplicates.is_empty() {
            return Vec::new();
        }
        records
            .iter()
            .map(|r| {
                let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
                (id.to_owned(), crate::dedupe::keys(form, r))
            })
            .collect::<Vec<(String, Vec<(String, String)>)>>()
    });
    audited?;
    if !keyed.is_empty() {
        crate::dedupe::write_keys(txn, &form.name, &keyed).await?;
    }
    Ok(records)
}

/// Append audit entries: (form, record id, version, action, changes). A change to a form
/// that workflows watch also goes to the outbox, in the same transaction.
pub(crate) async fn write_audit<C: ConnectionTrait>(
    c: &C,
    watch: &Watch,
    entries: &[(&str, &str, i64, &str, Value)],
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    // Each change is written as JSON once, for the audit and the outbox both.
    let texts: Vec<String> = entries.iter().map(|e| e.4.to_string()).collect();
    let at = format_datetime(&now);
    let backend = c.get_database_backend();
    let columns = [
        "form",
        "record_id",
        "version",
        "action",
        "actor",
        "at",
        "changes",
    ];
    let statement = |chunk: &[(&str, &str, i64, &str, Value)], texts: &[String]| {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * columns.len());
        for ((form, id, version, action, _), text) in chunk.iter().zip(texts) {
            values.extend([
                (*form).into(),
                (*id).into(),
                (*version).into(),
                (*action).into(),
                actor.user.clone().into(),
                at.clone().into(),
                text.clone().into(),
            ]);
        }
        crate::bulk::insert_statement(backend, AUDIT, &columns, values)
    };
    let mut chunks = crate::bulk::runs(entries, 2000)
        .into_iter()
        .zip(crate::bulk::runs(&texts, 2000))
        .map(|(e, t)| statement(e, t));
    // The audit statement is built while the outbox's is written.
    let (emitted, mut next) = tokio::join!(
        crate::events::emit(c, watch, entries, &texts, actor, now),
        async { chunks.next() }
    );
    emitted?;
    while let Some(ins) = next {
        c.execute_raw(ins).await?;
        next = chunks.next();
    }
    Ok(())
}

/// Records of `re` with a line of `sub` that points at `id` through `line_field`.
pub(crate) async fn find_lines(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    re: &FormEntry,
    sub: &Field,
    line_field: &Field,
    id: &str,
) -> Result<Vec<Map<String, Value>>, StoreError> {
    let Some((column, _)) = re.column(&sub.name) else {
        return Ok(Vec::new());
    };
    let contains = match dialect {
        Dialect::Postgres => Expr::cust_with_values(
            format!(
                "{}.{} @> $1",
                crate::forms::q(&re.table),
                crate::forms::q(column)
            ),
            [sea_orm::Value::Json(Some(Box::new(
                json!([{ line_field.name.clone(): id }]),
            )))],
        ),
        Dialect::Sqlite => Expr::cust_with_values(
            format!(
                "EXISTS (SELECT 1 FROM json_each({}.{}) AS je WHERE json_extract(je.value, ?) = ?)",
                crate::forms::q(&re.table),
                crate::forms::q(column)
            ),
            [
                sea_orm::Value::from(format!("$.{}", line_field.name)),
                sea_orm::Value::from(id.to_owned()),
            ],
        ),
    };
    let refs_proj = Projection::new(re, None, &[])?;
    let mut s = refs_proj.select(&re.table);
    s.and_where(contains);
    let rows = txn.query_all(&s).await?;
    let mut records = Vec::with_capacity(rows.len());
    for r in &rows {
        records.push(refs_proj.read(r, dialect)?);
    }
    Ok(records)
}

/// What becomes of a subtable line that points at a record.
#[derive(Clone, Copy)]
pub(crate) enum LineEdit<'a> {
    /// The line goes (the record it points at is deleted, cascading).
    Drop,
    /// The line stays, pointing at nothing.
    Clear,
    /// The line points at this record instead (a merge's survivor).
    Repoint(&'a str),
}

/// Rewrite the lines of `records` (found by [`find_lines`]) that point at `id`; each
/// record gets a new version and an update entry in the audit log.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn rewrite_lines(
    txn: &DatabaseTransaction,
    db: &Db,
    re: &FormEntry,
    sub: &Field,
    line_field: &Field,
    records: &[Map<String, Value>],
    id: &str,
    edit: LineEdit<'_>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let dialect = db.dialect;
    let Some((column, _)) = re.column(&sub.name) else {
        return Ok(());
    };
    let to = match edit {
        LineEdit::Repoint(to) => json!(to),
        LineEdit::Drop | LineEdit::Clear => Value::Null,
    };
    let mut audits = Vec::new();
    for m in records {
        let rid = m
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let before = m.get(&sub.name).cloned().unwrap_or(Value::Null);
        let mut lines = before.as_array().cloned().unwrap_or_default();
        let points = |l: &Value| l.get(&line_field.name).and_then(Value::as_str) == Some(id);
        if matches!(edit, LineEdit::Drop) {
            lines.retain(|l| !points(l));
        } else {
            for l in lines.iter_mut().filter(|l| points(l)) {
                if let Some(o) = l.as_object_mut() {
                    o.insert(line_field.name.clone(), to.clone());
                }
            }
        }
        let after = Value::Array(lines);
        let mut u = Query::update();
        u.table(Alias::new(&re.table))
            .value(
                Alias::new(column),
                sql_value(ValueKind::Json, &after, dialect, &sub.name)?,
            )
            .value(
                Alias::new("version"),
                Expr::col(Alias::new("version")).add(1),
            )
            .value(Alias::new("updated_at"), stamp(&now, dialect)?)
            .and_where(Expr::col(Alias::new("id")).eq(rid.as_str()));
        txn.execute(&u).await?;
        let v = m.get("version").and_then(Value::as_i64).unwrap_or(0) + 1;
        audits.push((
            rid,
            v,
            json!({ sub.name.clone(): {"before": before, "after": after} }),
        ));
    }
    audit_updates(txn, &db.watch, &re.form.name, &audits, actor, now).await
}

/// Audit `update` entries of one form: (record id, new version, changes).
pub(crate) async fn audit_updates(
    txn: &DatabaseTransaction,
    watch: &Watch,
    form: &str,
    audits: &[(String, i64, Value)],
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let entries: Vec<(&str, &str, i64, &str, Value)> = audits
        .iter()
        .map(|(rid, v, ch)| (form, rid.as_str(), *v, "update", ch.clone()))
        .collect();
    write_audit(txn, watch, &entries, actor, now).await
}

#[allow(clippy::too_many_arguments)]
fn delete_in<'a>(
    txn: &'a DatabaseTransaction,
    db: &'a Db,
    snap: &'a Snapshot,
    entry: Arc<FormEntry>,
    current: Map<String, Value>,
    actor: &'a Actor,
    now: DateTime<Utc>,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'a>> {
    Box::pin(async move {
        let dialect = db.dialect;
        if depth > CASCADE_DEPTH {
            return Err(StoreError::Conflict {
                field: entry.form.name.clone(),
                code: "cascade_too_deep",
                message: format!("cascading deletes go deeper than {CASCADE_DEPTH} levels"),
                rows: vec![],
            });
        }
        let id = current
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for (re, field) in snap.referrers(&entry.form.name) {
            let Some((column, _)) = re.column(&field.name) else {
                continue;
            };
            let column = column.to_owned();
            let refs_proj = Projection::new(&re, None, &[])?;
            let mut s = refs_proj.select(&re.table);
            s.and_where(col(&re.table, &column).eq(id.as_str()));
            if re.form.name == entry.form.name {
                s.and_where(col(&re.table, "id").ne(id.as_str()));
            }
            let rows = txn.query_all(&s).await?;
            if rows.is_empty() {
                continue;
            }
            match field.on_delete_policy() {
                OnDelete::Restrict => {
                    let blocking = rows
                        .iter()
                        .take(20)
                        .filter_map(|r| refs_proj.read(r, dialect).ok())
                        .map(|m| BlockingRow {
                            id: m
                                .get("id")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            value: json!(id),
                            reason: format!(
                                "{}.{} points at this record",
                                re.form.name, field.name
                            ),
                        })
                        .collect();
                    return Err(StoreError::Conflict {
                        field: format!("{}.{}", re.form.name, field.name),
                        code: "restricted",
                        message: format!(
                            "{} {} record(s) point at this record through {}",
                            rows.len(),
                            re.form.name,
                            field.name
                        ),
                        rows: blocking,
                    });
                }
                OnDelete::SetNull => {
                    let mut audits = Vec::new();
                    for r in &rows {
                        let m = refs_proj.read(r, dialect)?;
                        let rid = m
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        let v = m.get("version").and_then(Value::as_i64).unwrap_or(0) + 1;
                        audits.push((rid, v));
                    }
                    let mut u = Query::update();
                    u.table(Alias::new(&re.table))
                        .value(
                            Alias::new(&column),
                            sql_value(field_kind(&field), &Value::Null, dialect, &field.name)?,
                        )
                        .value(
                            Alias::new("version"),
                            Expr::col(Alias::new("version")).add(1),
                        )
                        .value(Alias::new("updated_at"), stamp(&now, dialect)?)
                        .and_where(Expr::col(Alias::new(&column)).eq(id.as_str()));
                    txn.execute(&u).await?;
                    let ch = json!({ field.name.clone(): {"before": id, "after": null} });
                    let audits: Vec<(String, i64, Value)> = audits
                        .into_iter()
                        .map(|(rid, v)| (rid, v, ch.clone()))
                        .collect();
                    audit_updates(txn, &db.watch, &re.form.name, &audits, actor, now).await?;
                }
                OnDelete::Cascade => {
                    for r in &rows {
                        let m = refs_proj.read(r, dialect)?;
                        delete_in(txn, db, snap, re.clone(), m, actor, now, depth + 1).await?;
                    }
                }
            }
        }
        // Relations inside subtable lines: restrict, or clear or drop the lines.
        for (re, sub, line_field) in snap.line_referrers(&entry.form.name) {
            let records = find_lines(txn, dialect, &re, &sub, &line_field, &id).await?;
            if records.is_empty() {
                continue;
            }
            let path = format!("{}.{}[].{}", re.form.name, sub.name, line_field.name);
            match line_field.on_delete_policy() {
                OnDelete::Restrict => {
                    return Err(StoreError::Conflict {
                        field: path.clone(),
                        code: "restricted",
                        message: format!(
                            "{} {} record(s) have lines that point at this record through {path}",
                            records.len(),
                            re.form.name
                        ),
                        rows: records
                            .iter()
                            .take(20)
                            .map(|m| BlockingRow {
                                id: m
                                    .get("id")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_owned(),
                                value: json!(id),
                                reason: format!("a line of {path} points at this record"),
                            })
                            .collect(),
                    });
                }
                policy => {
                    let edit = if policy == OnDelete::Cascade {
                        LineEdit::Drop
                    } else {
                        LineEdit::Clear
                    };
                    rewrite_lines(
                        txn,
                        db,
                        &re,
                        &sub,
                        &line_field,
                        &records,
                        &id,
                        edit,
                        actor,
                        now,
                    )
                    .await?;
                }
            }
        }
        let mut d = Query::delete();
        d.from_table(Alias::new(&entry.table))
            .and_where(Expr::col(Alias::new("id")).eq(id.as_str()));
        if txn.execute(&d).await?.rows_affected() == 0 {
            // Already deleted through another path of the same cascade.
            return Ok(());
        }
        if !entry.form.duplicates.is_empty() {
            crate::dedupe::delete_keys(txn, &entry.form.name, std::slice::from_ref(&id)).await?;
        }
        let mut before = Map::new();
        for (k, v) in &current {
            if !v.is_null()
                && !matches!(
                    k.as_str(),
                    "id" | "version" | "created_at" | "updated_at" | "created_by"
                )
            {
                before.insert(k.clone(), json!({"before": v, "after": null}));
            }
        }
        let version = current.get("version").and_then(Value::as_i64).unwrap_or(0) + 1;
        write_audit(
            txn,
            &db.watch,
            &[(
                entry.form.name.as_str(),
                id.as_str(),
                version,
                "delete",
                Value::Object(before),
            )],
            actor,
            now,
        )
        .await?;
        Ok(())
    })
}
