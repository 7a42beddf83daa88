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

/// The active user a user field of the record names.
async fn in_field<C: ConnectionTrait>(
    c: &C,
    record: &Map<String, Value>,
    field: &str,
) -> Result<Option<user::Model>> {
    match record
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(id) => active(c, id).await,
        None => Ok(None),
    }
}

/// The owner's manager `levels` up the reporting line.
async fn up_the_line<C: ConnectionTrait>(
    c: &C,
    record: &Map<String, Value>,
    levels: u8,
    what: &str,
) -> Result<Resolved> {
    let Some(owner) = in_field(c, record, "owner").await? else {
        return Err(WorkflowError::step(format!(
            "{what}: the record has no active owner, so no manager"
        )));
    };
    let mut at = Some(owner.clone());
    for _ in 0..levels {
        at = match at.and_then(|u| u.manager) {
            Some(m) => active(c, &m).await?,
            None => None,
        };
    }
    at.map(|u| Resolved::Users(vec![u.id])).ok_or_else(|| {
        WorkflowError::step(format!(
            "{what}: the reporting line of {} has no active manager {levels} level(s) up",
            owner.email
        ))
    })
}

/// Resolve an assignee against a record; `what` names the step part in errors.
pub async fn resolve<C: ConnectionTrait>(
    c: &C,
    who: &Assignee,
    record: &Map<String, Value>,
    what: &str,
) -> Result<Resolved> {
    let one = |u: Option<user::Model>, why: &str| -> Result<Resolved> {
        u.map(|u| Resolved::Users(vec![u.id]))
            .ok_or_else(|| WorkflowError::step(format!("{what}: {why}")))
    };
    match who {
        Assignee::Who(Who::Owner) => one(
            in_field(c, record, "owner").await?,
            "the record has no active owner",
        ),
        Assignee::Who(Who::Creator) => one(
            in_field(c, record, "created_by").await?,
            "the record has no active creator",
        ),
        Assignee::Field { field } => one(
            in_field(c, record, field).await?,
            &format!("the field {field:?} names no active user"),
        ),
        Assignee::Who(Who::OwnerManager) => up_the_line(c, record, 1, what).await,
        Assignee::Manager { manager } => up_the_line(c, record, *manager, what).await,
        Assignee::User { user: email } => {
            let u = user::Entity::find()
                .filter(user::Column::Email.eq(email.to_lowercase()))
                .one(c)
                .await?
                .filter(|u| u.active);
            one(u, &format!("no active user with the e-mail {email:?}"))
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
