//! Seed data: teams, users and records with references, as shipped in a bundle's demo file.

use std::collections::HashMap;

use serde_json::{Map, Value};
use trellis_meta::form::{Field, FieldType};

use crate::Store;
use crate::admin_audit::By;
use crate::auth;
use crate::error::StoreError;
use crate::records::Actor;

/// What a seed created.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SeedReport {
    /// Users created.
    pub users: usize,
    /// Teams created.
    pub teams: usize,
    /// Records created per form.
    pub records: Vec<(String, usize)>,
}

fn resolve(
    fields: &[Field],
    rec: &mut Map<String, Value>,
    refs: &HashMap<String, String>,
    users: &HashMap<String, String>,
) -> Result<(), StoreError> {
    for f in fields {
        let Some(v) = rec.get_mut(&f.name) else {
            continue;
        };
        match f.kind {
            FieldType::Relation => {
                if let Some(r) = v.as_str().and_then(|s| s.strip_prefix('@')) {
                    let id = refs.get(r).ok_or_else(|| {
                        StoreError::field(
                            &f.name,
                            "unknown_ref",
                            format!("no record named @{r}"),
                            format!("找不到 @{r}"),
                        )
                    })?;
                    *v = Value::String(id.clone());
                }
            }
            FieldType::User => {
                if let Some(id) = v.as_str().and_then(|e| users.get(&e.to_lowercase())) {
                    *v = Value::String(id.clone());
                }
            }
            FieldType::Subtable => {
                if let Value::Array(lines) = v {
                    for line in lines.iter_mut() {
                        if let Value::Object(m) = line {
                            resolve(&f.fields, m, refs, users)?;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Load a seed document: `{"teams":[…], "users":[…], "records":{"form":[…]}}`. Records
/// may name themselves with `_ref` and point at others with `"@ref"`; owners and user
/// fields are given as e-mails.
pub async fn load(store: &Store, seed: &Value, actor: &Actor) -> Result<SeedReport, StoreError> {
    let db = &store.db;
    let mut report = SeedReport::default();
    let mut users: HashMap<String, String> = HashMap::new();
    for u in auth::list_users(db).await? {
        users.insert(u.email.clone(), u.id.clone());
    }
    let seed_users = seed
        .get("users")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for u in &seed_users {
        let email = u
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        if users.contains_key(&email) {
            continue;
        }
        let name = u.get("name").and_then(Value::as_str).unwrap_or(&email);
        let pw = u
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or("demo-pass-2026");
        let is_admin = u.get("admin").and_then(Value::as_bool).unwrap_or(false);
        let roles: Vec<String> = u
            .get("roles")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let m = auth::create_user(
            db,
            &auth::NewUser {
                email: email.clone(),
                name: name.to_owned(),
                password: pw.to_owned(),
                is_admin,
                roles,
                ..auth::NewUser::default()
            },
            By::default(),
        )
        .await?;
        users.insert(email, m.id);
        report.users += 1;
    }
    for u in &seed_users {
        let email = u
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        if let (Some(id), Some(mgr)) = (
            users.get(&email),
            u.get("manager")
                .and_then(Value::as_str)
                .and_then(|m| users.get(&m.to_lowercase())),
        ) {
            auth::update_user(
                db,
                id,
                auth::UserPatch {
                    manager: Some(Some(mgr.clone())),
                    ..auth::UserPatch::default()
                },
                By::default(),
            )
            .await?;
        }
    }
    let existing: Vec<String> = auth::list_teams(db)
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    for t in seed
        .get("teams")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() || existing.iter().any(|e| e == name) {
            continue;
        }
        let manager = t
            .get("manager")
            .and_then(Value::as_str)
            .and_then(|m| users.get(&m.to_lowercase()))
            .cloned();
        let members: Vec<String> = seed_users
            .iter()
            .filter(|u| {
                u.get("teams")
                    .and_then(Value::as_array)
                    .is_some_and(|ts| ts.iter().any(|x| x.as_str() == Some(name)))
            })
            .filter_map(|u| {
                u.get("email")
                    .and_then(Value::as_str)
                    .and_then(|e| users.get(&e.to_lowercase()))
                    .cloned()
            })
            .collect();
        auth::create_team(
            db,
            name,
            t.get("label").cloned().unwrap_or(Value::Null),
            manager,
            &members,
            By::default(),
        )
        .await?;
        report.teams += 1;
    }
    let mut refs: HashMap<String, String> = HashMap::new();
    if let Some(Value::Object(forms)) = seed.get("records") {
        for (form, recs) in forms {
            let entry = store.registry.get(form)?;
            let mut n = 0;
            for r in recs.as_array().cloned().unwrap_or_default() {
                let Value::Object(mut m) = r else { continue };
                let name = m.remove("_ref").and_then(|v| v.as_str().map(str::to_owned));
                if let Some(o) = m
                    .get("owner")
                    .and_then(Value::as_str)
                    .and_then(|e| users.get(&e.to_lowercase()))
                {
                    m.insert("owner".into(), Value::String(o.clone()));
                }
                resolve(&entry.form.fields, &mut m, &refs, &users)?;
                let created = store
                    .create(form, m, actor, &trellis_access::Permissions::system())
                    .await
                    .map_err(|e| match e {
                        StoreError::Validation(mut errs) => {
                            for x in &mut errs {
                                x.field = format!("records.{form}[{n}].{}", x.field);
                            }
                            StoreError::Validation(errs)
                        }
                        e => e,
                    })?;
                if let (Some(name), Some(id)) = (name, created.get("id").and_then(Value::as_str)) {
                    refs.insert(name, id.to_owned());
                }
                n += 1;
            }
            report.records.push((form.clone(), n));
        }
    }
    Ok(report)
}
