//! Merging two records that are the same thing: the survivor takes the chosen values,
//! every relation that pointed at the other record points at the survivor, the other
//! record goes, and the change is one audit entry (both histories stay readable from the
//! survivor).

use std::collections::BTreeMap;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use trellis_access::Permissions;
use trellis_meta::role::Action;
use trellis_meta::{FieldType, SYSTEM_COLUMNS};

use crate::Store;
use crate::access;
use crate::error::StoreError;
use crate::records::{
    Actor, Audited, LineEdit, audit_updates, find_lines, now_micros, read_for_update, rewrite_lines,
};

/// Whose value a field keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Take {
    /// The survivor's.
    Survivor,
    /// The merged record's.
    Merged,
}

/// What a merge keeps: by default the survivor's values, and the merged record's where
/// the survivor has none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The record that stays.
    pub survivor: String,
    /// The record merged into it (it goes).
    pub merged: String,
    /// Field → whose value to keep, where the default is not wanted.
    #[serde(default)]
    pub take: BTreeMap<String, Take>,
}

fn empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

impl Store {
    /// Merge `req.merged` into `req.survivor`; answers the survivor as it now is and how
    /// many records each relation re-pointed (`form.field` → count).
    pub async fn merge(
        &self,
        form: &str,
        req: &MergeRequest,
        actor: &Actor,
        perms: &Permissions,
    ) -> Result<(Map<String, Value>, BTreeMap<String, u64>), StoreError> {
        let _writing = self.registry.change.read().await;
        let snap = self.registry.snapshot();
        let entry = snap.get(form)?;
        let dialect = self.db.dialect;
        if req.survivor == req.merged {
            return Err(StoreError::field(
                "merged",
                "same_record",
                "a record cannot be merged into itself",
                "记录不能与自身合并",
            ));
        }
        for f in req.take.keys() {
            let ok = entry
                .form
                .field(f)
                .is_some_and(|fd| !fd.is_read_only() && fd.kind != FieldType::Subtable)
                || f == "owner";
            if !ok || !access::visible(perms, form, f) {
                return Err(StoreError::field(
                    format!("take.{f}"),
                    "unknown_field",
                    format!("{f:?} is not a field a merge can choose"),
                    format!("{f:?} 不是可选择的字段"),
                ));
            }
        }
        let update_scope = crate::records::both(
            access::rows(perms, &snap, form, Action::Update)?,
            access::rows(perms, &snap, form, Action::Read)?,
        );
        let delete_scope = crate::records::both(
            access::rows(perms, &snap, form, Action::Delete)?,
            access::rows(perms, &snap, form, Action::Read)?,
        );
        let now = now_micros();
        let txn = self.db.writer.begin().await?;
        let survivor =
            read_for_update(&txn, dialect, &entry, &req.survivor, update_scope.as_ref()).await?;
        let merged =
            read_for_update(&txn, dialect, &entry, &req.merged, delete_scope.as_ref()).await?;
        // The values the survivor ends with.
        let mut patch = Map::new();
        let mut fields: Vec<&str> = entry
            .form
            .fields
            .iter()
            .filter(|f| !f.is_read_only() && f.kind != FieldType::Attachment)
            .map(|f| f.name.as_str())
            .collect();
        fields.push("owner");
        for f in fields {
            if !access::visible(perms, form, f) {
                continue;
            }
            let take = req
                .take
                .get(f)
                .copied()
                .unwrap_or(if empty(survivor.get(f)) {
                    Take::Merged
                } else {
                    Take::Survivor
                });
            if take == Take::Merged && merged.get(f) != survivor.get(f) && !empty(merged.get(f)) {
                patch.insert(f.to_owned(), merged.get(f).cloned().unwrap_or(Value::Null));
            } else if take == Take::Merged && empty(merged.get(f)) && !empty(survivor.get(f)) {
                patch.insert(f.to_owned(), Value::Null);
            }
        }
        // Relations that pointed at the merged record point at the survivor, in lines of
        // subtables too; each record re-pointed gets an update entry of its own.
        let mut repointed = BTreeMap::new();
        for (re, field) in snap.referrers(form) {
            let Some((column, _)) = re.column(&field.name) else {
                continue;
            };
            let mut s = Query::select();
            s.columns([Alias::new("id"), Alias::new("version")])
                .from(Alias::new(&re.table))
                .and_where(Expr::col(Alias::new(column)).eq(req.merged.as_str()))
                .and_where(Expr::col(Alias::new("id")).ne(req.merged.as_str()));
            let mut audits = Vec::new();
            for r in txn.query_all(&s).await? {
                let id: String = r.try_get_by_index(0)?;
                let version: i64 = r.try_get_by_index(1)?;
                audits.push((
                    id,
                    version + 1,
                    json!({ field.name.clone(): {"before": req.merged, "after": req.survivor} }),
                ));
            }
            if audits.is_empty() {
                continue;
            }
            let mut u = Query::update();
            u.table(Alias::new(&re.table))
                .value(Alias::new(column), req.survivor.as_str())
                .value(
                    Alias::new("version"),
                    Expr::col(Alias::new("version")).add(1),
                )
                .value(
                    Alias::new("updated_at"),
                    crate::records::stamp(&now, dialect)?,
                )
                .and_where(Expr::col(Alias::new(column)).eq(req.merged.as_str()))
                .and_where(Expr::col(Alias::new("id")).ne(req.merged.as_str()));
            txn.execute(&u).await?;
            audit_updates(&txn, &self.db.watch, &re.form.name, &audits, actor, now).await?;
            repointed.insert(
                format!("{}.{}", re.form.name, field.name),
                audits.len() as u64,
            );
        }
        for (re, sub, line_field) in snap.line_referrers(form) {
            let mut records =
                find_lines(&txn, dialect, &re, &sub, &line_field, &req.merged).await?;
            records.retain(|m| m.get("id").and_then(Value::as_str) != Some(req.merged.as_str()));
            if records.is_empty() {
                continue;
            }
            rewrite_lines(
                &txn,
                &self.db,
                &re,
                &sub,
                &line_field,
                &records,
                &req.merged,
                LineEdit::Repoint(&req.survivor),
                actor,
                now,
            )
            .await?;
            repointed.insert(
                format!("{}.{}[].{}", re.form.name, sub.name, line_field.name),
                records.len() as u64,
            );
        }
        // The merged record goes first, so the survivor may take its unique values.
        let mut d = Query::delete();
        d.from_table(Alias::new(&entry.table))
            .and_where(Expr::col(Alias::new("id")).eq(req.merged.as_str()));
        txn.execute(&d).await?;
        crate::dedupe::delete_keys(&txn, form, std::slice::from_ref(&req.merged)).await?;
        // What the merged record was, so its values are never lost.
        let gone: Map<String, Value> = merged
            .iter()
            .filter(|(k, v)| !v.is_null() && !SYSTEM_COLUMNS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // The survivor changes as any update does (validation, permissions, rules,
        // formulas, stage gates, duplicate keys), audited as the one merge entry.
        let how = Audited {
            action: "merge",
            extra: Some((
                MERGED_FROM,
                json!({"before": null, "after": {"id": req.merged, "values": gone, "repointed": repointed}}),
            )),
            always: true,
        };
        let (after, recorded) = self
            .update_as(&txn, form, &req.survivor, patch, None, actor, perms, &how)
            .await?;
        txn.commit().await?;
        self.db.watch.ring();
        crate::rules::record_failures(&self.db, form, &recorded).await;
        Ok((after, repointed))
    }
}

/// The key of a merge entry's changes that names the merged record.
pub const MERGED_FROM: &str = "merged_from";
