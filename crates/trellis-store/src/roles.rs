//! Role definitions (cached like forms) and which user holds which role.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use parking_lot::RwLock;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use trellis_meta::MetaError;
use trellis_meta::role::{ANY_FORM, Role, check_role_at};
use trellis_query::Filter;
use trellis_query::value::format_datetime;

use crate::admin_audit::{self, Event};
use crate::db::Db;
use crate::error::StoreError;
use crate::forms::Snapshot;
use crate::migrate::{ROLES, USER_ROLES};

/// A role with where it came from.
#[derive(Debug, Clone)]
pub struct RoleEntry {
    /// The definition.
    pub role: Arc<Role>,
    /// Bundle that installed it.
    pub bundle: Option<String>,
    /// Position in the bundle.
    pub position: i64,
}

/// Every role, cached; replaced whole on every change.
#[derive(Default)]
pub struct Roles {
    map: RwLock<Arc<HashMap<String, RoleEntry>>>,
}

impl Roles {
    /// Load every role.
    pub async fn load(db: &Db) -> Result<Self, StoreError> {
        let r = Self::default();
        r.reload(db).await?;
        Ok(r)
    }

    /// Read all roles again (cheap: a handful of rows); other processes' changes arrive so.
    pub async fn reload(&self, db: &Db) -> Result<(), StoreError> {
        let map = crate::definitions::all::<Role, _>(&db.reader, ROLES)
            .await?
            .into_iter()
            .map(|r| {
                let e = RoleEntry {
                    role: Arc::new(r.def),
                    bundle: r.bundle,
                    position: r.position,
                };
                (r.name, e)
            })
            .collect();
        *self.map.write() = Arc::new(map);
        Ok(())
    }

    /// One role.
    pub fn get(&self, name: &str) -> Option<RoleEntry> {
        self.map.read().get(name).cloned()
    }

    /// The definitions of these role names (unknown names are skipped).
    pub fn resolve(&self, names: &[String]) -> Vec<Arc<Role>> {
        let m = self.map.read();
        names
            .iter()
            .filter_map(|n| m.get(n).map(|e| e.role.clone()))
            .collect()
    }

    /// Every role, in bundle order then by name.
    pub fn list(&self) -> Vec<RoleEntry> {
        let mut v: Vec<RoleEntry> = self.map.read().values().cloned().collect();
        v.sort_by(|a, b| {
            (&a.bundle, a.position, &a.role.name).cmp(&(&b.bundle, b.position, &b.role.name))
        });
        v
    }
}

/// Check a role: its shape, forms and fields, and each filter against the forms.
pub fn check(doc: &Value, snap: &Snapshot, prefix: &str) -> Result<Role, Vec<MetaError>> {
    let role = check_role_at(
        doc,
        &|f| {
            snap.0
                .get(f)
                .map(|e| e.form.fields.iter().map(|x| x.name.clone()).collect())
        },
        prefix,
    )?;
    let errs = check_filters(&role, snap, prefix);
    if errs.is_empty() { Ok(role) } else { Err(errs) }
}

/// Each grant's filter must parse against its form (`$me` bound to a stand-in id).
pub fn check_filters(role: &Role, snap: &Snapshot, prefix: &str) -> Vec<MetaError> {
    let mut errs = Vec::new();
    for (form, grant) in &role.forms {
        let Some(f) = &grant.filter else { continue };
        let at = format!(
            "{}forms.{form}.filter",
            if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}.")
            }
        );
        if form == ANY_FORM {
            errs.push(MetaError::new(
                at,
                "not_allowed",
                "the \"*\" grant applies to many forms and cannot have a filter",
            ));
            continue;
        }
        let stand_in = ["$me-check".to_owned()];
        let bound = trellis_access::bind(f, "$me-check", &stand_in, &stand_in);
        if let Err(e) = Filter::parse(form, &bound, snap, Utc::now()) {
            errs.push(MetaError::new(
                if e.path.is_empty() {
                    at
                } else {
                    format!("{at}.{}", e.path)
                },
                e.code,
                e.message,
            ));
        }
    }
    errs
}

/// Insert or replace a role inside a transaction; answers whether anything changed.
pub async fn save<C: ConnectionTrait>(
    c: &C,
    role: &Role,
    bundle: Option<&str>,
    position: i64,
    actor: Option<&str>,
    ip: Option<&str>,
) -> Result<bool, StoreError> {
    let before: Option<(Role, Option<String>, i64)> = crate::definitions::one(c, ROLES, &role.name)
        .await?
        .map(|r| (r.def, r.bundle, r.position));
    if let Some((b, bb, bp)) = &before
        && b == role
        && bb.as_deref() == bundle
        && *bp == position
    {
        return Ok(false);
    }
    let mut ins = Query::insert();
    ins.into_table(Alias::new(ROLES))
        .columns(["name", "definition", "bundle", "position", "updated_at"].map(Alias::new))
        .values([
            Expr::val(role.name.as_str()),
            Expr::val(serde_json::to_string(role)?),
            Expr::val(bundle.map(str::to_owned)),
            Expr::val(position),
            Expr::val(format_datetime(&Utc::now())),
        ])
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("name"))
                .update_columns(["definition", "bundle", "position", "updated_at"].map(Alias::new))
                .to_owned(),
        );
    c.execute(&ins).await?;
    admin_audit::record(
        c,
        Event {
            actor,
            action: if before.is_some() {
                "role.update"
            } else {
                "role.create"
            },
            target: Some(&role.name),
            ip,
            detail: json!({"before": before.map(|b| b.0), "after": role, "bundle": bundle}),
        },
    )
    .await?;
    Ok(true)
}

/// Store a role on its own (not from a bundle); the cache is reloaded.
pub async fn put(
    db: &Db,
    roles: &Roles,
    role: &Role,
    actor: Option<&str>,
    ip: Option<&str>,
) -> Result<bool, StoreError> {
    let keep = roles.get(&role.name);
    let txn = db.writer.begin().await?;
    let changed = save(
        &txn,
        role,
        keep.as_ref().and_then(|e| e.bundle.as_deref()),
        keep.as_ref().map_or(0, |e| e.position),
        actor,
        ip,
    )
    .await?;
    txn.commit().await?;
    roles.reload(db).await?;
    Ok(changed)
}

/// Delete a role nobody holds.
pub async fn delete(
    db: &Db,
    roles: &Roles,
    name: &str,
    actor: Option<&str>,
    ip: Option<&str>,
) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    let mut s = Query::select();
    s.column(Alias::new("user_id"))
        .from(Alias::new(USER_ROLES))
        .and_where(Expr::col(Alias::new("role")).eq(name))
        .limit(1000);
    let holders = txn.query_all(&s).await?.len();
    if holders > 0 {
        return Err(StoreError::Conflict {
            field: "name".into(),
            code: "role_in_use",
            message: format!("{holders} user(s) hold the role {name:?}; take it from them first"),
            rows: vec![],
        });
    }
    let mut d = Query::delete();
    d.from_table(Alias::new(ROLES))
        .and_where(Expr::col(Alias::new("name")).eq(name));
    if txn.execute(&d).await?.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("role {name}")));
    }
    admin_audit::record(
        &txn,
        Event {
            actor,
            action: "role.delete",
            target: Some(name),
            ip,
            detail: json!({}),
        },
    )
    .await?;
    txn.commit().await?;
    roles.reload(db).await?;
    Ok(())
}

/// The role names a user holds, sorted.
pub async fn of_user<C: ConnectionTrait>(c: &C, user: &str) -> Result<Vec<String>, StoreError> {
    let mut s = Query::select();
    s.column(Alias::new("role"))
        .from(Alias::new(USER_ROLES))
        .and_where(Expr::col(Alias::new("user_id")).eq(user))
        .order_by(Alias::new("role"), Order::Asc);
    c.query_all(&s)
        .await?
        .iter()
        .map(|r| Ok(r.try_get_by_index::<String>(0)?))
        .collect()
}

/// Every (user, role) pair.
pub async fn all_holders(db: &Db) -> Result<Vec<(String, String)>, StoreError> {
    let mut s = Query::select();
    s.columns(["user_id", "role"].map(Alias::new))
        .from(Alias::new(USER_ROLES))
        .order_by(Alias::new("role"), Order::Asc);
    db.reader
        .query_all(&s)
        .await?
        .iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect()
}

/// Give a user exactly these roles, inside the caller's transaction; each must exist.
/// Records a `user.roles` audit event when they change.
pub async fn set_user_roles<C: ConnectionTrait>(
    c: &C,
    user: &str,
    names: &[String],
    actor: Option<&str>,
    ip: Option<&str>,
) -> Result<(), StoreError> {
    for (i, n) in names.iter().enumerate() {
        // Asked inside the transaction: a role deleted meanwhile is not granted.
        let mut q = Query::select();
        q.column(Alias::new("name"))
            .from(Alias::new(ROLES))
            .and_where(Expr::col(Alias::new("name")).eq(n.as_str()));
        if c.query_one(&q).await?.is_none() {
            return Err(StoreError::field(
                format!("roles[{i}]"),
                "not_found",
                format!("no role named {n:?}"),
                format!("找不到角色 {n:?}"),
            ));
        }
    }
    let mut wanted: Vec<String> = names.to_vec();
    wanted.sort();
    wanted.dedup();
    let before = of_user(c, user).await?;
    if before == wanted {
        return Ok(());
    }
    let mut d = Query::delete();
    d.from_table(Alias::new(USER_ROLES))
        .and_where(Expr::col(Alias::new("user_id")).eq(user));
    c.execute(&d).await?;
    if !wanted.is_empty() {
        let mut ins = Query::insert();
        ins.into_table(Alias::new(USER_ROLES))
            .columns(["user_id", "role"].map(Alias::new));
        for r in &wanted {
            ins.values([Expr::val(user), Expr::val(r.as_str())])
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
        c.execute(&ins).await?;
    }
    admin_audit::record(
        c,
        Event {
            actor,
            action: "user.roles",
            target: Some(user),
            ip,
            detail: json!({"before": before, "after": wanted}),
        },
    )
    .await?;
    Ok(())
}
