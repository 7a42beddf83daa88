//! Login and sessions, the caller, tokens, users and teams.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use trellis_store::auth::{self, NewToken, NewUser, UserPatch, UserView};
use trellis_store::reassign::Selection;

use crate::AppState;
use crate::access;
use crate::auth::{Caller, SESSION_COOKIE, client_ip, csrf_token};
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{parse_json, parse_object, read_body};

/// Login body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Login {
    /// E-mail.
    email: String,
    /// Password.
    password: String,
    /// For the web UI: keep the session in an HttpOnly cookie instead of answering the
    /// token (the answer then carries the CSRF token for writes).
    #[serde(default)]
    cookie: bool,
}

fn bad_list(field: &str) -> ApiError {
    ApiError::field(
        Code::Validation,
        field,
        "type",
        "a list of strings is expected",
    )
}

/// A list of strings under `k`: None when absent, an error when not a list of strings.
fn str_list(doc: &Map<String, Value>, k: &str) -> ApiResult<Option<Vec<String>>> {
    match doc.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad_list(k)))
            .collect::<ApiResult<Vec<_>>>()
            .map(Some),
        Some(_) => Err(bad_list(k)),
    }
}

fn field_str<'a>(doc: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    doc.get(k).and_then(Value::as_str)
}

/// `Some(None)` for an explicit null, `Some(Some(s))` for a string, None when absent.
fn nullable_str(doc: &Map<String, Value>, k: &str) -> ApiResult<Option<Option<String>>> {
    match doc.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(ApiError::field(
            Code::Validation,
            k,
            "type",
            "a string or null is expected",
        )),
    }
}

fn bool_field(doc: &Map<String, Value>, k: &str) -> ApiResult<Option<bool>> {
    match doc.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::field(
            Code::Validation,
            k,
            "type",
            "true or false is expected",
        )),
    }
}

fn session_cookie(value: &str, secure: bool, max_age_days: i64) -> Cookie<'static> {
    let mut c = Cookie::new(SESSION_COOKIE, value.to_owned());
    c.set_http_only(true);
    // Lax keeps the session on links from e-mails; writes need the CSRF token anyway.
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c.set_secure(secure);
    c.set_max_age(actix_web::cookie::time::Duration::days(max_age_days));
    c
}

/// Log in with e-mail and password: a session token, or with `"cookie": true` an HttpOnly
/// session cookie and the CSRF token that writes must send in `X-CSRF-Token`.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, description = "{\"token\", \"user\"} or {\"csrf_token\", \"user\"}"), (status = 401, description = "Wrong e-mail or password"), (status = 429, description = "Locked out after repeated failures")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let ip = client_ip(&req);
    // A page on another site can post text/plain without asking; it cannot post JSON.
    let json_body = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.trim_start().starts_with("application/json"));
    if !json_body {
        return Err(ApiError::field(
            Code::MalformedJson,
            "Content-Type",
            "content_type",
            "send the login as application/json",
        ));
    }
    let doc = parse_json(&read_body(&req, payload, 64 << 10).await?)?;
    let body: Login = serde_json::from_value(doc).map_err(|e| {
        ApiError::new(
            Code::MalformedJson,
            format!("send {{\"email\", \"password\"}}: {e}"),
        )
    })?;
    let (token, user) = auth::login(&state.store.db, &body.email, &body.password, &ip).await?;
    let view = user_view(&state, user).await?;
    if body.cookie {
        let secure = req.connection_info().scheme() == "https";
        return Ok(HttpResponse::Ok()
            .cookie(session_cookie(&token, secure, auth::SESSION_DAYS))
            .json(json!({"csrf_token": csrf_token(&token), "user": view})));
    }
    Ok(HttpResponse::Ok().json(json!({"token": token, "user": view})))
}

/// End the current session (revokes the token used and clears the session cookie).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses((status = 204, description = "Logged out")))]
pub async fn logout(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    access::writes(&caller)?;
    let ip = client_ip(&req);
    auth::revoke(
        &state.store.db,
        &caller.0.token_id,
        Some(&caller.0.id),
        caller.by(&ip),
    )
    .await?;
    state.tokens.clear();
    let secure = req.connection_info().scheme() == "https";
    let mut gone = session_cookie("", secure, 0);
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// The CSRF token of the cookie session in use (for a page that was reloaded).
#[utoipa::path(get, path = "/api/v1/auth/csrf", tag = "auth", responses((status = 200, description = "{\"csrf_token\"}"), (status = 401, description = "No session cookie")))]
pub async fn csrf(_caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let c = req.cookie(SESSION_COOKIE).ok_or_else(|| {
        ApiError::new(
            Code::Unauthorized,
            "the CSRF token belongs to a cookie session; log in with \"cookie\": true",
        )
    })?;
    Ok(HttpResponse::Ok().json(json!({"csrf_token": csrf_token(c.value())})))
}

/// A user with their teams and roles.
async fn user_view(state: &AppState, u: trellis_store::entity::user::Model) -> ApiResult<Value> {
    let teams: Vec<String> = auth::list_teams(&state.store.db)
        .await?
        .into_iter()
        .filter(|t| t.members.contains(&u.id))
        .map(|t| t.name)
        .collect();
    let roles = trellis_store::roles::of_user(&state.store.db.reader, &u.id).await?;
    let mut v = serde_json::to_value(UserView::from(u)).map_err(trellis_store::StoreError::from)?;
    v["teams"] = json!(teams);
    v["roles"] = json!(roles);
    Ok(v)
}

/// The caller with roles, teams, reporting line and effective permissions per form.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])), responses((status = 200, description = "The caller")))]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let u = auth::get_user(&state.store.db, &caller.0.id).await?;
    let mut v = user_view(&state, u).await?;
    let p = caller.perms();
    v["roles"] = json!(p.role_names());
    v["admin"] = json!(p.is_admin());
    v["subordinates"] = json!(caller.0.subordinates);
    v["token"] = json!({"read_only": caller.0.read_only, "forms": caller.0.forms});
    let mut forms = Map::new();
    for e in state.store.registry.list() {
        let fields: Vec<String> = e.form.fields.iter().map(|f| f.name.clone()).collect();
        let s = p.summary(&e.form.name, &fields);
        if p.may(&e.form.name, trellis_meta::role::Action::Read)
            || p.may(&e.form.name, trellis_meta::role::Action::Create)
        {
            forms.insert(e.form.name.clone(), s);
        }
    }
    v["permissions"] = Value::Object(forms);
    Ok(HttpResponse::Ok().json(v))
}

/// The caller's API tokens.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth", security(("bearer" = [])), responses((status = 200, description = "Tokens (no secrets)")))]
pub async fn list_tokens(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let v: Vec<auth::TokenView> = auth::list_tokens(&state.store.db, &caller.0.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"data": v})))
}

/// Create a long-lived API token `{"name", "expires_in_days"?, "read_only"?, "forms"?}`;
/// it reaches at most what its user's roles allow. The secret is shown once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", security(("bearer" = [])), responses((status = 201, description = "{\"id\", \"token\"}")))]
pub async fn create_token(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::writes(&caller)?;
    let body = read_body(&req, payload, 64 << 10).await?;
    let doc = if body.is_empty() {
        Map::new()
    } else {
        parse_object(&body)?
    };
    let name = field_str(&doc, "name").map(str::to_owned);
    let expires = match doc.get("expires_in_days") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64().filter(|d| (1..=3650).contains(d)) {
            Some(d) => Some(chrono::Utc::now() + chrono::Duration::days(d)),
            None => {
                return Err(ApiError::field(
                    Code::Validation,
                    "expires_in_days",
                    "out_of_range",
                    "1 to 3650 days",
                ));
            }
        },
    };
    // A token made with a token limited to forms is limited at least as much.
    let read_only = bool_field(&doc, "read_only")?.unwrap_or(false);
    let mut forms = str_list(&doc, "forms")?;
    if let Some(fs) = &forms {
        for (i, f) in fs.iter().enumerate() {
            if state.store.registry.get(f).is_err() {
                return Err(ApiError::field(
                    Code::Validation,
                    &format!("forms[{i}]"),
                    "unknown_form",
                    format!("no form named {f:?}"),
                ));
            }
        }
    }
    if let Some(mine) = &caller.0.forms {
        forms = Some(match forms {
            Some(f) => f.into_iter().filter(|x| mine.contains(x)).collect(),
            None => mine.clone(),
        });
    }
    let ip = client_ip(&req);
    let (secret, id) = auth::issue(
        &state.store.db,
        &caller.0.id,
        &NewToken {
            kind: "api",
            name: name.clone(),
            expires_at: expires,
            read_only,
            forms: forms.clone(),
        },
        caller.by(&ip),
    )
    .await?;
    Ok(
        HttpResponse::Created().json(json!({"id": id, "token": secret, "name": name,
        "expires_at": expires.map(|e| e.to_rfc3339()), "read_only": read_only, "forms": forms})),
    )
}

/// Revoke one of the caller's tokens (administrators: anyone's).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "auth", security(("bearer" = [])), params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such token")))]
pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    access::writes(&caller)?;
    let owner = if caller.perms().may_administer() {
        None
    } else {
        Some(caller.0.id.as_str())
    };
    let ip = client_ip(&req);
    auth::revoke(&state.store.db, &path, owner, caller.by(&ip)).await?;
    state.tokens.clear();
    Ok(HttpResponse::NoContent().finish())
}

/// Users with their teams and roles (administrators).
#[utoipa::path(get, path = "/api/v1/users", tag = "people", security(("bearer" = [])), responses((status = 200, description = "Users")))]
pub async fn list_users(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let teams = auth::list_teams(&state.store.db).await?;
    let holders = trellis_store::roles::all_holders(&state.store.db).await?;
    let mut out = Vec::new();
    for u in auth::list_users(&state.store.db).await? {
        let id = u.id.clone();
        let mut v =
            serde_json::to_value(UserView::from(u)).map_err(trellis_store::StoreError::from)?;
        v["teams"] = json!(
            teams
                .iter()
                .filter(|t| t.members.contains(&id))
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
        );
        v["roles"] = json!(
            holders
                .iter()
                .filter(|(u, _)| *u == id)
                .map(|(_, r)| r.as_str())
                .collect::<Vec<_>>()
        );
        out.push(v);
    }
    Ok(HttpResponse::Ok().json(json!({"data": out})))
}

/// Create a user `{"email","name","password","manager"?,"teams"?,"roles"?,"is_admin"?}`
/// (administrators).
#[utoipa::path(post, path = "/api/v1/users", tag = "people", security(("bearer" = [])), responses((status = 201, description = "Created"), (status = 409, description = "E-mail taken")))]
pub async fn create_user(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_object(&read_body(&req, payload, 64 << 10).await?)?;
    let email = field_str(&doc, "email").ok_or_else(|| {
        ApiError::field(
            Code::Validation,
            "email",
            "required",
            "an e-mail is required",
        )
    })?;
    let password = field_str(&doc, "password").ok_or_else(|| {
        ApiError::field(
            Code::Validation,
            "password",
            "required",
            "a password is required",
        )
    })?;
    let ip = client_ip(&req);
    let u = auth::create_user(
        &state.store.db,
        &NewUser {
            email: email.to_owned(),
            name: field_str(&doc, "name").unwrap_or(email).to_owned(),
            password: password.to_owned(),
            is_admin: bool_field(&doc, "is_admin")?.unwrap_or(false),
            manager: field_str(&doc, "manager").map(str::to_owned),
            teams: str_list(&doc, "teams")?.unwrap_or_default(),
            roles: str_list(&doc, "roles")?.unwrap_or_default(),
        },
        caller.by(&ip),
    )
    .await?;
    Ok(HttpResponse::Created().json(user_view(&state, u).await?))
}

/// One user (administrators, or the user).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "people", security(("bearer" = [])), params(("id" = String, Path, description = "User id")), responses((status = 200, description = "The user")))]
pub async fn get_user(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    if caller.0.id != *path {
        access::inspect(&caller)?;
    }
    let u = auth::get_user(&state.store.db, &path).await?;
    Ok(HttpResponse::Ok().json(user_view(&state, u).await?))
}

/// Change a user `{"name","active","is_admin","manager","password","teams","roles"}`
/// (administrators). Disabling a user or changing the password ends their sessions.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "people", security(("bearer" = [])), params(("id" = String, Path, description = "User id")), responses((status = 200, description = "The user")))]
pub async fn patch_user(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_object(&read_body(&req, payload, 64 << 10).await?)?;
    let ip = client_ip(&req);
    let u = auth::update_user(
        &state.store.db,
        &path,
        UserPatch {
            name: field_str(&doc, "name").map(str::to_owned),
            active: bool_field(&doc, "active")?,
            is_admin: bool_field(&doc, "is_admin")?,
            manager: nullable_str(&doc, "manager")?,
            password: field_str(&doc, "password").map(str::to_owned),
            teams: str_list(&doc, "teams")?,
            roles: str_list(&doc, "roles")?,
        },
        caller.by(&ip),
    )
    .await?;
    state.tokens.clear();
    Ok(HttpResponse::Ok().json(user_view(&state, u).await?))
}

/// Hand every record a user owns, in every form (or `"forms": [...]`), to another user
/// `{"to"}` in one transaction: an employee leaves, the customers stay (administrators).
#[utoipa::path(post, path = "/api/v1/users/{id}/reassign", tag = "people", security(("bearer" = [])), params(("id" = String, Path, description = "The user whose records move")),
    responses((status = 200, description = "{\"to\", \"count\", \"forms\": [{\"form\", \"count\"}]}")))]
pub async fn reassign_user(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_object(&read_body(&req, payload, 64 << 10).await?)?;
    let to = field_str(&doc, "to").ok_or_else(|| {
        ApiError::field(
            Code::Validation,
            "to",
            "required",
            "name the user who receives the records",
        )
    })?;
    auth::get_user(&state.store.db, &path).await?;
    let forms = match str_list(&doc, "forms")? {
        Some(f) => f,
        None => state
            .store
            .registry
            .list()
            .iter()
            .map(|e| e.form.name.clone())
            .collect(),
    };
    let ip = client_ip(&req);
    let out = state
        .store
        .reassign(
            &forms,
            &Selection::OwnedBy(path.into_inner()),
            to,
            &caller.actor(),
            caller.perms(),
            Some(&ip),
        )
        .await?;
    let count: u64 = out.iter().map(|r| r.count).sum();
    Ok(HttpResponse::Ok().json(json!({"to": to, "count": count, "forms": out})))
}

/// Teams.
#[utoipa::path(get, path = "/api/v1/teams", tag = "people", security(("bearer" = [])), responses((status = 200, description = "Teams")))]
pub async fn list_teams(state: web::Data<AppState>, _caller: Caller) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(json!({"data": auth::list_teams(&state.store.db).await?})))
}

async fn team_view(state: &AppState, name: &str) -> ApiResult<Value> {
    let t = auth::list_teams(&state.store.db)
        .await?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no team named {name:?}")))?;
    Ok(serde_json::to_value(t).map_err(trellis_store::StoreError::from)?)
}

/// Create a team `{"name","label","manager","members"}` (administrators).
#[utoipa::path(post, path = "/api/v1/teams", tag = "people", security(("bearer" = [])), responses((status = 201, description = "Created")))]
pub async fn create_team(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_object(&read_body(&req, payload, 64 << 10).await?)?;
    let name = field_str(&doc, "name").ok_or_else(|| {
        ApiError::field(Code::Validation, "name", "required", "a name is required")
    })?;
    let members = str_list(&doc, "members")?.unwrap_or_default();
    let ip = client_ip(&req);
    auth::create_team(
        &state.store.db,
        name,
        doc.get("label").cloned().unwrap_or(Value::Null),
        field_str(&doc, "manager").map(str::to_owned),
        &members,
        caller.by(&ip),
    )
    .await?;
    state.tokens.clear();
    Ok(HttpResponse::Created().json(team_view(&state, name).await?))
}

/// One team.
#[utoipa::path(get, path = "/api/v1/teams/{name}", tag = "people", security(("bearer" = [])), params(("name" = String, Path, description = "Team name")), responses((status = 200, description = "The team")))]
pub async fn get_team(
    state: web::Data<AppState>,
    _caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(team_view(&state, &path).await?))
}

/// Change a team `{"label","manager","members"}`; members are replaced (administrators).
#[utoipa::path(patch, path = "/api/v1/teams/{name}", tag = "people", security(("bearer" = [])), params(("name" = String, Path, description = "Team name")), responses((status = 200, description = "The team")))]
pub async fn patch_team(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_object(&read_body(&req, payload, 64 << 10).await?)?;
    let ip = client_ip(&req);
    auth::update_team(
        &state.store.db,
        &path,
        doc.get("label").cloned(),
        nullable_str(&doc, "manager")?,
        str_list(&doc, "members")?,
        caller.by(&ip),
    )
    .await?;
    // Team scopes change with the members.
    state.tokens.clear();
    Ok(HttpResponse::Ok().json(team_view(&state, &path).await?))
}
