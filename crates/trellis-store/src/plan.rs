//! Online schema change: the plan that turns a form's current table into the one a new
//! definition needs, checked against every stored value before anything is applied.
//! Nothing is dropped: removed fields are hidden, retyped fields move to a new column and
//! the old column is kept.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, Table};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde::Serialize;
use serde_json::{Value, json};
use trellis_meta::FieldValidator;
use trellis_meta::form::{Field, FieldType, Form};
use trellis_query::value::{format_datetime, parse_datetime};
use trellis_query::{Dialect, ValueKind};

use crate::db::Db;
use crate::db::Watch;
use crate::entity::form as form_e;
use crate::error::{BlockingRow, StoreError};
use crate::forms::{
    ColumnInfo, ColumnState, FormEntry, Registry, check_new, column_def, drop_index_sqls,
    field_kind, index_sqls, kind_name, parse_kind, q, save_version, wants_index,
};
use crate::records::{Actor, write_audit};
use crate::row::decode;

/// One step of a schema change.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// A new column for a new field.
    AddField {
        /// Field.
        field: String,
        /// New column.
        column: String,
        /// Existing records get the default.
        backfill: bool,
    },
    /// A removed field: its column and data stay, invisible, until a purge.
    HideField {
        /// Field.
        field: String,
        /// Column kept.
        column: String,
    },
    /// A field that was hidden comes back with its data.
    RestoreField {
        /// Field.
        field: String,
        /// Column restored.
        column: String,
    },
    /// A type change: values are converted into a new column; the old one is kept.
    Retype {
        /// Field.
        field: String,
        /// Old type.
        from: String,
        /// New type.
        to: String,
        /// Old column (kept, retired).
        from_column: String,
        /// New column.
        to_column: String,
        /// Records converted.
        rows: u64,
    },
    /// Settings that constrain values changed; every stored value was checked.
    Constrain {
        /// Field.
        field: String,
        /// Records checked.
        rows: u64,
    },
    /// Labels, descriptions or other display settings changed.
    Relabel {
        /// Field (empty for the form itself).
        field: String,
    },
    /// An index is created.
    CreateIndex {
        /// Field.
        field: String,
        /// Unique?
        unique: bool,
    },
    /// An index is dropped.
    DropIndex {
        /// Field.
        field: String,
        /// Unique?
        unique: bool,
    },
}

/// Values that stop a change, with the rows that hold them.
#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    /// Field.
    pub field: String,
    /// Stable code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// How many records block.
    pub total: u64,
    /// Up to 20 of them.
    pub rows: Vec<BlockingRow>,
}

/// A planned schema change.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Form.
    pub form: String,
    /// Current version.
    pub from_version: i64,
    /// Version after the change.
    pub to_version: i64,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// What stops the change (empty when it can be applied).
    pub blockers: Vec<Blocker>,
    /// Whether the change was applied.
    pub applied: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Work {
    Add {
        field: Field,
        column: String,
    },
    Retype {
        field: Field,
        new_column: String,
        values: Vec<(String, Value)>,
    },
    Index {
        column: String,
        unique: bool,
        create: bool,
    },
}

fn display_only(mut f: Field) -> Field {
    f.label.clear();
    f.description = None;
    for o in &mut f.options {
        o.label.clear();
        o.color = None;
        o.description = None;
        o.description = None;
    }
    for s in &mut f.fields {
        *s = display_only(s.clone());
    }
    f
}

fn fresh_column(columns: &[ColumnInfo], base: &str) -> String {
    let taken: HashSet<&str> = columns.iter().map(|c| c.column.as_str()).collect();
    if !taken.contains(base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base}_{n}"))
        .find(|c| !taken.contains(c.as_str()))
        .unwrap_or_else(|| format!("{base}_x"))
}

/// Convert a stored value to a field of another type; None when it cannot be.
pub fn convert(v: &Value, to: &Field) -> Option<Value> {
    let t = to.storage_type();
    if v.is_null() {
        return Some(Value::Null);
    }
    let num_text = |n: &serde_json::Number| match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => format!("{}", f as i64),
        _ => n.to_string(),
    };
    match t {
        FieldType::Json => Some(v.clone()),
        FieldType::Text
        | FieldType::Textarea
        | FieldType::Email
        | FieldType::Phone
        | FieldType::Url
        | FieldType::Select => match v {
            Value::String(s) => Some(Value::String(s.clone())),
            Value::Number(n) => Some(Value::String(num_text(n))),
            Value::Bool(b) => Some(Value::String(b.to_string())),
            Value::Array(a) if a.len() == 1 => a[0].as_str().map(|s| Value::String(s.to_owned())),
            Value::Array(a) if t != FieldType::Select && a.iter().all(Value::is_string) => {
                Some(Value::String(
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                ))
            }
            _ => None,
        },
        FieldType::Integer => match v {
            Value::Number(n) => n.as_i64().map(Value::from).or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| Value::from(f as i64))
            }),
            Value::String(s) => s
                .trim()
                .replace(',', "")
                .parse::<i64>()
                .ok()
                .map(Value::from),
            Value::Bool(b) => Some(Value::from(i64::from(*b))),
            _ => None,
        },
        FieldType::Decimal | FieldType::Currency => match v {
            Value::Number(n) => n.as_f64().map(Value::from),
            Value::String(s) => s
                .trim()
                .replace(',', "")
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::from),
            _ => None,
        },
        FieldType::Boolean => match v {
            Value::Bool(b) => Some(Value::Bool(*b)),
            Value::Number(n) => match n.as_f64() {
                Some(0.0) => Some(Value::Bool(false)),
                Some(1.0) => Some(Value::Bool(true)),
                _ => None,
            },
            Value::String(s) => match s.trim().to_lowercase().as_str() {
                "true" | "yes" | "y" | "1" | "是" => Some(Value::Bool(true)),
                "false" | "no" | "n" | "0" | "否" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => None,
        },
        FieldType::Date => {
            let s = v.as_str()?.trim();
            if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return Some(json!(d.to_string()));
            }
            let dt = parse_datetime(s)?;
            (dt.time() == chrono::NaiveTime::MIN).then(|| json!(dt.date_naive().to_string()))
        }
        FieldType::Datetime => {
            parse_datetime(v.as_str()?.trim()).map(|d| json!(format_datetime(&d)))
        }
        FieldType::Multiselect => match v {
            Value::String(s) => Some(json!([s])),
            Value::Array(a) if a.iter().all(Value::is_string) => Some(v.clone()),
            _ => None,
        },
        _ => None,
    }
}

async fn scan<C: ConnectionTrait>(
    c: &C,
    dialect: Dialect,
    table: &str,
    column: &str,
    kind: ValueKind,
) -> Result<Vec<(String, Value)>, StoreError> {
    let mut s = Query::select();
    s.column(Alias::new("id"))
        .column(Alias::new(column))
        .from(Alias::new(table))
        .order_by(Alias::new("id"), sea_orm::Order::Asc);
    let rows = c.query_all(&s).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get_by_index::<String>(0)?,
                decode(r, 1, kind, dialect)?,
            ))
        })
        .collect()
}

fn blocker(field: &str, code: &'static str, message: String, bad: Vec<BlockingRow>) -> Blocker {
    let total = bad.len() as u64;
    Blocker {
        field: field.to_owned(),
        code,
        message,
        total,
        rows: bad.into_iter().take(20).collect(),
    }
}

fn check_values(f: &Field, values: &[(String, Value)]) -> Result<Vec<BlockingRow>, StoreError> {
    let v = FieldValidator::new(f).map_err(|e| StoreError::Definition(vec![e]))?;
    let mut bad = Vec::new();
    for (id, val) in values {
        if let Err(e) = v.check(val) {
            bad.push(BlockingRow {
                id: id.clone(),
                value: val.clone(),
                reason: e.message,
            });
        }
    }
    if f.unique {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (id, val) in values.iter().filter(|(_, v)| !v.is_null()) {
            if let Some(first) = seen.insert(val.to_string(), id) {
                bad.push(BlockingRow {
                    id: id.clone(),
                    value: val.clone(),
                    reason: format!("the same value as record {first}"),
                });
            }
        }
    }
    Ok(bad)
}

/// Plan the indexes a field wants on a column it just got.
fn index_new_column(nf: &Field, column: &str, steps: &mut Vec<Step>, work: &mut Vec<Work>) {
    let (plain, unique) = wants_index(nf);
    if plain || unique {
        steps.push(Step::CreateIndex {
            field: nf.name.clone(),
            unique,
        });
        work.push(Work::Index {
            column: column.to_owned(),
            unique,
            create: true,
        });
    }
}

/// Work out the plan for `new` against `entry`, reading stored values through `c`.
pub(crate) async fn make_plan<C: ConnectionTrait>(
    c: &C,
    dialect: Dialect,
    entry: &FormEntry,
    new: &Form,
) -> Result<(Plan, Vec<Work>, Vec<ColumnInfo>), StoreError> {
    let mut steps = Vec::new();
    let mut blockers = Vec::new();
    let mut work = Vec::new();
    let mut columns = entry.columns.clone();
    let rows = crate::records::count_all(c, &entry.table).await?;
    if new.label != entry.form.label
        || new.description != entry.form.description
        || new.title_field != entry.form.title_field
    {
        steps.push(Step::Relabel {
            field: String::new(),
        });
    }
    for nf in &new.fields {
        let active = columns
            .iter()
            .position(|c| c.field == nf.name && c.state == ColumnState::Active);
        let hidden = columns
            .iter()
            .position(|c| c.field == nf.name && c.state == ColumnState::Hidden);
        let new_kind = field_kind(nf);
        let (pos, old_field) = match (active, hidden) {
            (Some(p), _) => (Some(p), entry.form.field(&nf.name).cloned()),
            (None, Some(p)) => (Some(p), columns[p].last.clone()),
            (None, None) => (None, None),
        };
        let Some(pos) = pos else {
            let column = fresh_column(&columns, &nf.name);
            let backfill = nf.default.is_some() && rows > 0;
            if nf.required && nf.default.is_none() && rows > 0 {
                blockers.push(Blocker {
                    field: nf.name.clone(),
                    code: "required_without_default",
                    message: format!(
                        "a new required field needs a default: {rows} records would have no value"
                    ),
                    total: rows,
                    rows: vec![],
                });
            }
            steps.push(Step::AddField {
                field: nf.name.clone(),
                column: column.clone(),
                backfill,
            });
            index_new_column(nf, &column, &mut steps, &mut work);
            columns.push(ColumnInfo {
                column: column.clone(),
                kind: kind_name(new_kind).to_owned(),
                field: nf.name.clone(),
                state: ColumnState::Active,
                last: None,
            });
            work.insert(
                0,
                Work::Add {
                    field: nf.clone(),
                    column,
                },
            );
            continue;
        };
        let old_col = columns[pos].clone();
        let old_kind = parse_kind(&old_col.kind).unwrap_or(ValueKind::Text);
        let old_field = old_field.unwrap_or_else(|| nf.clone());
        let restoring = old_col.state == ColumnState::Hidden;
        if old_kind != new_kind {
            // Type change: convert every value into a new column.
            let values = scan(c, dialect, &entry.table, &old_col.column, old_kind).await?;
            let mut converted = Vec::with_capacity(values.len());
            let mut bad = Vec::new();
            for (id, v) in &values {
                match convert(v, nf) {
                    Some(nv) => converted.push((id.clone(), nv)),
                    None => bad.push(BlockingRow {
                        id: id.clone(),
                        value: v.clone(),
                        reason: format!("cannot be converted to {}", nf.kind.as_str()),
                    }),
                }
            }
            bad.extend(check_values(nf, &converted)?);
            if !bad.is_empty() {
                blockers.push(blocker(
                    &nf.name,
                    "lossy_change",
                    format!(
                        "{} of {} records cannot become {}",
                        bad.len(),
                        values.len(),
                        nf.kind.as_str()
                    ),
                    bad,
                ));
            }
            let new_column = fresh_column(&columns, &nf.name);
            steps.push(Step::Retype {
                field: nf.name.clone(),
                from: old_field.kind.as_str().to_owned(),
                to: nf.kind.as_str().to_owned(),
                from_column: old_col.column.clone(),
                to_column: new_column.clone(),
                rows: values.len() as u64,
            });
            columns[pos].state = ColumnState::Retired;
            columns[pos].last = Some(old_field.clone());
            columns.push(ColumnInfo {
                column: new_column.clone(),
                kind: kind_name(new_kind).to_owned(),
                field: nf.name.clone(),
                state: ColumnState::Active,
                last: None,
            });
            let (op, ou) = wants_index(&old_field);
            if (op || ou) && !restoring {
                work.push(Work::Index {
                    column: old_col.column.clone(),
                    unique: ou,
                    create: false,
                });
            }
            index_new_column(nf, &new_column, &mut steps, &mut work);
            work.insert(
                0,
                Work::Retype {
                    field: nf.clone(),
                    new_column,
                    values: converted,
                },
            );
            continue;
        }
        if restoring {
            steps.push(Step::RestoreField {
                field: nf.name.clone(),
                column: old_col.column.clone(),
            });
            columns[pos].state = ColumnState::Active;
            columns[pos].last = None;
        }
        if display_only(old_field.clone()) != display_only(nf.clone()) || restoring {
            let values = scan(c, dialect, &entry.table, &old_col.column, old_kind).await?;
            let bad = check_values(nf, &values)?;
            if !bad.is_empty() {
                blockers.push(blocker(
                    &nf.name,
                    "values_violate",
                    format!(
                        "{} records hold values the new definition refuses",
                        bad.len()
                    ),
                    bad,
                ));
            }
            steps.push(Step::Constrain {
                field: nf.name.clone(),
                rows: values.len() as u64,
            });
        } else if old_field != *nf {
            steps.push(Step::Relabel {
                field: nf.name.clone(),
            });
        }
        let (op, ou) = if restoring {
            (false, false)
        } else {
            wants_index(&old_field)
        };
        let (np, nu) = wants_index(nf);
        for (was, now, unique) in [(op, np, false), (ou, nu, true)] {
            if was != now {
                if now {
                    steps.push(Step::CreateIndex {
                        field: nf.name.clone(),
                        unique,
                    });
                } else {
                    steps.push(Step::DropIndex {
                        field: nf.name.clone(),
                        unique,
                    });
                }
                work.push(Work::Index {
                    column: old_col.column.clone(),
                    unique,
                    create: now,
                });
            }
        }
    }
    for of in &entry.form.fields {
        if new.field(&of.name).is_none()
            && let Some(c) = columns
                .iter_mut()
                .find(|c| c.field == of.name && c.state == ColumnState::Active)
        {
            c.state = ColumnState::Hidden;
            c.last = Some(of.clone());
            steps.push(Step::HideField {
                field: of.name.clone(),
                column: c.column.clone(),
            });
        }
    }
    let plan = Plan {
        form: new.name.clone(),
        from_version: entry.version,
        to_version: entry.version + 1,
        steps,
        blockers,
        applied: false,
    };
    Ok((plan, work, columns))
}

pub(crate) async fn apply(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    entry: &FormEntry,
    work: &[Work],
) -> Result<(), StoreError> {
    let now = Utc::now();
    for w in work {
        match w {
            Work::Add { field, column } => {
                txn.execute(
                    Table::alter()
                        .table(Alias::new(&entry.table))
                        .add_column(column_def(column, field_kind(field), dialect)),
                )
                .await?;
                if let Some(d) = &field.default {
                    let d = match (field.kind, d.as_str()) {
                        (FieldType::Date, Some("$today" | "$now")) => {
                            json!(now.date_naive().to_string())
                        }
                        (FieldType::Datetime, Some("$now" | "$today")) => {
                            json!(format_datetime(&now))
                        }
                        _ => d.clone(),
                    };
                    let v = trellis_query::value::to_sql(field_kind(field), &d, dialect)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let mut u = Query::update();
                    u.table(Alias::new(&entry.table))
                        .value(Alias::new(column), v);
                    txn.execute(&u).await?;
                }
            }
            Work::Retype {
                field,
                new_column,
                values,
                ..
            } => {
                let kind = field_kind(field);
                txn.execute(
                    Table::alter()
                        .table(Alias::new(&entry.table))
                        .add_column(column_def(new_column, kind, dialect)),
                )
                .await?;
                for (id, v) in values.iter().filter(|(_, v)| !v.is_null()) {
                    let sv = trellis_query::value::to_sql(kind, v, dialect)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let mut u = Query::update();
                    u.table(Alias::new(&entry.table))
                        .value(Alias::new(new_column), sv)
                        .and_where(Expr::col(Alias::new("id")).eq(id.as_str()));
                    txn.execute(&u).await?;
                }
            }
            Work::Index {
                column,
                unique,
                create,
            } => {
                let sqls = if *create {
                    index_sqls(&entry.table, column, *unique, dialect)
                } else {
                    drop_index_sqls(&entry.table, column, *unique)
                };
                for sql in sqls {
                    txn.execute_unprepared(&sql).await?;
                }
            }
        }
    }
    Ok(())
}

/// On PostgreSQL, make writers of `table` (in any process) wait while it changes; readers
/// go on. SQLite has one writer already.
pub(crate) async fn lock_for_change(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    table: &str,
) -> Result<(), StoreError> {
    if dialect == Dialect::Postgres {
        txn.execute_unprepared(&format!(
            "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            q(table)
        ))
        .await?;
    }
    Ok(())
}

/// Plan a change to a form and, unless `dry_run`, apply it in one transaction.
pub async fn update_form(
    db: &Db,
    registry: &Registry,
    name: &str,
    doc: &Value,
    dry_run: bool,
    actor: &Actor,
) -> Result<Plan, StoreError> {
    let _changing = registry.change.write().await;
    let snapshot = registry.snapshot();
    let entry = snapshot.get(name)?;
    if doc.get("name").and_then(Value::as_str) != Some(name) {
        return Err(StoreError::Definition(vec![trellis_meta::MetaError::new(
            "name",
            "rename",
            format!("the name must stay {name:?}"),
        )]));
    }
    let new = check_new(&snapshot, doc)?;
    let txn = db.writer.begin().await?;
    if !dry_run {
        lock_for_change(&txn, db.dialect, &entry.table).await?;
    }
    let (mut plan, work, columns) = make_plan(&txn, db.dialect, &entry, &new).await?;
    if dry_run || plan.steps.is_empty() && new == entry.form {
        txn.rollback().await?;
        if !dry_run {
            plan.to_version = plan.from_version;
        }
        return Ok(plan);
    }
    if !plan.blockers.is_empty() {
        txn.rollback().await?;
        return Err(StoreError::Lossy(plan.blockers));
    }
    apply(&txn, db.dialect, &entry, &work).await?;
    let new_entry = save_definition(
        &txn,
        &entry,
        new,
        columns,
        Some(serde_json::to_value(&plan)?),
        actor.user.as_deref(),
        entry.bundle.clone(),
        entry.position,
    )
    .await?;
    write_audit(
        &txn,
        &Watch::default(),
        &[(
            "$form",
            name,
            new_entry.version,
            "migrate",
            serde_json::to_value(&plan.steps)?,
        )],
        actor,
        Utc::now(),
    )
    .await?;
    txn.commit().await?;
    registry.put(new_entry);
    plan.applied = true;
    Ok(plan)
}

/// Store a new definition and its column list; returns the new registry entry.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn save_definition(
    txn: &DatabaseTransaction,
    entry: &FormEntry,
    new: Form,
    columns: Vec<ColumnInfo>,
    plan: Option<Value>,
    actor: Option<&str>,
    bundle: Option<String>,
    position: i64,
) -> Result<FormEntry, StoreError> {
    let version = entry.version + 1;
    let mut u = Query::update();
    u.table(form_e::Entity)
        .value(form_e::Column::Definition, serde_json::to_value(&new)?)
        .value(form_e::Column::Version, version)
        .value(form_e::Column::Columns, serde_json::to_value(&columns)?)
        .value(form_e::Column::Bundle, bundle.clone())
        .value(form_e::Column::Position, position)
        .value(form_e::Column::UpdatedAt, Utc::now())
        .and_where(Expr::col(form_e::Column::Name).eq(new.name.as_str()))
        .and_where(Expr::col(form_e::Column::Version).eq(entry.version));
    if txn.execute(&u).await?.rows_affected() != 1 {
        // Another process published a newer version since this plan was made.
        return Err(StoreError::Conflict {
            field: "version".into(),
            code: "definition_changed",
            message: format!(
                "the form {:?} changed meanwhile; plan the change again",
                new.name
            ),
            rows: vec![],
        });
    }
    save_version(txn, &new, version, plan, actor).await?;
    // A rule's keys change with the rule, and with the type of a field it reads (its
    // default matcher follows the type).
    let rules_changed = entry.form.duplicates != new.duplicates
        || new.duplicates.iter().any(|r| {
            r.fields.iter().any(|m| {
                entry.form.field(&m.field).map(|f| f.kind) != new.field(&m.field).map(|f| f.kind)
            })
        });
    let ne = FormEntry::new(new, version, columns, bundle, position)?;
    if rules_changed {
        crate::dedupe::rebuild(txn, &ne).await?;
    }
    Ok(ne)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn f(kind: FieldType) -> Field {
        Field::new("x", kind)
    }

    #[test]
    fn conversions_that_keep_the_value() {
        assert_eq!(
            convert(&json!("12"), &f(FieldType::Integer)),
            Some(json!(12))
        );
        assert_eq!(
            convert(&json!("1,200"), &f(FieldType::Integer)),
            Some(json!(1200))
        );
        assert_eq!(convert(&json!(3.0), &f(FieldType::Integer)), Some(json!(3)));
        assert_eq!(convert(&json!(7), &f(FieldType::Decimal)), Some(json!(7.0)));
        assert_eq!(
            convert(&json!(12.5), &f(FieldType::Text)),
            Some(json!("12.5"))
        );
        assert_eq!(
            convert(&json!(12.0), &f(FieldType::Text)),
            Some(json!("12"))
        );
        assert_eq!(
            convert(&json!("是"), &f(FieldType::Boolean)),
            Some(json!(true))
        );
        assert_eq!(
            convert(&json!("2026-11-22"), &f(FieldType::Datetime)),
            Some(json!("2026-11-22T00:00:00.000000Z"))
        );
        assert_eq!(
            convert(&json!("2026-11-22T00:00:00Z"), &f(FieldType::Date)),
            Some(json!("2026-11-22"))
        );
        assert_eq!(
            convert(&json!("vip"), &f(FieldType::Multiselect)),
            Some(json!(["vip"]))
        );
        assert_eq!(
            convert(&Value::Null, &f(FieldType::Integer)),
            Some(Value::Null)
        );
    }

    #[test]
    fn conversions_that_would_lose_data_are_refused() {
        assert_eq!(convert(&json!("twelve"), &f(FieldType::Integer)), None);
        assert_eq!(convert(&json!(2.5), &f(FieldType::Integer)), None);
        assert_eq!(
            convert(&json!("2026-11-22T08:30:00Z"), &f(FieldType::Date)),
            None
        );
        assert_eq!(convert(&json!(["a", "b"]), &f(FieldType::Select)), None);
        assert_eq!(convert(&json!("maybe"), &f(FieldType::Boolean)), None);
        assert_eq!(convert(&json!("x"), &f(FieldType::Relation)), None);
    }

    #[test]
    fn fresh_columns_never_reuse_a_name() {
        let cols = vec![
            ColumnInfo {
                column: "qty".into(),
                kind: "text".into(),
                field: "qty".into(),
                state: ColumnState::Retired,
                last: None,
            },
            ColumnInfo {
                column: "qty_2".into(),
                kind: "integer".into(),
                field: "qty".into(),
                state: ColumnState::Active,
                last: None,
            },
        ];
        assert_eq!(fresh_column(&cols, "qty"), "qty_3");
        assert_eq!(fresh_column(&cols, "name"), "name");
    }
}
