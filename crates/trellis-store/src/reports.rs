//! Report and dashboard definitions: checked against the forms (and, for dashboards, the
//! reports), stored with an admin-audit entry per change.

use chrono::Utc;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use trellis_meta::MetaError;
use trellis_meta::report::{
    Dashboard, Report, bind_params, check_dashboard_at, check_report_at, sample_params,
};
use trellis_query::Filter;
use trellis_query::value::format_datetime;

use crate::admin_audit::{self, By, Event};
use crate::db::Db;
use crate::error::StoreError;
use crate::forms::Snapshot;
use crate::migrate::{DASHBOARDS, REPORTS};

/// A stored definition and the bundle that installed it.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    /// The definition.
    pub def: T,
    /// Bundle that installed it.
    pub bundle: Option<String>,
    /// Last change.
    pub updated_at: String,
}

/// The two kinds stored here.
trait Kind: Serialize + DeserializeOwned + PartialEq {
    const TABLE: &'static str;
    const NOUN: &'static str;
    fn name(&self) -> &str;
    fn form(&self) -> Option<&str>;
}

impl Kind for Report {
    const TABLE: &'static str = REPORTS;
    const NOUN: &'static str = "report";
    fn name(&self) -> &str {
        &self.name
    }
    fn form(&self) -> Option<&str> {
        Some(&self.form)
    }
}

impl Kind for Dashboard {
    const TABLE: &'static str = DASHBOARDS;
    const NOUN: &'static str = "dashboard";
    fn name(&self) -> &str {
        &self.name
    }
    fn form(&self) -> Option<&str> {
        None
    }
}

fn under(prefix: &str, p: &str) -> String {
    match (prefix.is_empty(), p.is_empty()) {
        (true, _) => p.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if p.starts_with('[') => format!("{prefix}{p}"),
        _ => format!("{prefix}.{p}"),
    }
}

/// The filters of a report (its own, each measure's, RFM's orders) against their forms,
/// with each parameter standing in for a value of its type.
pub fn check_filters(r: &Report, snap: &Snapshot, prefix: &str) -> Vec<MetaError> {
    let sample = sample_params(&r.params);
    let mut found: Vec<(String, &str, &Value)> = Vec::new();
    if let Some(f) = &r.filter {
        found.push(("filter".into(), &r.form, f));
    }
    for (i, m) in r.measures.iter().enumerate() {
        if let Some(f) = &m.filter {
            found.push((format!("measures[{i}].filter"), &r.form, f));
        }
    }
    if let Some(x) = &r.rfm
        && let Some(f) = &x.filter
    {
        found.push(("rfm.filter".into(), &x.orders, f));
    }
    found
        .into_iter()
        .filter_map(|(at, form, f)| {
            let bound = bind_params(f, &sample).unwrap_or_else(|| json!({}));
            Filter::parse(form, &bound, snap, Utc::now())
                .err()
                .map(|e| MetaError::new(under(&under(prefix, &at), &e.path), e.code, e.message))
        })
        .collect()
}

/// Check a report document against the forms.
pub fn check_report(doc: &Value, snap: &Snapshot) -> Result<Report, Vec<MetaError>> {
    let form_of = |f: &str| snap.0.get(f).map(|e| e.form.clone());
    let r = check_report_at(doc, &form_of, "")?;
    let errs = check_filters(&r, snap, "");
    if errs.is_empty() { Ok(r) } else { Err(errs) }
}

/// Check a dashboard document against the stored reports.
pub async fn check_dashboard<C: ConnectionTrait>(
    c: &C,
    doc: &Value,
) -> Result<Dashboard, StoreError> {
    let reports = list_reports(c).await?;
    let report_of = |n: &str| {
        reports
            .iter()
            .find(|r| r.def.name == n)
            .map(|r| r.def.clone())
    };
    check_dashboard_at(doc, &report_of, "").map_err(StoreError::Definition)
}

async fn save<C: ConnectionTrait, T: Kind>(
    c: &C,
    def: &T,
    bundle: Option<&str>,
    by: By<'_>,
) -> Result<bool, StoreError> {
    let before: Option<Stored<T>> = load(c, def.name()).await?;
    let bundle = bundle
        .map(str::to_owned)
        .or_else(|| before.as_ref().and_then(|b| b.bundle.clone()));
    if let Some(b) = &before
        && b.def == *def
        && b.bundle == bundle
    {
        return Ok(false);
    }
    let now = format_datetime(&Utc::now());
    let mut ins = Query::insert();
    ins.into_table(Alias::new(T::TABLE))
        .columns(["name", "form", "definition", "bundle", "updated_at"].map(Alias::new))
        .values([
            Expr::val(def.name()),
            Expr::val(def.form().map(str::to_owned)),
            Expr::val(serde_json::to_string(def)?),
            Expr::val(bundle.clone()),
            Expr::val(now.as_str()),
        ])
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("name"))
                .update_columns(["form", "definition", "bundle", "updated_at"].map(Alias::new))
                .to_owned(),
        );
    c.execute(&ins).await?;
    let action = format!(
        "{}.{}",
        T::NOUN,
        if before.is_some() { "update" } else { "create" }
    );
    admin_audit::record(
        c,
        Event {
            actor: by.actor,
            action: &action,
            target: Some(def.name()),
            ip: by.ip,
            detail: json!({"before": before.map(|b| b.def), "after": def, "bundle": bundle}),
        },
    )
    .await?;
    Ok(true)
}

/// Store a report inside the caller's transaction (a bundle install).
pub async fn save_report<C: ConnectionTrait>(
    c: &C,
    r: &Report,
    bundle: Option<&str>,
    by: By<'_>,
) -> Result<bool, StoreError> {
    save(c, r, bundle, by).await
}

/// Store a dashboard inside the caller's transaction (a bundle install).
pub async fn save_dashboard<C: ConnectionTrait>(
    c: &C,
    d: &Dashboard,
    bundle: Option<&str>,
    by: By<'_>,
) -> Result<bool, StoreError> {
    save(c, d, bundle, by).await
}

/// Installed dashboards (but those named in `except`) that show one of `new`, checked
/// again with the new definitions: a change that breaks a widget (a KPI given a dimension,
/// a parameter a widget sets removed) is refused, naming the dashboard.
pub async fn check_dashboards<C: ConnectionTrait>(
    c: &C,
    new: &[Report],
    except: &[String],
) -> Result<(), StoreError> {
    let reports = list_reports(c).await?;
    let report_of = |n: &str| {
        new.iter().find(|r| r.name == n).cloned().or_else(|| {
            reports
                .iter()
                .find(|x| x.def.name == n)
                .map(|x| x.def.clone())
        })
    };
    let mut errs = Vec::new();
    for d in list_dashboards(c).await? {
        let shows = d
            .def
            .widgets
            .iter()
            .any(|w| new.iter().any(|r| r.name == w.report));
        if !shows || except.contains(&d.def.name) {
            continue;
        }
        let doc = serde_json::to_value(&d.def)?;
        if let Err(e) = check_dashboard_at(&doc, &report_of, &format!("dashboards.{}", d.def.name))
        {
            errs.extend(e);
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Definition(errs))
    }
}

/// Store a report on its own.
pub async fn put_report(db: &Db, r: &Report, by: By<'_>) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    check_dashboards(&txn, std::slice::from_ref(r), &[]).await?;
    save(&txn, r, None, by).await?;
    txn.commit().await?;
    Ok(())
}

/// Store a dashboard on its own, checked against the reports in the same transaction.
pub async fn put_dashboard(db: &Db, doc: &Value, by: By<'_>) -> Result<Dashboard, StoreError> {
    let txn = db.writer.begin().await?;
    let d = check_dashboard(&txn, doc).await?;
    save(&txn, &d, None, by).await?;
    txn.commit().await?;
    Ok(d)
}

async fn delete<T: Kind>(db: &Db, name: &str, by: By<'_>) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    if T::TABLE == REPORTS {
        // A dashboard that shows the report would break: say which.
        let users: Vec<String> = list_dashboards(&txn)
            .await?
            .into_iter()
            .filter(|d| d.def.widgets.iter().any(|w| w.report == name))
            .map(|d| d.def.name)
            .collect();
        if !users.is_empty() {
            return Err(StoreError::Conflict {
                field: "name".into(),
                code: "report_in_use",
                message: format!(
                    "the dashboards {} show this report; remove it from them first",
                    users.join(", ")
                ),
                rows: vec![],
            });
        }
    }
    let mut d = Query::delete();
    d.from_table(Alias::new(T::TABLE))
        .and_where(Expr::col(Alias::new("name")).eq(name));
    if txn.execute(&d).await?.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("{} {name}", T::NOUN)));
    }
    let action = format!("{}.delete", T::NOUN);
    admin_audit::record(
        &txn,
        Event {
            actor: by.actor,
            action: &action,
            target: Some(name),
            ip: by.ip,
            detail: json!({}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Delete a report (refused while a dashboard shows it).
pub async fn delete_report(db: &Db, name: &str, by: By<'_>) -> Result<(), StoreError> {
    delete::<Report>(db, name, by).await
}

/// Delete a dashboard.
pub async fn delete_dashboard(db: &Db, name: &str, by: By<'_>) -> Result<(), StoreError> {
    delete::<Dashboard>(db, name, by).await
}

fn row<T: Kind>(r: &sea_orm::QueryResult) -> Result<Stored<T>, StoreError> {
    Ok(Stored {
        def: serde_json::from_str(&r.try_get_by_index::<String>(0)?)?,
        bundle: r.try_get_by_index(1)?,
        updated_at: r.try_get_by_index(2)?,
    })
}

async fn load<C: ConnectionTrait, T: Kind>(
    c: &C,
    name: &str,
) -> Result<Option<Stored<T>>, StoreError> {
    let mut s = Query::select();
    s.columns(["definition", "bundle", "updated_at"].map(Alias::new))
        .from(Alias::new(T::TABLE))
        .and_where(Expr::col(Alias::new("name")).eq(name));
    c.query_one(&s).await?.as_ref().map(row).transpose()
}

async fn list<C: ConnectionTrait, T: Kind>(c: &C) -> Result<Vec<Stored<T>>, StoreError> {
    let mut s = Query::select();
    s.columns(["definition", "bundle", "updated_at"].map(Alias::new))
        .from(Alias::new(T::TABLE))
        .order_by(Alias::new("name"), Order::Asc);
    c.query_all(&s).await?.iter().map(row).collect()
}

/// One report.
pub async fn load_report<C: ConnectionTrait>(
    c: &C,
    name: &str,
) -> Result<Option<Stored<Report>>, StoreError> {
    load(c, name).await
}

/// Every report, by name.
pub async fn list_reports<C: ConnectionTrait>(c: &C) -> Result<Vec<Stored<Report>>, StoreError> {
    list(c).await
}

/// One dashboard.
pub async fn load_dashboard<C: ConnectionTrait>(
    c: &C,
    name: &str,
) -> Result<Option<Stored<Dashboard>>, StoreError> {
    load(c, name).await
}

/// Every dashboard, by name.
pub async fn list_dashboards<C: ConnectionTrait>(
    c: &C,
) -> Result<Vec<Stored<Dashboard>>, StoreError> {
    list(c).await
}
