//! Users, teams, password hashes and tokens. Only token hashes are stored.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine;
use chrono::{Duration, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use trellis_query::value::{format_datetime, parse_datetime};

use crate::admin_audit::{self, By, Event};
use crate::db::Db;
use crate::entity::{team, team_member, token, user};
use crate::error::StoreError;
use crate::migrate::LOGIN_FAILURES;

/// How long a login session lasts.
pub const SESSION_DAYS: i64 = 7;

/// The caller of a request, once authenticated.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// User id.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Administrator?
    pub is_admin: bool,
    /// The token used.
    #[serde(skip)]
    pub token_id: String,
    /// Roles held.
    pub roles: Vec<String>,
    /// Everyone in the user's teams and the teams they manage (the user included).
    #[serde(skip)]
    pub team: Vec<String>,
    /// Everyone below the user in the reporting line.
    #[serde(skip)]
    pub subordinates: Vec<String>,
    /// The token only reads.
    pub read_only: bool,
    /// The token reaches only these forms.
    pub forms: Option<Vec<String>>,
}

impl Principal {
    /// The subject that permissions are resolved for.
    pub fn subject(&self) -> trellis_access::Subject {
        trellis_access::Subject {
            user: self.id.clone(),
            admin: self.is_admin,
            team: self.team.clone(),
            subordinates: self.subordinates.clone(),
            read_only: self.read_only,
            forms: self.forms.clone(),
        }
    }
}

/// Everyone in `user`'s teams and the teams they manage, managers included, `user` too.
pub async fn teammates<C: ConnectionTrait>(c: &C, user: &str) -> Result<Vec<String>, StoreError> {
    let mine: Vec<String> = team_member::Entity::find()
        .filter(team_member::Column::UserId.eq(user))
        .all(c)
        .await?
        .into_iter()
        .map(|m| m.team)
        .chain(
            team::Entity::find()
                .filter(team::Column::Manager.eq(user))
                .all(c)
                .await?
                .into_iter()
                .map(|t| t.name),
        )
        .collect();
    let mut out = vec![user.to_owned()];
    if mine.is_empty() {
        return Ok(out);
    }
    for m in team_member::Entity::find()
        .filter(team_member::Column::Team.is_in(mine.clone()))
        .all(c)
        .await?
    {
        out.push(m.user_id);
    }
    for t in team::Entity::find()
        .filter(team::Column::Name.is_in(mine))
        .all(c)
        .await?
    {
        out.extend(t.manager);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Everyone below `user` in the reporting line, nearest first.
pub async fn subordinates<C: ConnectionTrait>(
    c: &C,
    user: &str,
) -> Result<Vec<String>, StoreError> {
    let lines: Vec<(String, Option<String>)> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .column(user::Column::Manager)
        .into_tuple()
        .all(c)
        .await?;
    let mut out: Vec<String> = Vec::new();
    let mut frontier = vec![user.to_owned()];
    // Bounded by the number of users, so a cycle cannot loop forever.
    while !frontier.is_empty() && out.len() < lines.len() {
        let next: Vec<String> = lines
            .iter()
            .filter(|(id, m)| {
                m.as_ref().is_some_and(|m| frontier.contains(m)) && id != user && !out.contains(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        out.extend(next.iter().cloned());
        frontier = next;
    }
    Ok(out)
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// Name.
    pub name: String,
    /// Active?
    pub active: bool,
    /// Administrator?
    pub is_admin: bool,
    /// Manager's user id.
    pub manager: Option<String>,
    /// Created.
    pub created_at: String,
}

impl From<user::Model> for UserView {
    fn from(m: user::Model) -> Self {
        Self {
            id: m.id,
            email: m.email,
            name: m.name,
            active: m.active,
            is_admin: m.is_admin,
            manager: m.manager,
            created_at: m.created_at.to_rfc3339(),
        }
    }
}

/// Hash a password with argon2id and a fresh salt.
pub fn hash_password(pw: &str) -> Result<String, StoreError> {
    Argon2::default()
        .hash_password(pw.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Corrupt(format!("password hashing failed: {e}")))
}

/// Hash off the async workers: argon2 takes tens of milliseconds of CPU on purpose.
async fn hash_blocking(pw: &str) -> Result<String, StoreError> {
    let pw = pw.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| StoreError::Corrupt(format!("password hashing stopped: {e}")))?
}

/// Verify off the async workers.
async fn verify_blocking(pw: &str, hash: &str) -> bool {
    let (pw, hash) = (pw.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
        .await
        .unwrap_or(false)
}

/// Does `pw` match the stored hash?
pub fn verify_password(pw: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(pw.as_bytes(), hash)
        .is_ok()
}

/// SHA-256 of a token secret, hex.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!(
        "trl_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// A readable random password for a bootstrap administrator.
pub fn generate_password() -> String {
    let mut b = [0u8; 15];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Smallest password length.
pub const MIN_PASSWORD: usize = 8;

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// E-mail (stored in lower case, unique).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Administrator?
    pub is_admin: bool,
    /// Manager's user id.
    pub manager: Option<String>,
    /// Team names.
    pub teams: Vec<String>,
    /// Role names.
    pub roles: Vec<String>,
}

fn not_a_user(field: impl Into<String>, id: &str) -> StoreError {
    StoreError::field(
        field,
        "not_found",
        format!("no user with id {id:?}"),
        format!("找不到用户 {id:?}"),
    )
}

fn check_password_length(p: &str) -> Result<(), StoreError> {
    if p.chars().count() < MIN_PASSWORD {
        return Err(StoreError::field(
            "password",
            "min_length",
            format!("at least {MIN_PASSWORD} characters"),
            format!("至少 {MIN_PASSWORD} 个字符"),
        ));
    }
    Ok(())
}

async fn check_teams<C: ConnectionTrait>(c: &C, teams: &[String]) -> Result<(), StoreError> {
    for (i, t) in teams.iter().enumerate() {
        if team::Entity::find_by_id(t.clone()).one(c).await?.is_none() {
            return Err(StoreError::field(
                format!("teams[{i}]"),
                "not_found",
                format!("no team named {t:?}"),
                format!("找不到团队 {t:?}"),
            ));
        }
    }
    Ok(())
}

/// Create a user with their teams and roles, in one transaction with its audit entry.
pub async fn create_user(db: &Db, new: &NewUser, by: By<'_>) -> Result<user::Model, StoreError> {
    let email = new.email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 {
        return Err(StoreError::field(
            "email",
            "format",
            "not an e-mail address",
            "不是有效的电子邮件地址",
        ));
    }
    check_password_length(&new.password)?;
    if user::Entity::find()
        .filter(user::Column::Email.eq(&email))
        .one(&db.writer)
        .await?
        .is_some()
    {
        return Err(StoreError::Unique {
            field: "email".into(),
        });
    }
    let hash = hash_blocking(&new.password).await?;
    let txn = db.writer.begin().await?;
    if let Some(m) = &new.manager
        && user::Entity::find_by_id(m.clone())
            .one(&txn)
            .await?
            .is_none()
    {
        return Err(not_a_user("manager", m));
    }
    check_teams(&txn, &new.teams).await?;
    let now = Utc::now();
    let m = user::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        email: Set(email),
        name: Set(new.name.trim().to_owned()),
        password_hash: Set(hash),
        active: Set(true),
        is_admin: Set(new.is_admin),
        manager: Set(new.manager.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| match e.sql_err() {
        // Two creates of one e-mail at once: the unique index decides.
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => StoreError::Unique {
            field: "email".into(),
        },
        _ => StoreError::Db(e),
    })?;
    let mut teams = new.teams.clone();
    teams.sort();
    teams.dedup();
    for t in &teams {
        team_member::ActiveModel {
            team: Set(t.clone()),
            user_id: Set(m.id.clone()),
        }
        .insert(&txn)
        .await?;
    }
    admin_audit::record(
        &txn,
        Event {
            actor: by.actor,
            action: "user.create",
            target: Some(&m.id),
            ip: by.ip,
            detail: json!({"email": m.email, "is_admin": m.is_admin, "manager": m.manager, "teams": teams}),
        },
    )
    .await?;
    crate::roles::set_user_roles(&txn, &m.id, &new.roles, by.actor, by.ip).await?;
    txn.commit().await?;
    Ok(m)
}

/// Users, oldest first.
pub async fn list_users(db: &Db) -> Result<Vec<user::Model>, StoreError> {
    Ok(user::Entity::find()
        .order_by_asc(user::Column::CreatedAt)
        .all(&db.reader)
        .await?)
}

/// A user by id.
pub async fn get_user(db: &Db, id: &str) -> Result<user::Model, StoreError> {
    user::Entity::find_by_id(id.to_owned())
        .one(&db.reader)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
}

/// A user by e-mail.
pub async fn find_user_by_email(db: &Db, email: &str) -> Result<Option<user::Model>, StoreError> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email.trim().to_lowercase()))
        .one(&db.reader)
        .await?)
}

/// Create the first administrator when there is no user at all. Returns the generated
/// password when none was given.
pub async fn bootstrap_admin(
    db: &Db,
    email: Option<&str>,
    password: Option<&str>,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    if user::Entity::find().count(&db.writer).await? > 0 {
        return Ok(None);
    }
    let email = email.unwrap_or("admin@localhost");
    let (pw, generated) = match password {
        Some(p) => (p.to_owned(), None),
        None => {
            let p = generate_password();
            (p.clone(), Some(p))
        }
    };
    create_user(
        db,
        &NewUser {
            email: email.to_owned(),
            name: "Administrator".into(),
            password: pw,
            is_admin: true,
            ..NewUser::default()
        },
        By::default(),
    )
    .await?;
    Ok(Some((email.to_lowercase(), generated)))
}

/// Check e-mail and password; on success open a session and return its token.
pub async fn login(
    db: &Db,
    email: &str,
    password: &str,
    ip: &str,
) -> Result<(String, user::Model), StoreError> {
    let email = email.trim().to_lowercase();
    let now = Utc::now();
    // Lockout: too many recent failures for this account, or from this address.
    for (col, value, max) in [
        ("email", email.as_str(), MAX_FAILURES_PER_ACCOUNT),
        ("ip", ip, MAX_FAILURES_PER_IP),
    ] {
        if let Some(oldest) = recent_failures(db, col, value, max, now).await? {
            let until = oldest + Duration::minutes(LOCKOUT_MINUTES);
            // Attempts while locked are not recorded: the audit noted when the lock began.
            return Err(StoreError::Locked {
                retry_after: u64::try_from(std::cmp::max((until - now).num_seconds(), 1))
                    .unwrap_or(1),
            });
        }
    }
    match check_password(db, &email, password).await {
        Ok(u) => {
            // The session, the cleared failures and the audit entry: one write.
            let txn = db.writer.begin().await?;
            let mut d = Query::delete();
            d.from_table(Alias::new(LOGIN_FAILURES))
                .and_where(Expr::col(Alias::new("email")).eq(email.as_str()));
            txn.execute(&d).await?;
            let (secret, _) = insert_token(
                &txn,
                &u.id,
                &NewToken {
                    kind: "session",
                    expires_at: Some(now + Duration::days(SESSION_DAYS)),
                    ..NewToken::default()
                },
            )
            .await?;
            admin_audit::record(
                &txn,
                Event {
                    actor: Some(&u.id),
                    action: "login",
                    target: Some(&u.id),
                    ip: Some(ip),
                    detail: json!({"email": u.email}),
                },
            )
            .await?;
            txn.commit().await?;
            Ok((secret, u))
        }
        Err(StoreError::BadCredentials) => {
            let mut ins = Query::insert();
            ins.into_table(Alias::new(LOGIN_FAILURES))
                .columns(["email", "ip", "at"].map(Alias::new))
                .values([
                    Expr::val(email.as_str()),
                    Expr::val(ip),
                    Expr::val(format_datetime(&now)),
                ])
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let txn = db.writer.begin().await?;
            txn.execute(&ins).await?;
            admin_audit::record(
                &txn,
                Event {
                    actor: None,
                    action: "login.failed",
                    target: Some(&email),
                    ip: Some(ip),
                    detail: json!({}),
                },
            )
            .await?;
            txn.commit().await?;
            // This failure may be the one that locks the account or the address.
            for (col, value, max) in [
                ("email", email.as_str(), MAX_FAILURES_PER_ACCOUNT),
                ("ip", ip, MAX_FAILURES_PER_IP),
            ] {
                if recent_failures(db, col, value, max, now).await?.is_some()
                    && recent_failures(db, col, value, max + 1, now)
                        .await?
                        .is_none()
                {
                    admin_audit::record(
                        &db.writer,
                        Event {
                            actor: None,
                            action: "login.locked",
                            target: Some(&email),
                            ip: Some(ip),
                            detail: json!({"by": col, "minutes": LOCKOUT_MINUTES}),
                        },
                    )
                    .await?;
                }
            }
            Err(StoreError::BadCredentials)
        }
        Err(e) => Err(e),
    }
}

/// Failed logins within the lockout window that lock an account or an address.
pub const MAX_FAILURES_PER_ACCOUNT: u64 = 5;
/// Failed logins from one address within the window before it is locked out.
pub const MAX_FAILURES_PER_IP: u64 = 20;
/// The lockout window, in minutes.
pub const LOCKOUT_MINUTES: i64 = 15;

/// When at least `max` failures match within the window, the time of the oldest of the
/// last `max` (the lock lifts a window after it).
async fn recent_failures(
    db: &Db,
    col: &str,
    value: &str,
    max: u64,
    now: chrono::DateTime<Utc>,
) -> Result<Option<chrono::DateTime<Utc>>, StoreError> {
    let since = format_datetime(&(now - Duration::minutes(LOCKOUT_MINUTES)));
    let mut s = Query::select();
    s.column(Alias::new("at"))
        .from(Alias::new(LOGIN_FAILURES))
        .and_where(Expr::col(Alias::new(col)).eq(value))
        .and_where(Expr::col(Alias::new("at")).gte(since))
        .order_by(Alias::new("at"), sea_orm::Order::Desc)
        .limit(max);
    let rows = db.writer.query_all(&s).await?;
    if (rows.len() as u64) < max {
        return Ok(None);
    }
    Ok(rows
        .last()
        .and_then(|r| r.try_get_by_index::<String>(0).ok())
        .and_then(|t| parse_datetime(&t)))
}

async fn check_password(db: &Db, email: &str, password: &str) -> Result<user::Model, StoreError> {
    let u = user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(&db.writer)
        .await?;
    let Some(u) = u else {
        // Spend the same time as a real check so e-mails cannot be probed by timing.
        let _ = verify_blocking(
            password,
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5aIr4ZnH7ye1U2Vz1lQ9RmCzjRg6xZ6Y0c6J6V3Ddkw",
        )
        .await;
        return Err(StoreError::BadCredentials);
    };
    // Verify even for a disabled user, so timing does not tell which accounts are disabled.
    let ok = verify_blocking(password, &u.password_hash).await;
    if !u.active || !ok {
        return Err(StoreError::BadCredentials);
    }
    Ok(u)
}

/// A token's public description.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    /// Id (for revocation).
    pub id: String,
    /// Name.
    pub name: Option<String>,
    /// `session` or `api`.
    pub kind: String,
    /// Created.
    pub created_at: String,
    /// Expires.
    pub expires_at: Option<String>,
    /// Only reads.
    pub read_only: bool,
    /// Only these forms.
    pub forms: Option<Vec<String>>,
}

impl From<token::Model> for TokenView {
    fn from(m: token::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            kind: m.kind,
            created_at: m.created_at.to_rfc3339(),
            expires_at: m.expires_at.map(|d| d.to_rfc3339()),
            read_only: m.read_only,
            forms: m.forms.and_then(|f| serde_json::from_str(&f).ok()),
        }
    }
}

/// A token to issue.
#[derive(Debug, Clone, Default)]
pub struct NewToken<'a> {
    /// `session` or `api`.
    pub kind: &'a str,
    /// A name for an API token.
    pub name: Option<String>,
    /// Expiry.
    pub expires_at: Option<chrono::DateTime<Utc>>,
    /// Only reads.
    pub read_only: bool,
    /// Only these forms.
    pub forms: Option<Vec<String>>,
}

/// Issue a token for a user and return its secret (shown once) and id. API tokens are
/// recorded in the admin audit (sessions are, as logins).
pub async fn issue(
    db: &Db,
    user_id: &str,
    t: &NewToken<'_>,
    by: By<'_>,
) -> Result<(String, String), StoreError> {
    let txn = db.writer.begin().await?;
    let (secret, id) = insert_token(&txn, user_id, t).await?;
    if t.kind != "session" {
        admin_audit::record(
            &txn,
            Event {
                actor: by.actor.or(Some(user_id)),
                action: "token.create",
                target: Some(&id),
                ip: by.ip,
                detail: json!({"user": user_id, "name": t.name, "read_only": t.read_only,
                    "forms": t.forms, "expires_at": t.expires_at.map(|e| e.to_rfc3339())}),
            },
        )
        .await?;
    }
    txn.commit().await?;
    Ok((secret, id))
}

/// Store a new token; answers its secret and id.
async fn insert_token<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    t: &NewToken<'_>,
) -> Result<(String, String), StoreError> {
    let secret = new_secret();
    let id = uuid::Uuid::now_v7().to_string();
    token::ActiveModel {
        id: Set(id.clone()),
        token_hash: Set(token_hash(&secret)),
        user_id: Set(user_id.to_owned()),
        kind: Set(t.kind.to_owned()),
        name: Set(t.name.clone()),
        created_at: Set(Utc::now()),
        expires_at: Set(t.expires_at),
        revoked_at: Set(None),
        read_only: Set(t.read_only),
        forms: Set(t.forms.as_ref().map(|f| json!(f).to_string())),
    }
    .insert(c)
    .await?;
    Ok((secret, id))
}

/// The API tokens of a user.
pub async fn list_tokens(db: &Db, user_id: &str) -> Result<Vec<token::Model>, StoreError> {
    Ok(token::Entity::find()
        .filter(token::Column::UserId.eq(user_id))
        .filter(token::Column::Kind.eq("api"))
        .filter(token::Column::RevokedAt.is_null())
        .order_by_asc(token::Column::CreatedAt)
        .all(&db.reader)
        .await?)
}

/// Revoke a token of `user_id` (an administrator may pass None to revoke anyone's).
pub async fn revoke(
    db: &Db,
    token_id: &str,
    user_id: Option<&str>,
    by: By<'_>,
) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    let t = token::Entity::find_by_id(token_id.to_owned())
        .one(&txn)
        .await?;
    let Some(t) = t.filter(|t| user_id.is_none_or(|u| u == t.user_id)) else {
        return Err(StoreError::NotFound(format!("token {token_id}")));
    };
    let (kind, owner) = (t.kind.clone(), t.user_id.clone());
    let mut a: token::ActiveModel = t.into();
    a.revoked_at = Set(Some(Utc::now()));
    a.update(&txn).await?;
    admin_audit::record(
        &txn,
        Event {
            actor: by.actor,
            action: if kind == "session" {
                "logout"
            } else {
                "token.revoke"
            },
            target: Some(token_id),
            ip: by.ip,
            detail: json!({"user": owner, "kind": kind}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Resolve a token secret to its user; None when unknown, revoked, expired or the user is disabled.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Option<Principal>, StoreError> {
    let t = token::Entity::find()
        .filter(token::Column::TokenHash.eq(token_hash(secret)))
        .one(&db.reader)
        .await?;
    let Some(t) = t else { return Ok(None) };
    token_principal(db, t).await
}

/// The principal of a token that still holds: None when it is revoked or expired, or its
/// user is gone or disabled.
async fn token_principal(db: &Db, t: token::Model) -> Result<Option<Principal>, StoreError> {
    if t.revoked_at.is_some() || t.expires_at.is_some_and(|e| e < Utc::now()) {
        return Ok(None);
    }
    let u = user::Entity::find_by_id(t.user_id.clone())
        .one(&db.reader)
        .await?;
    let Some(u) = u.filter(|u| u.active) else {
        return Ok(None);
    };
    let forms = match &t.forms {
        Some(f) => Some(serde_json::from_str::<Vec<String>>(f)?),
        None => None,
    };
    Ok(Some(principal(db, u, t.id, t.read_only, forms).await?))
}

/// A user as a principal, with what the token narrows.
async fn principal(
    db: &Db,
    u: user::Model,
    token_id: String,
    read_only: bool,
    forms: Option<Vec<String>>,
) -> Result<Principal, StoreError> {
    Ok(Principal {
        roles: crate::roles::of_user(&db.reader, &u.id).await?,
        team: teammates(&db.reader, &u.id).await?,
        subordinates: subordinates(&db.reader, &u.id).await?,
        id: u.id,
        email: u.email,
        name: u.name,
        is_admin: u.is_admin,
        token_id,
        read_only,
        forms,
    })
}

/// A user as a principal without a token (for work resumed on their behalf): their
/// roles and teams now; None when the user is gone or disabled.
pub async fn principal_of(db: &Db, id: &str) -> Result<Option<Principal>, StoreError> {
    let u = user::Entity::find_by_id(id.to_owned())
        .one(&db.reader)
        .await?;
    let Some(u) = u.filter(|u| u.active) else {
        return Ok(None);
    };
    Ok(Some(principal(db, u, String::new(), false, None).await?))
}

/// The principal a token made, for work resumed on its behalf: None when the token is
/// revoked or expired, belongs to someone else, or its user is gone or disabled. A
/// session narrows nothing, so it stands for its user as they are now.
pub async fn principal_of_token(
    db: &Db,
    user_id: &str,
    token_id: &str,
) -> Result<Option<Principal>, StoreError> {
    let t = token::Entity::find_by_id(token_id.to_owned())
        .one(&db.reader)
        .await?;
    let Some(t) = t.filter(|t| t.user_id == user_id) else {
        return Ok(None);
    };
    if t.kind == "session" {
        return principal_of(db, user_id).await;
    }
    token_principal(db, t).await
}

/// Changes to a user; what is None stays as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// Display name.
    pub name: Option<String>,
    /// Active flag.
    pub active: Option<bool>,
    /// Administrator flag.
    pub is_admin: Option<bool>,
    /// Manager (Some(None) clears it).
    pub manager: Option<Option<String>>,
    /// New password.
    pub password: Option<String>,
    /// Exactly these teams.
    pub teams: Option<Vec<String>>,
    /// Exactly these roles.
    pub roles: Option<Vec<String>>,
}

/// Change a user in one transaction with its audit entries. A new password or a
/// disabled account ends every session and token.
pub async fn update_user(
    db: &Db,
    id: &str,
    p: UserPatch,
    by: By<'_>,
) -> Result<user::Model, StoreError> {
    let hash = match &p.password {
        Some(pw) => {
            check_password_length(pw)?;
            Some(hash_blocking(pw).await?)
        }
        None => None,
    };
    let txn = db.writer.begin().await?;
    let u = user::Entity::find_by_id(id.to_owned())
        .one(&txn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
    if let Some(Some(m)) = &p.manager {
        if user::Entity::find_by_id(m.clone())
            .one(&txn)
            .await?
            .is_none()
        {
            return Err(not_a_user("manager", m));
        }
        // The reporting line is a tree: the new manager may not report to this user.
        if m == id || subordinates(&txn, id).await?.contains(m) {
            return Err(StoreError::field(
                "manager",
                "cycle",
                "the manager reports to this user: the reporting line would be a loop",
                "该经理是此用户的下属，汇报关系会形成循环",
            ));
        }
    }
    let before =
        json!({"name": u.name, "active": u.active, "is_admin": u.is_admin, "manager": u.manager});
    let mut a: user::ActiveModel = u.into();
    if let Some(n) = p.name {
        a.name = Set(n);
    }
    if let Some(x) = p.active {
        a.active = Set(x);
    }
    if let Some(x) = p.is_admin {
        a.is_admin = Set(x);
    }
    if let Some(m) = p.manager {
        a.manager = Set(m);
    }
    if let Some(h) = hash {
        a.password_hash = Set(h);
    }
    if p.password.is_some() || p.active == Some(false) {
        token::Entity::update_many()
            .col_expr(
                token::Column::RevokedAt,
                sea_orm::sea_query::Expr::val(Utc::now()),
            )
            .filter(token::Column::UserId.eq(id))
            .filter(token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
    }
    a.updated_at = Set(Utc::now());
    let m = a.update(&txn).await?;
    let after =
        json!({"name": m.name, "active": m.active, "is_admin": m.is_admin, "manager": m.manager});
    if before != after || p.password.is_some() {
        admin_audit::record(
            &txn,
            Event {
                actor: by.actor,
                action: "user.update",
                target: Some(id),
                ip: by.ip,
                detail: json!({"before": before, "after": after, "password_changed": p.password.is_some()}),
            },
        )
        .await?;
    }
    if let Some(teams) = p.teams {
        check_teams(&txn, &teams).await?;
        let was: Vec<String> = team_member::Entity::find()
            .filter(team_member::Column::UserId.eq(id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|t| t.team)
            .collect();
        let mut teams = teams;
        teams.sort();
        teams.dedup();
        let mut was_sorted = was.clone();
        was_sorted.sort();
        if was_sorted != teams {
            team_member::Entity::delete_many()
                .filter(team_member::Column::UserId.eq(id))
                .exec(&txn)
                .await?;
            for t in &teams {
                team_member::ActiveModel {
                    team: Set(t.clone()),
                    user_id: Set(id.to_owned()),
                }
                .insert(&txn)
                .await?;
            }
            admin_audit::record(
                &txn,
                Event {
                    actor: by.actor,
                    action: "user.teams",
                    target: Some(id),
                    ip: by.ip,
                    detail: json!({"before": was_sorted, "after": teams}),
                },
            )
            .await?;
        }
    }
    if let Some(r) = p.roles {
        crate::roles::set_user_roles(&txn, id, &r, by.actor, by.ip).await?;
    }
    txn.commit().await?;
    Ok(m)
}

/// Create a team with its members.
pub async fn create_team(
    db: &Db,
    name: &str,
    label: serde_json::Value,
    manager: Option<String>,
    members: &[String],
    by: By<'_>,
) -> Result<(), StoreError> {
    if !name_ok(name) {
        return Err(StoreError::field(
            "name",
            "invalid_name",
            "a team name is lower-case letters, digits and _, starting with a letter",
            "团队名称只能包含小写字母、数字和下划线，并以字母开头",
        ));
    }
    let txn = db.writer.begin().await?;
    if team::Entity::find_by_id(name.to_owned())
        .one(&txn)
        .await?
        .is_some()
    {
        return Err(StoreError::Unique {
            field: "name".into(),
        });
    }
    let people = manager.iter().map(|m| ("manager".to_owned(), m)).chain(
        members
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("members[{i}]"), m)),
    );
    for (field, id) in people {
        if user::Entity::find_by_id(id.clone())
            .one(&txn)
            .await?
            .is_none()
        {
            return Err(StoreError::field(
                field,
                "not_found",
                format!("no user with id {id:?}"),
                format!("找不到用户 {id:?}"),
            ));
        }
    }
    team::ActiveModel {
        name: Set(name.to_owned()),
        label: Set(label),
        manager: Set(manager.clone()),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await?;
    let mut seen = std::collections::HashSet::new();
    for m in members.iter().filter(|m| seen.insert(m.as_str())) {
        team_member::ActiveModel {
            team: Set(name.to_owned()),
            user_id: Set(m.clone()),
        }
        .insert(&txn)
        .await?;
    }
    admin_audit::record(
        &txn,
        Event {
            actor: by.actor,
            action: "team.create",
            target: Some(name),
            ip: by.ip,
            detail: json!({"manager": manager, "members": members}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

fn name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Change a team: label, manager (Some(None) clears it), exactly these members.
pub async fn update_team(
    db: &Db,
    name: &str,
    label: Option<serde_json::Value>,
    manager: Option<Option<String>>,
    members: Option<Vec<String>>,
    by: By<'_>,
) -> Result<(), StoreError> {
    let txn = db.writer.begin().await?;
    let t = team::Entity::find_by_id(name.to_owned())
        .one(&txn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("team {name}")))?;
    if let Some(Some(m)) = &manager
        && user::Entity::find_by_id(m.clone())
            .one(&txn)
            .await?
            .is_none()
    {
        return Err(not_a_user("manager", m));
    }
    let was: Vec<String> = team_member::Entity::find()
        .filter(team_member::Column::Team.eq(name))
        .all(&txn)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    let before = json!({"label": t.label, "manager": t.manager, "members": was});
    let mut a: team::ActiveModel = t.into();
    if let Some(l) = label {
        a.label = Set(l);
    }
    if let Some(m) = manager {
        a.manager = Set(m);
    }
    let t = a.update(&txn).await?;
    let mut now_members = was.clone();
    if let Some(ms) = members {
        for (i, m) in ms.iter().enumerate() {
            if user::Entity::find_by_id(m.clone())
                .one(&txn)
                .await?
                .is_none()
            {
                return Err(not_a_user(format!("members[{i}]"), m));
            }
        }
        team_member::Entity::delete_many()
            .filter(team_member::Column::Team.eq(name))
            .exec(&txn)
            .await?;
        let mut ms = ms;
        ms.sort();
        ms.dedup();
        for m in &ms {
            team_member::ActiveModel {
                team: Set(name.to_owned()),
                user_id: Set(m.clone()),
            }
            .insert(&txn)
            .await?;
        }
        now_members = ms;
    }
    admin_audit::record(
        &txn,
        Event {
            actor: by.actor,
            action: "team.update",
            target: Some(name),
            ip: by.ip,
            detail: json!({"before": before, "after": {"label": t.label, "manager": t.manager, "members": now_members}}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// A team with its members.
#[derive(Debug, Clone, Serialize)]
pub struct TeamView {
    /// Name.
    pub name: String,
    /// Labels.
    pub label: serde_json::Value,
    /// Manager.
    pub manager: Option<String>,
    /// Member user ids.
    pub members: Vec<String>,
}

/// All teams.
pub async fn list_teams(db: &Db) -> Result<Vec<TeamView>, StoreError> {
    let teams = team::Entity::find()
        .order_by_asc(team::Column::Name)
        .all(&db.reader)
        .await?;
    let members = team_member::Entity::find().all(&db.reader).await?;
    Ok(teams
        .into_iter()
        .map(|t| TeamView {
            members: members
                .iter()
                .filter(|m| m.team == t.name)
                .map(|m| m.user_id.clone())
                .collect(),
            name: t.name,
            label: t.label,
            manager: t.manager,
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret();
        assert_ne!(a, new_secret());
        assert_eq!(token_hash(&a).len(), 64);
    }
}
