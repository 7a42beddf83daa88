//! Workflow definitions, stored with every version they had: a run keeps the version it
//! started with, so a change never alters a run under way.

use chrono::Utc;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::{Value, json};
use trellis_meta::MetaError;
use trellis_meta::workflow::{Assignee, Catalog, Step, StepKind, Workflow, check_workflow_at};
use trellis_query::Filter;
use trellis_query::value::format_datetime;

use crate::admin_audit::{self, By, Event};
use crate::db::Db;
use crate::entity::user;
use crate::error::StoreError;
use crate::forms::Snapshot;
use crate::migrate::{WORKFLOW_VERSIONS, WORKFLOWS};
use crate::roles::Roles;
use crate::rules::RuleSet;

/// A stored workflow.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The definition.
    pub workflow: Workflow,
    /// Its version, from 1, one more on every change.
    pub version: i64,
    /// Bundle that installed it.
    pub bundle: Option<String>,
}

/// Where the filters of a workflow's steps are, for checking them.
fn filters<'a>(steps: &'a [Step], out: &mut Vec<(String, &'a Value)>) {
    Step::walk(steps, "steps", &mut |at, kind| match kind {
        StepKind::Approval { levels, .. } => {
            for (j, l) in levels.iter().enumerate() {
                if let Some(w) = &l.when {
                    out.push((format!("{at}.levels[{j}].when"), w));
                }
            }
        }
        StepKind::Wait { until: Some(u), .. } => out.push((format!("{at}.until"), u)),
        StepKind::If {
            condition: Some(c), ..
        } => out.push((format!("{at}.condition"), c)),
        _ => {}
    });
}

/// The users a workflow names by e-mail (approvers, assignees), with where.
fn users(steps: &[Step]) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    Step::walk(steps, "steps", &mut |at, kind| {
        let named: Vec<(String, &Assignee)> = match kind {
            StepKind::Task { assignee, .. } => vec![(format!("{at}.assignee"), assignee)],
            StepKind::Notify { to, .. } => vec![(format!("{at}.to"), to)],
            StepKind::Approval { levels, .. } => levels
                .iter()
                .enumerate()
                .map(|(j, l)| (format!("{at}.levels[{j}].approver"), &l.approver))
                .collect(),
            _ => Vec::new(),
        };
        for (path, a) in named {
            if let Assignee::User { user } = a {
                out.push((path, user.as_str()));
            }
        }
    });
    out
}

/// Check a workflow against the forms, rules and roles, and its filters against its form.
pub fn check(
    doc: &Value,
    snap: &Snapshot,
    rules: &RuleSet,
    roles: &Roles,
) -> Result<Workflow, Vec<MetaError>> {
    let cat = Catalog {
        form: &|f| snap.0.get(f).map(|e| e.form.clone()),
        rule: &|r| rules.get(r).map(|e| (e.rule.form.clone(), e.rule.kind)),
        role: &|r| roles.get(r).is_some(),
    };
    let wf = check_workflow_at(doc, &cat, "")?;
    let errs = check_filters(&wf, snap, "");
    if errs.is_empty() { Ok(wf) } else { Err(errs) }
}

/// The filters of a workflow (its condition, `when`, `until`, `if`) against its form;
/// errors are placed under `prefix`.
pub fn check_filters(wf: &Workflow, snap: &Snapshot, prefix: &str) -> Vec<MetaError> {
    let mut found = Vec::new();
    if let Some(c) = &wf.condition {
        found.push(("condition".to_owned(), c));
    }
    filters(&wf.steps, &mut found);
    found
        .into_iter()
        .filter_map(|(at, f)| {
            Filter::parse(&wf.form, f, snap, Utc::now()).err().map(|e| {
                let mut path = if prefix.is_empty() {
                    at
                } else {
                    format!("{prefix}.{at}")
                };
                if !e.path.is_empty() {
                    path = format!("{path}.{}", e.path);
                }
                MetaError::new(path, e.code, e.message)
            })
        })
        .collect()
}

/// Users a workflow names by e-mail must exist.
async fn check_users<C: ConnectionTrait>(c: &C, wf: &Workflow) -> Result<(), StoreError> {
    let mut errs = Vec::new();
    for (at, email) in users(&wf.steps) {
        let found = user::Entity::find()
            .filter(user::Column::Email.eq(email.to_lowercase()))
            .one(c)
            .await?;
        if found.is_none() {
            errs.push(MetaError::new(
                format!("{at}.user"),
                "unknown_user",
                format!("no user with the e-mail {email:?}"),
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Definition(errs))
    }
}

/// Store a workflow inside a transaction with its audit entry: a changed definition gets
/// the next version, kept beside the earlier ones. Answers whether anything changed.
pub async fn save<C: ConnectionTrait>(
    c: &C,
    wf: &Workflow,
    bundle: Option<&str>,
    by: By<'_>,
) -> Result<bool, StoreError> {
    check_users(c, wf).await?;
    let before = load(c, &wf.name).await?;
    let bundle = bundle
        .map(str::to_owned)
        .or_else(|| before.as_ref().and_then(|b| b.bundle.clone()));
    if let Some(b) = &before
        && b.workflow == *wf
        && b.bundle == bundle
    {
        return Ok(false);
    }
    let changed = before.as_ref().is_none_or(|b| b.workflow != *wf);
    let version = before
        .as_ref()
        .map_or(1, |b| b.version + i64::from(changed));
    let now = format_datetime(&Utc::now());
    let definition = serde_json::to_string(wf)?;
    let mut ins = Query::insert();
    ins.into_table(Alias::new(WORKFLOWS))
        .columns(
            [
                "name",
                "form",
                "version",
                "definition",
                "bundle",
                "updated_at",
            ]
            .map(Alias::new),
        )
        .values([
            Expr::val(wf.name.as_str()),
            Expr::val(wf.form.as_str()),
            Expr::val(version),
            Expr::val(definition.as_str()),
            Expr::val(bundle.clone()),
            Expr::val(now.as_str()),
        ])
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("name"))
                .update_columns(
                    ["form", "version", "definition", "bundle", "updated_at"].map(Alias::new),
                )
                .to_owned(),
        );
    c.execute(&ins).await?;
    if changed {
        let mut v = Query::insert();
        v.into_table(Alias::new(WORKFLOW_VERSIONS))
            .columns(["name", "version", "definition", "created_at"].map(Alias::new))
            .values([
                Expr::val(wf.name.as_str()),
                Expr::val(version),
                Expr::val(definition.as_str()),
                Expr::val(now.as_str()),
            ])
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        c.execute(&v).await?;
    }
    admin_audit::record(
        c,
        Event {
            actor: by.actor,
            action: if before.is_some() {
                "workflow.update"
            } else {
                "workflow.create"
            },
            target: Some(&wf.name),
            ip: by.ip,
            detail: json!({"version": version, "before": before.map(|b| b.workflow), "after": wf, "bundle": bundle}),
        },
    )
    .await?;
    Ok(true)
}

/// Store a workflow on its own (not from a bundle).
pub async fn put(db: &Db, wf: &Workflow, by: By<'_>) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    save(&txn, wf, None, by).await?;
    txn.commit().await?;
    // Committed: a failed refresh must not turn that into an error (the engine's own
    // refresh catches up).
    if let Err(e) = refresh_watch(db).await {
        tracing::warn!(error = %e, "reloading the watched forms failed");
    }
    Ok(())
}

/// Tell this process which forms active workflows watch, so its writes put their events
/// in the outbox. Every process that writes records needs it (a CLI import too, whose
/// events the server's workflow engine then handles), not only one that runs workflows.
pub(crate) async fn refresh_watch(db: &Db) -> Result<(), StoreError> {
    let forms = list(&db.reader)
        .await?
        .into_iter()
        .filter(|s| s.workflow.active)
        .map(|s| s.workflow.form)
        .collect();
    db.watch.set(forms);
    Ok(())
}

/// Delete a workflow with its audit entry; its versions stay for the runs that use them.
pub async fn delete(db: &Db, name: &str, by: By<'_>) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    let mut d = Query::delete();
    d.from_table(Alias::new(WORKFLOWS))
        .and_where(Expr::col(Alias::new("name")).eq(name));
    if txn.execute(&d).await?.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("workflow {name}")));
    }
    admin_audit::record(
        &txn,
        Event {
            actor: by.actor,
            action: "workflow.delete",
            target: Some(name),
            ip: by.ip,
            detail: json!({}),
        },
    )
    .await?;
    txn.commit().await?;
    // Committed: a failed refresh must not turn that into an error (the engine's own
    // refresh catches up).
    if let Err(e) = refresh_watch(db).await {
        tracing::warn!(error = %e, "reloading the watched forms failed");
    }
    Ok(())
}

/// One workflow, current version.
pub async fn load<C: ConnectionTrait>(c: &C, name: &str) -> Result<Option<Stored>, StoreError> {
    let mut s = Query::select();
    s.columns(["definition", "version", "bundle"].map(Alias::new))
        .from(Alias::new(WORKFLOWS))
        .and_where(Expr::col(Alias::new("name")).eq(name));
    match c.query_one(&s).await? {
        Some(r) => Ok(Some(Stored {
            workflow: serde_json::from_str(&r.try_get_by_index::<String>(0)?)?,
            version: r.try_get_by_index(1)?,
            bundle: r.try_get_by_index(2)?,
        })),
        None => Ok(None),
    }
}

/// Every workflow, by form then name.
pub async fn list<C: ConnectionTrait>(c: &C) -> Result<Vec<Stored>, StoreError> {
    let mut s = Query::select();
    s.columns(["definition", "version", "bundle"].map(Alias::new))
        .from(Alias::new(WORKFLOWS))
        .order_by(Alias::new("form"), Order::Asc)
        .order_by(Alias::new("name"), Order::Asc);
    c.query_all(&s)
        .await?
        .iter()
        .map(|r| {
            Ok(Stored {
                workflow: serde_json::from_str(&r.try_get_by_index::<String>(0)?)?,
                version: r.try_get_by_index(1)?,
                bundle: r.try_get_by_index(2)?,
            })
        })
        .collect()
}

/// Every version of a workflow, newest first: (version, created_at, definition).
pub async fn versions<C: ConnectionTrait>(
    c: &C,
    name: &str,
) -> Result<Vec<(i64, String, Workflow)>, StoreError> {
    let mut s = Query::select();
    s.columns(["version", "created_at", "definition"].map(Alias::new))
        .from(Alias::new(WORKFLOW_VERSIONS))
        .and_where(Expr::col(Alias::new("name")).eq(name))
        .order_by(Alias::new("version"), Order::Desc);
    c.query_all(&s)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get_by_index(0)?,
                r.try_get_by_index(1)?,
                serde_json::from_str(&r.try_get_by_index::<String>(2)?)?,
            ))
        })
        .collect()
}

/// One version of a workflow, as a run that started on it needs it.
pub async fn load_version<C: ConnectionTrait>(
    c: &C,
    name: &str,
    version: i64,
) -> Result<Option<Workflow>, StoreError> {
    let mut s = Query::select();
    s.column(Alias::new("definition"))
        .from(Alias::new(WORKFLOW_VERSIONS))
        .and_where(Expr::col(Alias::new("name")).eq(name))
        .and_where(Expr::col(Alias::new("version")).eq(version));
    match c.query_one(&s).await? {
        Some(r) => Ok(Some(serde_json::from_str(
            &r.try_get_by_index::<String>(0)?,
        )?)),
        None => Ok(None),
    }
}
