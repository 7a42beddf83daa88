//! Rule definitions, compiled and cached like forms, and running a form's rules on a
//! record being written.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use parking_lot::RwLock;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Map, Value, json};
use trellis_meta::rule::{OnError, Rule, RuleKind, check_rule_at};
use trellis_meta::{FieldError, MetaError};
use trellis_query::value::format_datetime;
use trellis_rules::{Compiled, RuleError};

use crate::admin_audit::{self, By, Event};
use crate::db::Db;
use crate::error::StoreError;
use crate::facts::Host;
use crate::forms::Snapshot;
use crate::migrate::RULES;

/// A rule with its compiled script.
#[derive(Debug, Clone)]
pub struct RuleEntry {
    /// The definition.
    pub rule: Arc<Rule>,
    /// The compiled script.
    pub compiled: Arc<Compiled>,
    /// Bundle that installed it.
    pub bundle: Option<String>,
    /// Position in the bundle.
    pub position: i64,
}

/// Every rule, cached; replaced whole on every change.
#[derive(Default)]
pub struct RuleSet {
    cached: RwLock<Arc<Cached>>,
}

#[derive(Default)]
struct Cached {
    by_name: HashMap<String, RuleEntry>,
    /// Each form's rules in the order they run, built once per change: writes only read it.
    by_form: HashMap<String, Arc<[RuleEntry]>>,
}

impl RuleSet {
    /// Load every rule.
    pub async fn load(db: &Db) -> Result<Self, StoreError> {
        let r = Self::default();
        r.reload(db).await?;
        Ok(r)
    }

    /// Read and compile all rules again (other processes' changes arrive so). A stored
    /// script that no longer compiles is skipped and logged.
    pub async fn reload(&self, db: &Db) -> Result<(), StoreError> {
        let old = self.cached.read().clone();
        let mut map = HashMap::new();
        for r in crate::definitions::all::<Rule, _>(&db.reader, RULES).await? {
            let (name, rule, bundle, position) = (r.name, r.def, r.bundle, r.position);
            // Unchanged definitions keep their compiled script.
            if let Some(e) = old.by_name.get(&name).filter(|e| *e.rule == rule) {
                map.insert(
                    name,
                    RuleEntry {
                        bundle,
                        position,
                        ..e.clone()
                    },
                );
                continue;
            }
            match trellis_rules::shared().compile(&rule.name, &rule.script) {
                Ok(c) => {
                    map.insert(
                        name,
                        RuleEntry {
                            rule: Arc::new(rule),
                            compiled: Arc::new(c),
                            bundle,
                            position,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(rule = %name, error = %e, "a stored rule does not compile; it does not run")
                }
            }
        }
        let mut by_form: HashMap<String, Vec<RuleEntry>> = HashMap::new();
        for e in map.values() {
            by_form
                .entry(e.rule.form.clone())
                .or_default()
                .push(e.clone());
        }
        let by_form = by_form
            .into_iter()
            .map(|(form, mut v)| {
                v.sort_by(|a, b| (a.rule.order, &a.rule.name).cmp(&(b.rule.order, &b.rule.name)));
                (form, v.into())
            })
            .collect();
        *self.cached.write() = Arc::new(Cached {
            by_name: map,
            by_form,
        });
        Ok(())
    }

    /// One rule.
    pub fn get(&self, name: &str) -> Option<RuleEntry> {
        self.cached.read().by_name.get(name).cloned()
    }

    /// Every rule, by form then order then name.
    pub fn list(&self) -> Vec<RuleEntry> {
        let mut v: Vec<RuleEntry> = self.cached.read().by_name.values().cloned().collect();
        v.sort_by(|a, b| {
            (&a.rule.form, a.rule.order, &a.rule.name).cmp(&(
                &b.rule.form,
                b.rule.order,
                &b.rule.name,
            ))
        });
        v
    }

    /// The rules of one form, in the order they run.
    pub fn for_form(&self, form: &str) -> Arc<[RuleEntry]> {
        self.cached
            .read()
            .by_form
            .get(form)
            .cloned()
            .unwrap_or_else(|| Arc::from([]))
    }
}

/// Check a rule against the forms and compile its script (a syntax error names its line
/// and column under `script`).
pub fn check(doc: &Value, snap: &Snapshot) -> Result<(Rule, Compiled), Vec<MetaError>> {
    let rule = check_rule_at(doc, &|f| snap.0.get(f).map(|e| e.form.clone()), "")?;
    let compiled = trellis_rules::shared()
        .compile(&rule.name, &rule.script)
        .map_err(|e| vec![MetaError::new("script", e.kind.code(), e.to_string())])?;
    Ok((rule, compiled))
}

/// Insert or replace a rule inside a transaction with its audit entry; answers whether
/// anything changed. A rule stored without a bundle keeps the bundle it came from.
pub async fn save<C: ConnectionTrait>(
    c: &C,
    rule: &Rule,
    bundle: Option<&str>,
    position: i64,
    by: By<'_>,
) -> Result<bool, StoreError> {
    let before: Option<(Rule, Option<String>, i64)> = crate::definitions::one(c, RULES, &rule.name)
        .await?
        .map(|r| (r.def, r.bundle, r.position));
    let (bundle, position) = match (&before, bundle) {
        (_, Some(b)) => (Some(b.to_owned()), position),
        (Some((_, b, p)), None) => (b.clone(), *p),
        (None, None) => (None, position),
    };
    if let Some((r, b, p)) = &before
        && r == rule
        && *b == bundle
        && *p == position
    {
        return Ok(false);
    }
    let mut ins = Query::insert();
    ins.into_table(Alias::new(RULES))
        .columns(
            [
                "name",
                "form",
                "definition",
                "bundle",
                "position",
                "updated_at",
            ]
            .map(Alias::new),
        )
        .values([
            Expr::val(rule.name.as_str()),
            Expr::val(rule.form.as_str()),
            Expr::val(serde_json::to_string(rule)?),
            Expr::val(bundle.clone()),
            Expr::val(position),
            Expr::val(format_datetime(&Utc::now())),
        ])
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("name"))
                .update_columns(
                    ["form", "definition", "bundle", "position", "updated_at"].map(Alias::new),
                )
                .to_owned(),
        );
    c.execute(&ins).await?;
    admin_audit::record(
        c,
        Event {
            actor: by.actor,
            action: if before.is_some() {
                "rule.update"
            } else {
                "rule.create"
            },
            target: Some(&rule.name),
            ip: by.ip,
            detail: json!({"before": before.map(|b| b.0), "after": rule, "bundle": bundle}),
        },
    )
    .await?;
    Ok(true)
}

/// Store a rule on its own (not from a bundle); the cache is reloaded.
pub async fn put(db: &Db, set: &RuleSet, rule: &Rule, by: By<'_>) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    save(&txn, rule, None, 0, by).await?;
    txn.commit().await?;
    set.reload(db).await
}

/// Delete a rule with its audit entry.
pub async fn delete(db: &Db, set: &RuleSet, name: &str, by: By<'_>) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    let mut d = Query::delete();
    d.from_table(Alias::new(RULES))
        .and_where(Expr::col(Alias::new("name")).eq(name));
    if txn.execute(&d).await?.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("rule {name}")));
    }
    admin_audit::record(
        &txn,
        Event {
            actor: by.actor,
            action: "rule.delete",
            target: Some(name),
            ip: by.ip,
            detail: json!({}),
        },
    )
    .await?;
    txn.commit().await?;
    set.reload(db).await
}

/// What running a form's rules on one record left to do.
#[derive(Debug, Default)]
pub struct Applied {
    /// Failures of rules that keep the write (`on_error: record`).
    pub recorded: Vec<RuleError>,
}

fn rule_failed(rule: &Rule, prefix: &str, e: &RuleError) -> FieldError {
    FieldError::new(
        format!("{prefix}{}", rule.field.as_deref().unwrap_or("")),
        e.kind.code(),
        e.to_string(),
        format!("规则执行失败：{e}"),
    )
}

/// Run the rules that apply to this write over `record` (in place): score, grade and formula
/// rules set their field, validation rules gather their rejections. `changed` lists the
/// fields an update changes. Routing runs later, in the create's transaction ([`route`]).
pub async fn apply<C: ConnectionTrait>(
    host: &mut Host<'_, C>,
    rules: &[RuleEntry],
    record: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    changed: &[&str],
    prefix: &str,
) -> Result<Applied, StoreError> {
    let create = previous.is_none();
    let mut out = Applied::default();
    let mut rejected = Vec::new();
    // What earlier rules change counts as changed for later ones (a grade watches the score).
    let mut changed: Vec<String> = changed.iter().map(|c| (*c).to_owned()).collect();
    for e in rules {
        let r = &e.rule;
        let now: Vec<&str> = changed.iter().map(String::as_str).collect();
        if r.kind == RuleKind::Route || !r.runs_on(create, &now) {
            continue;
        }
        let outcome = match host.run(&e.compiled, record, previous).await? {
            Ok(o) => o,
            Err(err) if r.on_error == OnError::Record => {
                out.recorded.push(err);
                continue;
            }
            Err(err) => return Err(StoreError::Validation(vec![rule_failed(r, prefix, &err)])),
        };
        match r.kind {
            RuleKind::Score | RuleKind::Grade | RuleKind::Formula => {
                if let Some(f) = &r.field {
                    if record.get(f) != Some(&outcome.value) && !changed.contains(f) {
                        changed.push(f.clone());
                    }
                    record.insert(f.clone(), outcome.value);
                }
            }
            RuleKind::Validate => rejected.extend(outcome.rejections.into_iter().map(|x| {
                FieldError::new(
                    format!("{prefix}{}", x.field),
                    "rule",
                    x.message.clone(),
                    x.message,
                )
            })),
            RuleKind::Route | RuleKind::Condition => {}
        }
    }
    if rejected.is_empty() {
        Ok(out)
    } else {
        Err(StoreError::Validation(rejected))
    }
}

/// Does any active rule route new records of this form?
pub fn routes(rules: &[RuleEntry]) -> bool {
    rules
        .iter()
        .any(|e| e.rule.kind == RuleKind::Route && e.rule.runs_on(true, &[]))
}

/// Run the route rules of a new record, inside its create transaction: each
/// `assign(user)` (an e-mail or id of an active user) sets the owner, or the user field the
/// rule names. Scripts see `record.created_by`, the creator (`()` for a public form's
/// visitor). Failures of rules that keep the write are returned.
pub async fn route<C: ConnectionTrait>(
    host: &mut Host<'_, C>,
    rules: &[RuleEntry],
    record: &mut Map<String, Value>,
    creator: Option<&str>,
    prefix: &str,
) -> Result<Vec<RuleError>, StoreError> {
    let mut recorded = Vec::new();
    // The record as it will be stored: its creator is known.
    record.insert(
        "created_by".into(),
        creator.map_or(Value::Null, |c| Value::String(c.to_owned())),
    );
    for e in rules {
        let r = &e.rule;
        if r.kind != RuleKind::Route || !r.runs_on(true, &[]) {
            continue;
        }
        let field = r.field.as_deref().unwrap_or("owner");
        let result = match host.run(&e.compiled, record, None).await? {
            Ok(o) => match o.assigned {
                None => Ok(None),
                Some(who) => match host.user_id(&who).await? {
                    Some(id) => Ok(Some(id)),
                    None => Err(RuleError {
                        rule: r.name.clone(),
                        kind: trellis_rules::ErrorKind::Runtime,
                        line: None,
                        column: None,
                        message: format!("assign(): no active user {who:?}"),
                    }),
                },
            },
            Err(err) => Err(err),
        };
        match result {
            Ok(Some(id)) => {
                host.routed(record, field, &id);
                record.insert(field.to_owned(), Value::String(id));
            }
            Ok(None) => {}
            Err(err) if r.on_error == OnError::Record => recorded.push(err),
            Err(err) => {
                return Err(StoreError::Validation(vec![FieldError::new(
                    format!("{prefix}{field}"),
                    err.kind.code(),
                    err.to_string(),
                    format!("规则执行失败：{err}"),
                )]));
            }
        }
    }
    Ok(recorded)
}

/// The fields the rules of a form set.
pub fn outputs(rules: &[RuleEntry]) -> Vec<String> {
    let mut v: Vec<String> = rules
        .iter()
        .filter(|e| e.rule.kind.sets_field())
        .filter_map(|e| e.rule.field.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Check what rules set like any value a client sends (type, options, length), and keep it
/// normalized (`"Hot"` → `"hot"`): a rule cannot store what a person could not.
pub fn check_outputs(
    entry: &crate::forms::FormEntry,
    rules: &[RuleEntry],
    record: &mut Map<String, Value>,
    prefix: &str,
) -> Result<(), StoreError> {
    let fields = outputs(rules);
    if fields.is_empty() {
        return Ok(());
    }
    let set: Map<String, Value> = fields
        .iter()
        .filter_map(|f| record.get(f).map(|v| (f.clone(), v.clone())))
        .collect();
    let checked = entry
        .validator
        .prepare(set, trellis_meta::record::Mode::Update, Utc::now())
        .map_err(|errs| {
            StoreError::Validation(
                errs.into_iter()
                    .map(|mut e| {
                        e.message = format!("set by a rule: {}", e.message);
                        e.field = format!("{prefix}{}", e.field);
                        e
                    })
                    .collect(),
            )
        })?;
    record.extend(checked);
    Ok(())
}

/// Record failures of rules that keep the write.
pub async fn record_failures(db: &Db, form: &str, failures: &[RuleError]) {
    for f in failures {
        let r = admin_audit::record(
            &db.writer,
            Event {
                actor: None,
                action: "rule.error",
                target: Some(&f.rule),
                ip: None,
                detail: json!({"form": form, "kind": f.kind.code(), "line": f.line,
                    "column": f.column, "message": f.message}),
            },
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(rule = %f.rule, error = %e, "recording a rule failure failed");
        }
    }
}

impl crate::Store {
    /// Run a rule on a sample record, writing nothing: lookups read the database, turns are
    /// only looked at.
    pub async fn test_rule(
        &self,
        name: &str,
        record: &Map<String, Value>,
        previous: Option<&Map<String, Value>>,
    ) -> Result<Result<trellis_rules::Outcome, RuleError>, StoreError> {
        let e = self
            .rules
            .get(name)
            .ok_or_else(|| StoreError::NotFound(format!("rule {name}")))?;
        let snap = self.registry.snapshot();
        let form = snap.get(&e.rule.form)?;
        let mut host = Host::new(
            &self.db.reader,
            self.db.dialect,
            &snap,
            &form,
            crate::facts::Turns::Peek,
        );
        host.run(&e.compiled, record, previous).await
    }
}
