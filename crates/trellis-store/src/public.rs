//! Forms open to anonymous submission (web-to-lead): a public key per form, the fields a
//! visitor may fill, fixed values, a honeypot, a rate limit and the owner of new records.

use chrono::Utc;
use rand::RngCore;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use trellis_query::value::format_datetime;

use crate::admin_audit::{self, By, Event};
use crate::db::Db;
use crate::error::StoreError;
use crate::forms::Snapshot;
use crate::migrate::PUBLIC_FORMS;

/// Default submissions per minute from one address.
pub const DEFAULT_RATE: u32 = 10;

fn default_rate() -> u32 {
    DEFAULT_RATE
}

fn yes() -> bool {
    true
}

/// How a form takes anonymous submissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The fields a visitor may fill; everything else is refused.
    pub fields: Vec<String>,
    /// Values set on every submission, whatever the visitor sent (e.g. `source`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub values: Map<String, Value>,
    /// The user who owns new records.
    pub owner: String,
    /// A decoy input, invisible to people: a submission that fills it is answered as a
    /// success and dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honeypot: Option<String>,
    /// Submissions per minute from one address.
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    /// Open now?
    #[serde(default = "yes")]
    pub active: bool,
}

/// A public form.
#[derive(Debug, Clone, Serialize)]
pub struct PublicForm {
    /// The form.
    pub form: String,
    /// The key in the public address `/api/v1/public/{key}`.
    pub key: String,
    /// Its settings.
    #[serde(flatten)]
    pub settings: Settings,
}

fn new_key() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    format!("pub_{}", hex::encode(b))
}

fn bad(field: impl Into<String>, code: &'static str, en: String, zh: String) -> StoreError {
    StoreError::field(field, code, en, zh)
}

/// Check settings against the form and the users.
async fn check(db: &Db, snap: &Snapshot, form: &str, s: &Settings) -> Result<(), StoreError> {
    let entry = snap.get(form)?;
    if s.fields.is_empty() {
        return Err(bad(
            "fields",
            "required",
            "name at least one field visitors may fill".into(),
            "至少指定一个访客可填写的字段".into(),
        ));
    }
    let known = |f: &str| entry.form.field(f).is_some_and(|x| !x.is_read_only());
    for (i, f) in s.fields.iter().enumerate() {
        if !known(f) {
            return Err(bad(
                format!("fields[{i}]"),
                "unknown_field",
                format!("{form} has no writable field {f:?}"),
                format!("{form} 没有可写字段 {f:?}"),
            ));
        }
    }
    for k in s.values.keys() {
        if !known(k) {
            return Err(bad(
                format!("values.{k}"),
                "unknown_field",
                format!("{form} has no writable field {k:?}"),
                format!("{form} 没有可写字段 {k:?}"),
            ));
        }
    }
    if let Some(h) = &s.honeypot
        && (entry.form.field(h).is_some() || h.is_empty())
    {
        return Err(bad(
            "honeypot",
            "invalid_name",
            "the honeypot must be a name that is not a field of the form".into(),
            "诱饵字段不能与表单字段同名".into(),
        ));
    }
    if !(1..=10_000).contains(&s.rate_per_minute) {
        return Err(bad(
            "rate_per_minute",
            "out_of_range",
            "1 to 10000 submissions per minute".into(),
            "每分钟 1 到 10000 次".into(),
        ));
    }
    if !crate::auth::get_user(db, &s.owner)
        .await
        .is_ok_and(|u| u.active)
    {
        return Err(bad(
            "owner",
            "not_found",
            format!("no active user with id {:?}", s.owner),
            format!("找不到有效用户 {:?}", s.owner),
        ));
    }
    Ok(())
}

fn from_row(r: &sea_orm::QueryResult) -> Result<PublicForm, StoreError> {
    Ok(PublicForm {
        form: r.try_get_by_index(0)?,
        key: r.try_get_by_index(1)?,
        settings: serde_json::from_str(&r.try_get_by_index::<String>(2)?)?,
    })
}

async fn find(db: &Db, col: &str, value: &str) -> Result<Option<PublicForm>, StoreError> {
    let mut s = Query::select();
    s.columns(["form", "public_key", "settings"].map(Alias::new))
        .from(Alias::new(PUBLIC_FORMS))
        .and_where(Expr::col(Alias::new(col)).eq(value));
    match db.reader.query_one(&s).await? {
        Some(r) => Ok(Some(from_row(&r)?)),
        None => Ok(None),
    }
}

/// The public settings of a form, if it has them.
pub async fn of_form(db: &Db, form: &str) -> Result<Option<PublicForm>, StoreError> {
    find(db, "form", form).await
}

/// The public form behind a key.
pub async fn by_key(db: &Db, key: &str) -> Result<Option<PublicForm>, StoreError> {
    find(db, "public_key", key).await
}

/// Open a form (or change its settings); `rotate` issues a new key.
pub async fn put(
    db: &Db,
    snap: &Snapshot,
    form: &str,
    settings: Settings,
    rotate: bool,
    by: By<'_>,
) -> Result<PublicForm, StoreError> {
    check(db, snap, form, &settings).await?;
    let before = of_form(db, form).await?;
    let key = match &before {
        Some(p) if !rotate => p.key.clone(),
        _ => new_key(),
    };
    let txn = db.writer.begin().await?;
    let mut ins = Query::insert();
    ins.into_table(Alias::new(PUBLIC_FORMS))
        .columns(["form", "public_key", "settings", "updated_at"].map(Alias::new))
        .values([
            Expr::val(form),
            Expr::val(key.as_str()),
            Expr::val(serde_json::to_string(&settings)?),
            Expr::val(format_datetime(&Utc::now())),
        ])
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("form"))
                .update_columns(["public_key", "settings", "updated_at"].map(Alias::new))
                .to_owned(),
        );
    txn.execute(&ins).await?;
    admin_audit::record(
        &txn,
        Event {
            actor: by.actor,
            action: "public_form.update",
            target: Some(form),
            ip: by.ip,
            detail: json!({"before": before.map(|b| b.settings), "after": settings, "key_rotated": rotate}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(PublicForm {
        form: form.to_owned(),
        key,
        settings,
    })
}

/// Close a form to anonymous submission.
pub async fn delete(db: &Db, form: &str, by: By<'_>) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    let mut d = Query::delete();
    d.from_table(Alias::new(PUBLIC_FORMS))
        .and_where(Expr::col(Alias::new("form")).eq(form));
    if txn.execute(&d).await?.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("public settings of {form}")));
    }
    admin_audit::record(
        &txn,
        Event {
            actor: by.actor,
            action: "public_form.delete",
            target: Some(form),
            ip: by.ip,
            detail: json!({}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// What to do with a visitor's submission.
#[derive(Debug)]
pub enum Submission {
    /// Create a record with these values.
    Create(Map<String, Value>),
    /// The honeypot was filled: answer as if stored, store nothing.
    Drop,
}

impl Settings {
    /// Keep a visitor's values to the whitelist, add the fixed ones and the owner.
    pub fn admit(&self, mut input: Map<String, Value>) -> Result<Submission, StoreError> {
        if let Some(h) = &self.honeypot {
            let filled = input
                .remove(h)
                .is_some_and(|v| !(Value::is_null(&v) || v.as_str().is_some_and(str::is_empty)));
            if filled {
                return Ok(Submission::Drop);
            }
        }
        if let Some(k) = input.keys().find(|k| !self.fields.contains(k)) {
            return Err(StoreError::forbidden(
                k.clone(),
                "not_allowed",
                format!("visitors may not fill {k:?}"),
            ));
        }
        for (k, v) in &self.values {
            input.insert(k.clone(), v.clone());
        }
        input.insert("owner".into(), Value::String(self.owner.clone()));
        Ok(Submission::Create(input))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        serde_json::from_value(
            json!({"fields": ["company", "email"], "values": {"source": "website"},
            "owner": "u1", "honeypot": "website_url"}),
        )
        .unwrap()
    }

    #[test]
    fn submissions_keep_to_the_whitelist_and_get_fixed_values() {
        let s = settings();
        assert_eq!(s.rate_per_minute, DEFAULT_RATE);
        let Submission::Create(m) = s
            .admit(
                json!({"company": "Acme", "website_url": ""})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .unwrap()
        else {
            panic!("expected a create")
        };
        assert_eq!(
            Value::Object(m),
            json!({"company": "Acme", "source": "website", "owner": "u1"})
        );
        let err = s
            .admit(
                json!({"company": "A", "score": 99})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Forbidden { field, .. } if field == "score"));
    }

    #[test]
    fn a_filled_honeypot_drops_the_submission() {
        let r = settings()
            .admit(
                json!({"company": "Bot", "website_url": "http://spam"})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .unwrap();
        assert!(matches!(r, Submission::Drop));
    }
}
