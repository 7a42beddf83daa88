//! Who a task, notice or approval goes to: the record's owner, the owner's manager, its
//! creator, a user named by e-mail, a user field, or everyone holding a role.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::{Map, Value};
use trellis_meta::workflow::{Assignee, Who};
use trellis_store::entity::user;
use trellis_store::migrate::USER_ROLES;

use crate::error::{Result, WorkflowError};

/// An assignee resolved: one or more active users, or a role whose holders share the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// These users.
    Users(Vec<String>),
    /// Anyone holding this role (its active holders, for notices).
    Role(String, Vec<String>),
}

impl Resolved {
    /// Every user it reaches.
    pub fn users(&self) -> &[String] {
        match self {
            Resolved::Users(u) | Resolved::Role(_, u) => u,
        }
    }
}

async fn active<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id.to_owned())
        .one(c)
        .await?
        .filter(|u| u.active))
}

fn text(record: &Map<String, Value>, field: &str) -> Option<String> {
    record
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Resolve an assignee against a record; `what` names the step part in errors.
pub async fn resolve<C: ConnectionTrait>(
    c: &C,
    who: &Assignee,
    record: &Map<String, Value>,
    what: &str,
) -> Result<Resolved> {
    let one = |id: Option<String>, why: &str| -> Result<Resolved> {
        id.map(|i| Resolved::Users(vec![i]))
            .ok_or_else(|| WorkflowError::step(format!("{what}: {why}")))
    };
    match who {
        Assignee::Who(Who::Owner) => {
            let id = match text(record, "owner") {
                Some(o) => active(c, &o).await?.map(|u| u.id),
                None => None,
            };
            one(id, "the record has no active owner")
        }
        Assignee::Who(Who::Creator) => {
            let id = match text(record, "created_by") {
                Some(o) => active(c, &o).await?.map(|u| u.id),
                None => None,
            };
            one(id, "the record has no active creator")
        }
        Assignee::Who(Who::OwnerManager) => {
            let owner = match text(record, "owner") {
                Some(o) => active(c, &o).await?,
                None => None,
            };
            let Some(owner) = owner else {
                return one(
                    None,
                    "the record has no active owner, so no owner's manager",
                );
            };
            let manager = match owner.manager {
                Some(m) => active(c, &m).await?.map(|u| u.id),
                None => None,
            };
            one(
                manager,
                &format!("the owner {} has no active manager", owner.email),
            )
        }
        Assignee::Manager { manager: levels } => {
            let mut at = match text(record, "owner") {
                Some(o) => active(c, &o).await?,
                None => None,
            };
            let Some(owner) = at.clone() else {
                return one(None, "the record has no active owner, so no manager");
            };
            for _ in 0..*levels {
                at = match at.and_then(|u| u.manager) {
                    Some(m) => active(c, &m).await?,
                    None => None,
                };
            }
            one(
                at.map(|u| u.id),
                &format!(
                    "the reporting line of {} has no active manager {levels} level(s) up",
                    owner.email
                ),
            )
        }
        Assignee::User { user: email } => {
            let u = user::Entity::find()
                .filter(user::Column::Email.eq(email.to_lowercase()))
                .one(c)
                .await?
                .filter(|u| u.active);
            one(
                u.map(|u| u.id),
                &format!("no active user with the e-mail {email:?}"),
            )
        }
        Assignee::Field { field } => {
            let id = match text(record, field) {
                Some(o) => active(c, &o).await?.map(|u| u.id),
                None => None,
            };
            one(id, &format!("the field {field:?} names no active user"))
        }
        Assignee::Role { role } => {
            let mut s = Query::select();
            s.column((Alias::new(USER_ROLES), Alias::new("user_id")))
                .from(Alias::new(USER_ROLES))
                .inner_join(
                    user::Entity,
                    Expr::col((user::Entity, user::Column::Id))
                        .equals((Alias::new(USER_ROLES), Alias::new("user_id"))),
                )
                .and_where(
                    Expr::col((Alias::new(USER_ROLES), Alias::new("role"))).eq(role.as_str()),
                )
                .and_where(Expr::col((user::Entity, user::Column::Active)).eq(true));
            let users = c
                .query_all(&s)
                .await?
                .iter()
                .map(|r| r.try_get_by_index::<String>(0))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if users.is_empty() {
                return Err(WorkflowError::step(format!(
                    "{what}: nobody active holds the role {role:?}"
                )));
            }
            Ok(Resolved::Role(role.clone(), users))
        }
    }
}
