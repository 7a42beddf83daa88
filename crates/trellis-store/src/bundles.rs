//! Bundles: install (idempotent), upgrade through a planned migration, export exactly.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder, Set, TransactionTrait};
use serde::Serialize;
use serde_json::{Value, json};
use trellis_meta::bundle::{Bundle, Installed, check_bundle, check_bundle_with, parse_version};

use crate::db::Db;
use crate::db::Watch;
use crate::entity::bundle as bundle_e;
use crate::error::StoreError;
use crate::forms::{FormEntry, Registry, Snapshot, initial_columns, insert_form};
use crate::plan::{Plan, apply, make_plan, save_definition};
use crate::records::{Actor, write_audit};
use crate::roles::{Roles, check_filters, save as save_role};

/// What installing did (or would do) to one form.
#[derive(Debug, Clone, Serialize)]
pub struct FormChange {
    /// Form.
    pub form: String,
    /// `create`, `upgrade` or `unchanged`.
    pub action: &'static str,
    /// The migration plan of an upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

/// What installing did (or would do) to one role.
#[derive(Debug, Clone, Serialize)]
pub struct RoleChange {
    /// Role.
    pub role: String,
    /// `create`, `update` or `unchanged`.
    pub action: &'static str,
}

/// What installing did (or would do) to one rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleChange {
    /// Rule.
    pub rule: String,
    /// `create`, `update` or `unchanged`.
    pub action: &'static str,
}

/// What installing did (or would do) to one workflow.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowChange {
    /// Workflow.
    pub workflow: String,
    /// `create`, `update` (a new version) or `unchanged`.
    pub action: &'static str,
}

/// What installing does to a role or rule that exists (or not) and is the same (or not).
fn change(exists: bool, same: bool) -> &'static str {
    match (exists, same) {
        (_, true) => "unchanged",
        (false, _) => "create",
        (true, _) => "update",
    }
}

/// Every rule script of a bundle compiled: errors at `rules[i].script`.
fn compile_rules(bundle: &Bundle) -> Vec<trellis_meta::MetaError> {
    bundle
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            trellis_rules::shared()
                .compile(&r.name, &r.script)
                .err()
                .map(|e| {
                    trellis_meta::MetaError::new(
                        format!("rules[{i}].script"),
                        e.kind.code(),
                        e.to_string(),
                    )
                })
        })
        .collect()
}

/// The outcome of an install.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// Bundle name.
    pub bundle: String,
    /// Version installed before, if any.
    pub from_version: Option<String>,
    /// Version after.
    pub version: String,
    /// Per form.
    pub forms: Vec<FormChange>,
    /// Per role: `create`, `update` or `unchanged`.
    pub roles: Vec<RoleChange>,
    /// Per rule: `create`, `update` or `unchanged`.
    pub rules: Vec<RuleChange>,
    /// Per workflow: `create`, `update` or `unchanged`.
    pub workflows: Vec<WorkflowChange>,
    /// Per report: `create`, `update` or `unchanged`.
    pub reports: Vec<NamedChange>,
    /// Per dashboard: `create`, `update` or `unchanged`.
    pub dashboards: Vec<NamedChange>,
    /// Whether anything changed.
    pub changed: bool,
    /// Whether it was applied (false on a dry run).
    pub applied: bool,
}

/// What an install does to a report or dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct NamedChange {
    /// Its name.
    pub name: String,
    /// `create`, `update` or `unchanged`.
    pub action: &'static str,
}

/// Install or upgrade a bundle in one transaction; on a dry run only plan it.
#[allow(clippy::too_many_arguments)]
pub async fn install(
    db: &Db,
    registry: &Registry,
    roles: &Roles,
    rules: &crate::rules::RuleSet,
    doc: &Value,
    dry_run: bool,
    actor: &Actor,
) -> Result<InstallReport, StoreError> {
    let _changing = registry.change.write().await;
    let snapshot = registry.snapshot();
    let installed_reports = crate::reports::list_reports(&db.reader).await?;
    let bundle = check_bundle_with(
        doc,
        &Installed {
            form: &|n| snapshot.0.get(n).map(|e| e.form.clone()),
            rule: &|n| rules.get(n).map(|e| (e.rule.form.clone(), e.rule.kind)),
            role: &|n| roles.get(n).is_some(),
            report: &|n| {
                installed_reports
                    .iter()
                    .find(|r| r.def.name == n)
                    .map(|r| r.def.clone())
            },
        },
    )
    .map_err(StoreError::Definition)?;
    // Role filters are checked against the forms as the bundle leaves them.
    let mut after = (*snapshot.0).clone();
    for f in &bundle.forms {
        after.insert(
            f.name.clone(),
            Arc::new(FormEntry::new(f.clone(), 0, initial_columns(f), None, 0)?),
        );
    }
    let after = Snapshot(Arc::new(after));
    let mut role_errs: Vec<_> = bundle
        .roles
        .iter()
        .enumerate()
        .flat_map(|(i, r)| check_filters(r, &after, &format!("roles[{i}]")))
        .collect();
    role_errs.extend(compile_rules(&bundle));
    for (i, w) in bundle.workflows.iter().enumerate() {
        role_errs.extend(crate::workflows::check_filters(
            w,
            &after,
            &format!("workflows[{i}]"),
        ));
    }
    for (i, r) in bundle.reports.iter().enumerate() {
        role_errs.extend(crate::reports::check_filters(
            r,
            &after,
            &format!("reports[{i}]"),
        ));
    }
    if !role_errs.is_empty() {
        return Err(StoreError::Definition(role_errs));
    }
    // Reports and dashboards of another bundle are not taken over.
    let installed_dashboards = crate::reports::list_dashboards(&db.reader).await?;
    let owners = installed_reports
        .iter()
        .filter(|r| bundle.reports.iter().any(|b| b.name == r.def.name))
        .map(|r| ("reports", r.def.name.clone(), r.bundle.clone()))
        .chain(
            installed_dashboards
                .iter()
                .filter(|d| bundle.dashboards.iter().any(|b| b.name == d.def.name))
                .map(|d| ("dashboards", d.def.name.clone(), d.bundle.clone())),
        );
    for (kind, name, owner) in owners {
        if let Some(o) = owner.filter(|o| *o != bundle.name) {
            return Err(StoreError::Conflict {
                field: format!("{kind}.{name}"),
                code: "definition_owned",
                message: format!("{name:?} belongs to the bundle {o:?}"),
                rows: vec![],
            });
        }
    }
    for r in &bundle.rules {
        if let Some(e) = rules.get(&r.name)
            && e.bundle.as_deref().is_some_and(|b| b != bundle.name)
        {
            return Err(StoreError::Conflict {
                field: format!("rules.{}", r.name),
                code: "rule_owned",
                message: format!(
                    "the rule {:?} belongs to the bundle {:?}",
                    r.name,
                    e.bundle.as_deref().unwrap_or_default()
                ),
                rows: vec![],
            });
        }
    }
    for r in &bundle.roles {
        if let Some(e) = roles.get(&r.name)
            && e.bundle.as_deref().is_some_and(|b| b != bundle.name)
        {
            return Err(StoreError::Conflict {
                field: format!("roles.{}", r.name),
                code: "role_owned",
                message: format!(
                    "the role {:?} belongs to the bundle {:?}",
                    r.name,
                    e.bundle.as_deref().unwrap_or_default()
                ),
                rows: vec![],
            });
        }
    }
    let installed = bundle_e::Entity::find_by_id(bundle.name.clone())
        .one(&db.writer)
        .await?;
    if let Some(i) = &installed
        && parse_version(&i.version) > parse_version(&bundle.version)
    {
        return Err(StoreError::Conflict {
            field: "version".into(),
            code: "downgrade",
            message: format!(
                "{} {} is installed; {} is older",
                bundle.name, i.version, bundle.version
            ),
            rows: vec![],
        });
    }
    for f in &bundle.forms {
        if let Some(e) = snapshot.0.get(&f.name)
            && e.bundle.as_deref().is_some_and(|b| b != bundle.name)
        {
            return Err(StoreError::Conflict {
                field: format!("forms.{}", f.name),
                code: "form_owned",
                message: format!(
                    "the form {:?} belongs to the bundle {:?}",
                    f.name,
                    e.bundle.as_deref().unwrap_or_default()
                ),
                rows: vec![],
            });
        }
    }
    let manifest = json!({"name": bundle.name, "version": bundle.version, "label": bundle.label, "description": bundle.description});
    let txn = db.writer.begin().await?;
    let mut changes = Vec::new();
    let mut entries: Vec<FormEntry> = Vec::new();
    let mut blockers = Vec::new();
    for (i, form) in bundle.forms.iter().enumerate() {
        let position = i as i64;
        match snapshot.0.get(&form.name) {
            None => {
                changes.push(FormChange {
                    form: form.name.clone(),
                    action: "create",
                    plan: None,
                });
                if !dry_run {
                    entries.push(
                        insert_form(
                            &txn,
                            db.dialect,
                            form,
                            Some(&bundle.name),
                            position,
                            actor.user.as_deref(),
                        )
                        .await?,
                    );
                }
            }
            Some(e)
                if e.form == *form
                    && e.bundle.as_deref() == Some(bundle.name.as_str())
                    && e.position == position =>
            {
                changes.push(FormChange {
                    form: form.name.clone(),
                    action: "unchanged",
                    plan: None,
                });
            }
            Some(e) => {
                if !dry_run {
                    crate::plan::lock_for_change(&txn, db.dialect, &e.table).await?;
                }
                let (mut plan, work, columns) = make_plan(&txn, db.dialect, e, form).await?;
                blockers.extend(plan.blockers.iter().cloned().map(|mut b| {
                    b.field = format!("{}.{}", form.name, b.field);
                    b
                }));
                if !dry_run && plan.blockers.is_empty() {
                    apply(&txn, db.dialect, e, &work).await?;
                    let plan_json = serde_json::to_value(&plan)?;
                    let ne = save_definition(
                        &txn,
                        e,
                        form.clone(),
                        columns,
                        Some(plan_json),
                        actor.user.as_deref(),
                        Some(bundle.name.clone()),
                        position,
                    )
                    .await?;
                    write_audit(
                        &txn,
                        &Watch::default(),
                        &[(
                            "$form",
                            form.name.as_str(),
                            ne.version,
                            "migrate",
                            serde_json::to_value(&plan.steps)?,
                        )],
                        actor,
                        Utc::now(),
                    )
                    .await?;
                    entries.push(ne);
                    plan.applied = true;
                }
                changes.push(FormChange {
                    form: form.name.clone(),
                    action: "upgrade",
                    plan: Some(plan),
                });
            }
        }
    }
    if !blockers.is_empty() && !dry_run {
        txn.rollback().await?;
        return Err(StoreError::Lossy(blockers));
    }
    let mut role_changes = Vec::new();
    for (i, r) in bundle.roles.iter().enumerate() {
        let current = roles.get(&r.name);
        let same = current.as_ref().is_some_and(|e| {
            *e.role == *r
                && e.bundle.as_deref() == Some(bundle.name.as_str())
                && e.position == i as i64
        });
        role_changes.push(RoleChange {
            role: r.name.clone(),
            action: change(current.is_some(), same),
        });
        if !dry_run && !same {
            save_role(
                &txn,
                r,
                Some(&bundle.name),
                i as i64,
                actor.user.as_deref(),
                None,
            )
            .await?;
        }
    }
    let manifest_changed = installed
        .as_ref()
        .is_none_or(|i| i.manifest != manifest || i.version != bundle.version);
    let mut rule_changes = Vec::new();
    for (i, r) in bundle.rules.iter().enumerate() {
        let current = rules.get(&r.name);
        let same = current.as_ref().is_some_and(|e| {
            *e.rule == *r
                && e.bundle.as_deref() == Some(bundle.name.as_str())
                && e.position == i as i64
        });
        rule_changes.push(RuleChange {
            rule: r.name.clone(),
            action: change(current.is_some(), same),
        });
        if !dry_run && !same {
            crate::rules::save(
                &txn,
                r,
                Some(&bundle.name),
                i as i64,
                crate::admin_audit::By {
                    actor: actor.user.as_deref(),
                    ip: None,
                },
            )
            .await?;
        }
    }
    let mut workflow_changes = Vec::new();
    for w in &bundle.workflows {
        let current = crate::workflows::load(&txn, &w.name).await?;
        let same = current
            .as_ref()
            .is_some_and(|c| c.workflow == *w && c.bundle.as_deref() == Some(bundle.name.as_str()));
        workflow_changes.push(WorkflowChange {
            workflow: w.name.clone(),
            action: change(current.is_some(), same),
        });
        if !dry_run && !same {
            crate::workflows::save(
                &txn,
                w,
                Some(&bundle.name),
                crate::admin_audit::By {
                    actor: actor.user.as_deref(),
                    ip: None,
                },
            )
            .await?;
        }
    }
    let by = || crate::admin_audit::By {
        actor: actor.user.as_deref(),
        ip: None,
    };
    let in_bundle: Vec<String> = bundle.dashboards.iter().map(|d| d.name.clone()).collect();
    crate::reports::check_dashboards(&txn, &bundle.reports, &in_bundle).await?;
    let mut report_changes = Vec::new();
    for r in &bundle.reports {
        let current = crate::reports::load_report(&txn, &r.name).await?;
        let same = current
            .as_ref()
            .is_some_and(|c| c.def == *r && c.bundle.as_deref() == Some(bundle.name.as_str()));
        report_changes.push(NamedChange {
            name: r.name.clone(),
            action: change(current.is_some(), same),
        });
        if !dry_run && !same {
            crate::reports::save_report(&txn, r, Some(&bundle.name), by()).await?;
        }
    }
    let mut dashboard_changes = Vec::new();
    for d in &bundle.dashboards {
        let current = crate::reports::load_dashboard(&txn, &d.name).await?;
        let same = current
            .as_ref()
            .is_some_and(|c| c.def == *d && c.bundle.as_deref() == Some(bundle.name.as_str()));
        dashboard_changes.push(NamedChange {
            name: d.name.clone(),
            action: change(current.is_some(), same),
        });
        if !dry_run && !same {
            crate::reports::save_dashboard(&txn, d, Some(&bundle.name), by()).await?;
        }
    }
    let changed = manifest_changed
        || report_changes.iter().any(|c| c.action != "unchanged")
        || dashboard_changes.iter().any(|c| c.action != "unchanged")
        || changes.iter().any(|c| c.action != "unchanged")
        || role_changes.iter().any(|c| c.action != "unchanged")
        || rule_changes.iter().any(|c| c.action != "unchanged")
        || workflow_changes.iter().any(|c| c.action != "unchanged");
    if dry_run || !changed {
        txn.rollback().await?;
    } else {
        let now = Utc::now();
        match installed.clone() {
            None => {
                bundle_e::ActiveModel {
                    name: Set(bundle.name.clone()),
                    version: Set(bundle.version.clone()),
                    manifest: Set(manifest),
                    installed_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&txn)
                .await?;
            }
            Some(m) if manifest_changed => {
                let mut a: bundle_e::ActiveModel = m.into();
                a.version = Set(bundle.version.clone());
                a.manifest = Set(manifest);
                a.updated_at = Set(now);
                a.update(&txn).await?;
            }
            Some(_) => {}
        }
        txn.commit().await?;
        for e in entries {
            registry.put(e);
        }
        roles.reload(db).await?;
        rules.reload(db).await?;
    }
    Ok(InstallReport {
        bundle: bundle.name,
        from_version: installed.map(|i| i.version),
        version: bundle.version,
        forms: changes,
        roles: role_changes,
        rules: rule_changes,
        workflows: workflow_changes,
        reports: report_changes,
        dashboards: dashboard_changes,
        changed,
        applied: !dry_run && changed,
    })
}

/// Check a bundle on its own, without a database: its forms, and its roles and workflows
/// with their filters against the bundle's forms.
pub fn check_alone(doc: &Value) -> Result<Bundle, Vec<trellis_meta::MetaError>> {
    let bundle = check_bundle(doc, &|_| None)?;
    let errs = compile_rules(&bundle);
    if !errs.is_empty() {
        return Err(errs);
    }
    let mut forms = std::collections::HashMap::new();
    for f in &bundle.forms {
        let e = FormEntry::new(f.clone(), 0, initial_columns(f), None, 0).map_err(|e| match e {
            StoreError::Definition(errs) => errs,
            e => vec![trellis_meta::MetaError::new("", "invalid", e.to_string())],
        })?;
        forms.insert(f.name.clone(), Arc::new(e));
    }
    let snap = Snapshot(Arc::new(forms));
    let mut errs: Vec<_> = bundle
        .roles
        .iter()
        .enumerate()
        .flat_map(|(i, r)| check_filters(r, &snap, &format!("roles[{i}]")))
        .collect();
    for (i, w) in bundle.workflows.iter().enumerate() {
        errs.extend(crate::workflows::check_filters(
            w,
            &snap,
            &format!("workflows[{i}]"),
        ));
    }
    for (i, r) in bundle.reports.iter().enumerate() {
        errs.extend(crate::reports::check_filters(
            r,
            &snap,
            &format!("reports[{i}]"),
        ));
    }
    if errs.is_empty() {
        Ok(bundle)
    } else {
        Err(errs)
    }
}

/// Installed bundles.
pub async fn list(db: &Db) -> Result<Vec<bundle_e::Model>, StoreError> {
    Ok(bundle_e::Entity::find()
        .order_by_asc(bundle_e::Column::Name)
        .all(&db.reader)
        .await?)
}

/// Export an installed bundle as an installable document.
pub async fn export(
    db: &Db,
    registry: &Registry,
    roles: &Roles,
    rules: &crate::rules::RuleSet,
    name: &str,
) -> Result<Bundle, StoreError> {
    let m = bundle_e::Entity::find_by_id(name.to_owned())
        .one(&db.reader)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("bundle {name}")))?;
    let mut b: Bundle = serde_json::from_value(m.manifest)?;
    let forms: Vec<Arc<FormEntry>> = registry
        .list()
        .into_iter()
        .filter(|e| e.bundle.as_deref() == Some(name))
        .collect();
    b.forms = forms.iter().map(|e| e.form.clone()).collect();
    b.roles = roles
        .list()
        .into_iter()
        .filter(|e| e.bundle.as_deref() == Some(name))
        .map(|e| (*e.role).clone())
        .collect();
    let mut own: Vec<crate::rules::RuleEntry> = rules
        .list()
        .into_iter()
        .filter(|e| e.bundle.as_deref() == Some(name))
        .collect();
    own.sort_by_key(|e| e.position);
    b.rules = own.into_iter().map(|e| (*e.rule).clone()).collect();
    b.workflows = crate::workflows::list(&db.reader)
        .await?
        .into_iter()
        .filter(|w| w.bundle.as_deref() == Some(name))
        .map(|w| w.workflow)
        .collect();
    b.reports = crate::reports::list_reports(&db.reader)
        .await?
        .into_iter()
        .filter(|r| r.bundle.as_deref() == Some(name))
        .map(|r| r.def)
        .collect();
    b.dashboards = crate::reports::list_dashboards(&db.reader)
        .await?
        .into_iter()
        .filter(|d| d.bundle.as_deref() == Some(name))
        .map(|d| d.def)
        .collect();
    Ok(b)
}
