//! Handing records to another owner: one record, a list, or everything a user owns (an
//! employee leaves; the customers stay with the company). One transaction, each record's
//! history and the admin audit written with it.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use trellis_access::Permissions;
use trellis_meta::role::Action;

use crate::admin_audit::{self, Event};
use crate::error::StoreError;
use crate::records::{Actor, now_micros, write_audit};
use crate::{Store, access};

/// Which records to hand over.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These ids (of one form).
    Ids(Vec<String>),
    /// Every record this user owns.
    OwnedBy(String),
}

/// What a reassignment did, per form.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reassigned {
    /// Form.
    pub form: String,
    /// Records handed over.
    pub count: u64,
}

impl Store {
    /// Give the selected records of `forms` to `to`. Records outside the caller's update
    /// scope are not touched; with explicit ids, one of them outside it fails the call
    /// (404, or 403 when the caller can read it).
    pub async fn reassign(
        &self,
        forms: &[String],
        sel: &Selection,
        to: &str,
        actor: &Actor,
        perms: &Permissions,
        ip: Option<&str>,
    ) -> Result<Vec<Reassigned>, StoreError> {
        let _writing = self.registry.change.read().await;
        let snap = self.registry.snapshot();
        let dialect = self.db.dialect;
        // Permission first: a caller who may not change these records learns nothing more.
        for form in forms {
            access::rows(perms, &snap, form, Action::Update)?;
        }
        let active = crate::auth::get_user(&self.db, to)
            .await
            .ok()
            .filter(|u| u.active);
        if active.is_none() {
            return Err(StoreError::field(
                "to",
                "not_found",
                format!("no active user with id {to:?}"),
                format!("找不到有效用户 {to:?}"),
            ));
        }
        let now = now_micros();
        let txn = self.db.writer.begin().await?;
        let mut out = Vec::new();
        for form in forms {
            let entry = snap.get(form)?;
            // Only rows the caller may both read and change.
            let scope = match (
                access::rows(perms, &snap, form, Action::Update)?,
                access::rows(perms, &snap, form, Action::Read)?,
            ) {
                (Some(a), Some(b)) => Some(a.and(b)),
                (a, b) => a.or(b),
            };
            if !perms.may_own(form, Action::Update, to) {
                return Err(StoreError::forbidden(
                    "to",
                    "owner_out_of_scope",
                    format!("you may not hand {form} records to this user"),
                ));
            }
            let mut s = Query::select();
            s.columns(["id", "version", "owner"].map(Alias::new))
                .from(Alias::new(&entry.table));
            match sel {
                Selection::Ids(ids) => {
                    s.and_where(Expr::col(Alias::new("id")).is_in(ids.iter().cloned()));
                }
                Selection::OwnedBy(u) => {
                    s.and_where(Expr::col(Alias::new("owner")).eq(u.as_str()));
                }
            }
            if let Some(f) = &scope {
                s.cond_where(f.to_condition(dialect));
            }
            // Hold the rows until the owner changes, so the history's "before" is right.
            if dialect == trellis_query::Dialect::Postgres {
                s.lock(sea_orm::sea_query::LockType::Update);
            }
            let mut rows: Vec<(String, i64, Option<String>)> = Vec::new();
            for r in txn.query_all(&s).await? {
                rows.push((
                    r.try_get_by_index(0)?,
                    r.try_get_by_index(1)?,
                    r.try_get_by_index(2)?,
                ));
            }
            if let Selection::Ids(ids) = sel
                && let Some(missing) = ids.iter().find(|i| !rows.iter().any(|r| &r.0 == *i))
            {
                drop(txn);
                return Err(self.unreachable(form, missing, perms).await);
            }
            rows.retain(|r| r.2.as_deref() != Some(to));
            for chunk in rows.chunks(500) {
                let mut u = Query::update();
                u.table(Alias::new(&entry.table))
                    .value(Alias::new("owner"), to)
                    .value(
                        Alias::new("version"),
                        Expr::col(Alias::new("version")).add(1),
                    )
                    .value(
                        Alias::new("updated_at"),
                        trellis_query::value::to_sql(
                            trellis_query::ValueKind::DateTime,
                            &json!(trellis_query::value::format_datetime(&now)),
                            dialect,
                        )
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    )
                    .and_where(
                        Expr::col(Alias::new("id")).is_in(chunk.iter().map(|r| r.0.clone())),
                    );
                txn.execute(&u).await?;
            }
            let entries: Vec<(&str, &str, i64, &str, Value)> = rows
                .iter()
                .map(|(id, v, before)| {
                    (
                        form.as_str(),
                        id.as_str(),
                        v + 1,
                        "update",
                        json!({"owner": {"before": before, "after": to}}),
                    )
                })
                .collect();
            write_audit(&txn, &self.db.watch, &entries, actor, now).await?;
            if !rows.is_empty() {
                let from = match sel {
                    Selection::OwnedBy(u) => json!(u),
                    Selection::Ids(_) => Value::Null,
                };
                admin_audit::record(
                    &txn,
                    Event {
                        actor: actor.user.as_deref(),
                        action: "reassign",
                        target: Some(form),
                        ip,
                        detail: json!({"form": form, "from": from, "to": to, "count": rows.len(),
                            "ids": rows.iter().take(100).map(|r| r.0.as_str()).collect::<Vec<_>>()}),
                    },
                )
                .await?;
            }
            out.push(Reassigned {
                form: form.clone(),
                count: rows.len() as u64,
            });
        }
        txn.commit().await?;
        Ok(out)
    }

    /// 404 for a record the caller cannot read, 403 for one they read but may not change.
    async fn unreachable(&self, form: &str, id: &str, perms: &Permissions) -> StoreError {
        match self.get(form, id, Some(&["id".to_owned()]), perms).await {
            Ok(_) => StoreError::forbidden(
                "ids",
                "not_permitted",
                format!("you may not reassign the {form} record {id:?}"),
            ),
            Err(e) => e,
        }
    }
}
