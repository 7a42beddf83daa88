//! Login, the caller, tokens, users and teams.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_store::auth::{self, UserView};

use crate::AppState;
use crate::access;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{parse_json, read_body};

/// Login body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Login {
    /// E-mail.
    email: String,
    /// Password.
    password: String,
}

/// A list of strings under `k` (missing: empty).
fn str_list(doc: &Value, k: &str) -> Vec<String> {
    doc.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn field_str<'a>(doc: &'a Value, k: &str) -> Option<&'a str> {
    doc.get(k).and_then(Value::as_str)
}

/// Log in with e-mail and password; answers a session token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, description = "{\"token\", \"user\"}"), (status = 401, description = "Wrong e-mail or password")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    // The socket's address, not a forwarded header a client could forge.
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let doc = parse_json(&read_body(&req, payload, 64 << 10).await?)?;
    let body: Login = serde_json::from_value(doc).map_err(|e| {
        ApiError::new(
            Code::MalformedJson,
            format!("send {{\"email\", \"password\"}}: {e}"),
        )
    })?;
    let (token, user) = auth::login(&state.store.db, &body.email, &body.password, &ip).await?;
    Ok(HttpResponse::Ok().json(json!({"token": token, "user": UserView::from(user)})))
}

/// End the current session (revokes the token used).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses((status = 204, description = "Logged out")))]
pub async fn logout(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    auth::revoke(&state.store.db, &caller.0.token_id, Some(&caller.0.id)).await?;
    state.tokens.clear();
    Ok(HttpResponse::NoContent().finish())
}

/// The caller.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])), responses((status = 200, description = "The caller")))]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let u = auth::get_user(&state.store.db, &caller.0.id).await?;
    let teams: Vec<String> = auth::list_teams(&state.store.db)
        .await?
        .into_iter()
        .filter(|t| t.members.contains(&u.id))
        .map(|t| t.name)
        .collect();
    let mut v = serde_json::to_value(UserView::from(u)).map_err(trellis_store::StoreError::from)?;
    v["teams"] = json!(teams);
    v["roles"] = json!(if caller.0.is_admin {
        vec!["admin"]
    } else {
        Vec::<&str>::new()
    });
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

/// Create a long-lived API token `{"name", "expires_in_days"?}`; the secret is shown once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", security(("bearer" = [])), responses((status = 201, description = "{\"id\", \"token\"}")))]
pub async fn create_token(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let body = read_body(&req, payload, 64 << 10).await?;
    let doc = if body.is_empty() {
        json!({})
    } else {
        parse_json(&body)?
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
    let secret = auth::issue(&state.store.db, &caller.0.id, "api", name.clone(), expires).await?;
    Ok(HttpResponse::Created().json(
        json!({"token": secret, "name": name, "expires_at": expires.map(|e| e.to_rfc3339())}),
    ))
}

/// Revoke one of the caller's tokens (administrators: anyone's).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "auth", security(("bearer" = [])), params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such token")))]
pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let owner = if caller.0.is_admin {
        None
    } else {
        Some(caller.0.id.as_str())
    };
    auth::revoke(&state.store.db, &path, owner).await?;
    state.tokens.clear();
    Ok(HttpResponse::NoContent().finish())
}

/// Users (administrators).
#[utoipa::path(get, path = "/api/v1/users", tag = "people", security(("bearer" = [])), responses((status = 200, description = "Users")))]
pub async fn list_users(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let v: Vec<UserView> = auth::list_users(&state.store.db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"data": v})))
}

/// Create a user `{"email","name","password","manager"?,"teams"?,"is_admin"?}` (administrators).
#[utoipa::path(post, path = "/api/v1/users", tag = "people", security(("bearer" = [])), responses((status = 201, description = "Created"), (status = 409, description = "E-mail taken")))]
pub async fn create_user(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_json(&read_body(&req, payload, 64 << 10).await?)?;
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
    let name = field_str(&doc, "name").unwrap_or(email);
    let manager = field_str(&doc, "manager").map(str::to_owned);
    let is_admin = doc
        .get("is_admin")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let teams: Vec<String> = str_list(&doc, "teams");
    let u = auth::create_user(
        &state.store.db,
        email,
        name,
        password,
        is_admin,
        manager,
        &teams,
    )
    .await?;
    Ok(HttpResponse::Created().json(UserView::from(u)))
}

/// One user (administrators, or the user).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "people", security(("bearer" = [])), params(("id" = String, Path, description = "User id")), responses((status = 200, description = "The user")))]
pub async fn get_user(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    if caller.0.id != *path {
        access::admin(&caller)?;
    }
    Ok(HttpResponse::Ok().json(UserView::from(
        auth::get_user(&state.store.db, &path).await?,
    )))
}

/// Change a user `{"name","active","manager","password"}` (administrators).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "people", security(("bearer" = [])), params(("id" = String, Path, description = "User id")), responses((status = 200, description = "The user")))]
pub async fn patch_user(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_json(&read_body(&req, payload, 64 << 10).await?)?;
    let manager = doc.get("manager").map(|v| v.as_str().map(str::to_owned));
    let u = auth::update_user(
        &state.store.db,
        &path,
        field_str(&doc, "name").map(str::to_owned),
        doc.get("active").and_then(Value::as_bool),
        manager,
        field_str(&doc, "password").map(str::to_owned),
    )
    .await?;
    state.tokens.clear();
    Ok(HttpResponse::Ok().json(UserView::from(u)))
}

/// Teams.
#[utoipa::path(get, path = "/api/v1/teams", tag = "people", security(("bearer" = [])), responses((status = 200, description = "Teams")))]
pub async fn list_teams(state: web::Data<AppState>, _caller: Caller) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(json!({"data": auth::list_teams(&state.store.db).await?})))
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
    let doc = parse_json(&read_body(&req, payload, 64 << 10).await?)?;
    let name = field_str(&doc, "name").ok_or_else(|| {
        ApiError::field(Code::Validation, "name", "required", "a name is required")
    })?;
    let members: Vec<String> = str_list(&doc, "members");
    auth::create_team(
        &state.store.db,
        name,
        doc.get("label").cloned().unwrap_or(Value::Null),
        field_str(&doc, "manager").map(str::to_owned),
        &members,
    )
    .await?;
    let t = auth::list_teams(&state.store.db)
        .await?
        .into_iter()
        .find(|t| t.name == name);
    Ok(HttpResponse::Created().json(t))
}
