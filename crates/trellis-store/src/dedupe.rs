//! Duplicate detection: every record's normalized key per rule of its form is kept in one
//! table, written in the same transaction as the record, so a match is an index lookup.

use std::collections::{HashMap, HashSet};

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use serde::Serialize;
use serde_json::{Map, Value, json};
use trellis_access::Permissions;
use trellis_meta::Form;
use trellis_meta::dedupe::OnCreate;
use trellis_meta::role::Action;

use crate::Store;
use crate::access;
use crate::error::{BlockingRow, StoreError};
use crate::forms::FormEntry;
use crate::migrate::MATCH_KEYS;
use trellis_query::Dialect;

/// The keys of one record: (rule, key).
pub(crate) fn keys(form: &Form, record: &Map<String, Value>) -> Vec<(String, String)> {
    form.duplicates
        .iter()
        .filter_map(|r| r.key(form, record).map(|k| (r.name.clone(), k)))
        .collect()
}

/// Store the keys of new records: (record id, its keys).
pub(crate) async fn write_keys<C: ConnectionTrait>(
    c: &C,
    form: &str,
    records: &[(String, Vec<(String, String)>)],
) -> Result<(), StoreError> {
    let rows: Vec<(&str, &str, &str)> = records
        .iter()
        .flat_map(|(id, ks)| {
            ks.iter()
                .map(move |(r, k)| (id.as_str(), r.as_str(), k.as_str()))
        })
        .collect();
    let backend = c.get_database_backend();
    let columns = ["form", "record_id", "rule", "key"];
    for chunk in crate::bulk::runs(&rows, 5000) {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * columns.len());
        for (id, rule, key) in chunk {
            values.extend([form.into(), (*id).into(), (*rule).into(), (*key).into()]);
        }
        c.execute_raw(crate::bulk::insert_statement(
            backend, MATCH_KEYS, &columns, values,
        ))
        .await?;
    }
    Ok(())
}

/// Forget the keys of records (deleted, or about to be re-keyed).
pub(crate) async fn delete_keys<C: ConnectionTrait>(
    c: &C,
    form: &str,
    ids: &[String],
) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        let mut d = Query::delete();
        d.from_table(Alias::new(MATCH_KEYS))
            .and_where(Expr::col(Alias::new("form")).eq(form))
            .and_where(Expr::col(Alias::new("record_id")).is_in(chunk.iter().cloned()));
        c.execute(&d).await?;
    }
    Ok(())
}

/// Re-key one record after a change to any of the fields its rules read.
pub(crate) async fn rekey<C: ConnectionTrait>(
    c: &C,
    form: &Form,
    id: &str,
    record: &Map<String, Value>,
    changed: &[&str],
) -> Result<(), StoreError> {
    let reads = |f: &str| {
        form.duplicates
            .iter()
            .any(|r| r.fields.iter().any(|m| m.field == f))
    };
    if !changed.iter().any(|f| reads(f)) {
        return Ok(());
    }
    let ids = [id.to_owned()];
    delete_keys(c, &form.name, &ids).await?;
    write_keys(c, &form.name, &[(id.to_owned(), keys(form, record))]).await
}

/// The records holding each of `keys` under `rule`: key → record ids, oldest first.
pub(crate) async fn find<C: ConnectionTrait>(
    c: &C,
    form: &str,
    rule: &str,
    keys: &[&str],
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut wanted: Vec<&str> = keys.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    for chunk in crate::bulk::runs(&wanted, 500) {
        let mut s = Query::select();
        s.columns(["key", "record_id"].map(Alias::new))
            .from(Alias::new(MATCH_KEYS))
            .and_where(Expr::col(Alias::new("form")).eq(form))
            .and_where(Expr::col(Alias::new("rule")).eq(rule))
            .and_where(Expr::col(Alias::new("key")).is_in(chunk.iter().map(|k| (*k).to_owned())))
            .order_by(Alias::new("record_id"), Order::Asc);
        for row in c.query_all(&s).await? {
            let key: String = row.try_get_by_index(0)?;
            out.entry(key).or_default().push(row.try_get_by_index(1)?);
        }
    }
    Ok(out)
}

/// Refuse new records that a `block` rule says already exist (in the table or earlier in
/// the same batch). `prefix(i)` names the record in errors.
pub(crate) async fn block<C: ConnectionTrait>(
    c: &C,
    form: &Form,
    records: &[Map<String, Value>],
    prefix: &(dyn Fn(usize) -> String + Sync),
) -> Result<(), StoreError> {
    for rule in form
        .duplicates
        .iter()
        .filter(|r| r.on_create == OnCreate::Block)
    {
        let ks: Vec<Option<String>> = records.iter().map(|r| rule.key(form, r)).collect();
        let present: Vec<&str> = ks.iter().flatten().map(String::as_str).collect();
        if present.is_empty() {
            continue;
        }
        let found = find(c, &form.name, &rule.name, &present).await?;
        let mut seen: HashSet<&str> = HashSet::new();
        for (i, k) in ks.iter().enumerate() {
            let Some(k) = k.as_deref() else { continue };
            let field = rule.fields.first().map(|f| f.field.as_str()).unwrap_or("");
            let existing = found.get(k).cloned().unwrap_or_default();
            if !existing.is_empty() || !seen.insert(k) {
                return Err(StoreError::Conflict {
                    field: format!("{}{field}", prefix(i)),
                    code: "duplicate",
                    message: format!(
                        "a record matching this one by the rule {:?} already exists",
                        rule.name
                    ),
                    rows: existing
                        .into_iter()
                        .map(|id| BlockingRow {
                            id,
                            value: json!(k),
                            reason: rule.name.clone(),
                        })
                        .collect(),
                });
            }
        }
    }
    Ok(())
}

/// Records sharing a key under one rule.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateGroup {
    /// The rule that matched.
    pub rule: String,
    /// The normalized key they share.
    pub key: String,
    /// The records, oldest first.
    pub ids: Vec<String>,
}

impl Store {
    /// Every group of records the form's duplicate rules match, among those the caller
    /// may read (a group needs two readable records).
    pub async fn duplicate_groups(
        &self,
        form: &str,
        rule: Option<&str>,
        limit: usize,
        perms: &Permissions,
    ) -> Result<Vec<DuplicateGroup>, StoreError> {
        let snap = self.registry.snapshot();
        let entry = snap.get(form)?;
        if let Some(r) = rule
            && !entry.form.duplicates.iter().any(|d| d.name == r)
        {
            return Err(StoreError::field(
                "rule",
                "unknown_rule",
                format!("the form {form} has no duplicate rule {r:?}"),
                format!("表单 {form} 没有查重规则 {r:?}"),
            ));
        }
        let scope = access::rows(perms, &snap, form, Action::Read)?;
        let t = &entry.table;
        let k = |c: &str| Expr::col((Alias::new("k"), Alias::new(c)));
        let mut s = Query::select();
        s.expr(k("rule"))
            .expr(k("key"))
            .expr(k("record_id"))
            .from_as(Alias::new(MATCH_KEYS), Alias::new("k"))
            .inner_join(
                Alias::new(t),
                Expr::col((Alias::new(t), Alias::new("id")))
                    .equals((Alias::new("k"), Alias::new("record_id"))),
            )
            .and_where(k("form").eq(form))
            .and_where(
                Expr::tuple([k("rule"), k("key")]).in_subquery(
                    Query::select()
                        .columns(["rule", "key"].map(Alias::new))
                        .from(Alias::new(MATCH_KEYS))
                        .and_where(Expr::col(Alias::new("form")).eq(form))
                        .group_by_columns(["rule", "key"].map(Alias::new))
                        .and_having(Expr::col(Alias::new("record_id")).count().gt(1))
                        .to_owned(),
                ),
            )
            .order_by((Alias::new("k"), Alias::new("rule")), Order::Asc)
            .order_by((Alias::new("k"), Alias::new("key")), Order::Asc)
            .order_by((Alias::new("k"), Alias::new("record_id")), Order::Asc);
        if let Some(r) = rule {
            s.and_where(k("rule").eq(r));
        }
        if let Some(f) = scope {
            s.cond_where(f.to_condition(self.db.dialect));
        }
        let mut groups: Vec<DuplicateGroup> = Vec::new();
        for row in self.db.reader.query_all(&s).await? {
            let (rule, key, id): (String, String, String) = (
                row.try_get_by_index(0)?,
                row.try_get_by_index(1)?,
                row.try_get_by_index(2)?,
            );
            match groups.last_mut() {
                Some(g) if g.rule == rule && g.key == key => g.ids.push(id),
                _ => groups.push(DuplicateGroup {
                    rule,
                    key,
                    ids: vec![id],
                }),
            }
        }
        groups.retain(|g| g.ids.len() > 1);
        // The key is a normalized value: not shown when a field it comes from is hidden.
        for g in &mut groups {
            let hidden = entry.form.duplicates.iter().any(|r| {
                r.name == g.rule
                    && r.fields
                        .iter()
                        .any(|m| !access::visible(perms, form, &m.field))
            });
            if hidden {
                g.key.clear();
            }
        }
        groups.truncate(limit);
        Ok(groups)
    }

    /// The readable records other than `id` that `record` matches, per rule.
    pub async fn duplicates_of(
        &self,
        form: &str,
        id: &str,
        record: &Map<String, Value>,
        perms: &Permissions,
    ) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let snap = self.registry.snapshot();
        let entry = snap.get(form)?;
        let mut out = Vec::new();
        // Only `warn` rules: a `block` rule's match was refused before it was written.
        let warns: Vec<&str> = entry
            .form
            .duplicates
            .iter()
            .filter(|r| r.on_create == OnCreate::Warn)
            .map(|r| r.name.as_str())
            .collect();
        if warns.is_empty() {
            return Ok(out);
        }
        for (rule, key) in keys(&entry.form, record) {
            if !warns.contains(&rule.as_str()) {
                continue;
            }
            let found = find(&self.db.reader, form, &rule, &[key.as_str()]).await?;
            let ids: Vec<String> = found
                .into_values()
                .flatten()
                .filter(|other| other != id)
                .collect();
            let ids = self.readable(form, ids, perms).await?;
            if !ids.is_empty() {
                out.push((rule, ids));
            }
        }
        Ok(out)
    }

    /// Those of `ids` the caller may read.
    pub(crate) async fn readable(
        &self,
        form: &str,
        ids: Vec<String>,
        perms: &Permissions,
    ) -> Result<Vec<String>, StoreError> {
        self.readable_on(&self.db.reader, form, ids, perms).await
    }

    /// Those of `ids` the caller may read, seen over `c` (a transaction sees its own rows).
    pub(crate) async fn readable_on<C: ConnectionTrait>(
        &self,
        c: &C,
        form: &str,
        ids: Vec<String>,
        perms: &Permissions,
    ) -> Result<Vec<String>, StoreError> {
        let snap = self.registry.snapshot();
        let Some(scope) = access::rows(perms, &snap, form, Action::Read)? else {
            return Ok(ids);
        };
        if ids.is_empty() {
            return Ok(ids);
        }
        let entry = snap.get(form)?;
        let mut s = Query::select();
        s.expr(Expr::col((Alias::new(&entry.table), Alias::new("id"))))
            .from(Alias::new(&entry.table))
            .and_where(Expr::col((Alias::new(&entry.table), Alias::new("id"))).is_in(ids.clone()))
            .cond_where(scope.to_condition(self.db.dialect));
        let mut ok = HashSet::new();
        for row in c.query_all(&s).await? {
            ok.insert(row.try_get_by_index::<String>(0)?);
        }
        Ok(ids.into_iter().filter(|i| ok.contains(i)).collect())
    }
}

/// Recompute every key of a form (its rules changed) over `c`, inside the change's
/// transaction.
pub(crate) async fn rebuild<C: ConnectionTrait>(
    c: &C,
    entry: &FormEntry,
) -> Result<u64, StoreError> {
    let dialect = if c.get_database_backend() == sea_orm::DbBackend::Postgres {
        Dialect::Postgres
    } else {
        Dialect::Sqlite
    };
    let form = entry.form.name.as_str();
    let mut d = Query::delete();
    d.from_table(Alias::new(MATCH_KEYS))
        .and_where(Expr::col(Alias::new("form")).eq(form));
    c.execute(&d).await?;
    if entry.form.duplicates.is_empty() {
        return Ok(0);
    }
    let mut done = 0u64;
    let mut after = String::new();
    loop {
        let page = crate::records::read_page(c, dialect, entry, &after, 2000).await?;
        let Some(last) = page
            .last()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
        else {
            break;
        };
        after = last.to_owned();
        let batch: Vec<(String, Vec<(String, String)>)> = page
            .iter()
            .map(|r| {
                (
                    r.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    keys(&entry.form, r),
                )
            })
            .collect();
        write_keys(c, form, &batch).await?;
        done += page.len() as u64;
    }
    Ok(done)
}

impl Store {
    /// A `block` rule's refusal names only the matching records the caller may read.
    pub(crate) async fn redact_duplicate(
        &self,
        form: &str,
        e: StoreError,
        perms: &Permissions,
    ) -> StoreError {
        match e {
            StoreError::Conflict {
                field,
                code: "duplicate",
                message,
                rows,
            } if !perms.may_inspect() => {
                let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
                let ok = self.readable(form, ids, perms).await.unwrap_or_default();
                StoreError::Conflict {
                    field,
                    code: "duplicate",
                    message,
                    rows: rows.into_iter().filter(|r| ok.contains(&r.id)).collect(),
                }
            }
            e => e,
        }
    }
}
