//! Role definitions: list, create, read, replace, delete.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use trellis_store::StoreError;
use trellis_store::roles::{self, RoleEntry};

use crate::AppState;
use crate::access;
use crate::auth::{Caller, client_ip};
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{name_taken, read_definition, read_named_definition};

fn view(e: &RoleEntry) -> ApiResult<Value> {
    let mut v = serde_json::to_value(&*e.role).map_err(StoreError::from)?;
    v["bundle"] = json!(e.bundle);
    Ok(v)
}

/// Roles (administrators).
#[utoipa::path(get, path = "/api/v1/roles", tag = "people", security(("bearer" = [])), responses((status = 200, description = "Roles")))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let data = state
        .store
        .roles
        .list()
        .iter()
        .map(view)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}

async fn save(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    doc: &Value,
) -> ApiResult<(bool, Value)> {
    let snap = state.store.registry.snapshot();
    let role = roles::check(doc, &snap, "").map_err(StoreError::Definition)?;
    let ip = client_ip(req);
    let changed = roles::put(
        &state.store.db,
        &state.store.roles,
        &role,
        Some(&caller.0.id),
        Some(&ip),
    )
    .await?;
    let e = state
        .store
        .roles
        .get(&role.name)
        .ok_or_else(|| ApiError::new(Code::Internal, "the role was not stored"))?;
    Ok((changed, view(&e)?))
}

/// Create a role (schemas/role.schema.json) (administrators).
#[utoipa::path(post, path = "/api/v1/roles", tag = "people", security(("bearer" = [])), request_body(content = Object, description = "A role (schemas/role.schema.json)"),
    responses((status = 201, description = "Created"), (status = 409, description = "The name is taken"), (status = 422, description = "Invalid")))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = read_definition(&req, payload).await?;
    if let Some(n) = doc.get("name").and_then(Value::as_str)
        && state.store.roles.get(n).is_some()
    {
        return Err(name_taken("role", "roles", n));
    }
    let (_, v) = save(&state, &caller, &req, &doc).await?;
    Ok(HttpResponse::Created().json(v))
}

/// One role.
#[utoipa::path(get, path = "/api/v1/roles/{name}", tag = "people", security(("bearer" = [])), params(("name" = String, Path, description = "Role name")), responses((status = 200, description = "The role")))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let e = state
        .store
        .roles
        .get(&path)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no role named {:?}", *path)))?;
    Ok(HttpResponse::Ok().json(view(&e)?))
}

/// Create or replace a role; its holders' permissions change at once (administrators).
#[utoipa::path(put, path = "/api/v1/roles/{name}", tag = "people", security(("bearer" = [])), params(("name" = String, Path, description = "Role name")), request_body(content = Object, description = "A role"),
    responses((status = 200, description = "The role"), (status = 422, description = "Invalid")))]
pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = read_named_definition(&req, payload, &path, "roles").await?;
    let (_, v) = save(&state, &caller, &req, &doc).await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Delete a role nobody holds (administrators).
#[utoipa::path(delete, path = "/api/v1/roles/{name}", tag = "people", security(("bearer" = [])), params(("name" = String, Path, description = "Role name")),
    responses((status = 204, description = "Deleted"), (status = 409, description = "Users hold it")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let ip = client_ip(&req);
    roles::delete(
        &state.store.db,
        &state.store.roles,
        &path,
        Some(&caller.0.id),
        Some(&ip),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
