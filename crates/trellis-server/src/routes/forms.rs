//! Form definitions: list, create, read, change online, delete.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_store::forms::{create_form, versions};
use trellis_store::plan::update_form;

use crate::AppState;
use crate::access;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::routes::{parse_json, read_body};

/// `?dry_run=true` / `?purge=true`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Flags {
    /// Only return the plan.
    #[serde(default)]
    dry_run: bool,
    /// Also delete the records.
    #[serde(default)]
    purge: bool,
}

/// List the forms.
#[utoipa::path(get, path = "/api/v1/forms", tag = "forms", security(("bearer" = [])), responses((status = 200, description = "Forms")))]
pub async fn list(state: web::Data<AppState>, _caller: Caller) -> ApiResult<HttpResponse> {
    let data: Vec<Value> = state
        .store
        .registry
        .list()
        .iter()
        .map(|e| json!({"name": e.form.name, "label": e.form.label, "version": e.version, "bundle": e.bundle, "fields": e.form.fields.len()}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}

/// Create a form: its table is created at once.
#[utoipa::path(post, path = "/api/v1/forms", tag = "forms", security(("bearer" = [])), request_body(content = Object, description = "A form definition (schemas/form.schema.json)"),
    responses((status = 201, description = "Created"), (status = 422, description = "Invalid definition"), (status = 409, description = "Exists")))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_json(&read_body(&req, payload, state.config.max_body_bytes).await?)?;
    let e = create_form(
        &state.store.db,
        &state.store.registry,
        &doc,
        Some(&caller.0.id),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/forms/{}", e.form.name)))
        .insert_header((header::ETAG, format!("\"{}\"", e.version)))
        .json(&e.form))
}

/// One form definition; the published version is in the ETag.
#[utoipa::path(get, path = "/api/v1/forms/{form}", tag = "forms", security(("bearer" = [])), params(("form" = String, Path, description = "Form name")),
    responses((status = 200, description = "The definition"), (status = 404, description = "Unknown form")))]
pub async fn get(
    state: web::Data<AppState>,
    _caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let e = state.store.registry.get(&path)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{}\"", e.version)))
        .json(&e.form))
}

/// Change a form online: add, hide, relabel, retype fields. `?dry_run=true` returns the plan.
#[utoipa::path(put, path = "/api/v1/forms/{form}", tag = "forms", security(("bearer" = [])), params(("form" = String, Path, description = "Form name"), Flags),
    request_body(content = Object, description = "The whole new definition"),
    responses((status = 200, description = "The migration plan"), (status = 422, description = "Invalid, or would lose data (rows listed)")))]
pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    flags: web::Query<Flags>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_json(&read_body(&req, payload, state.config.max_body_bytes).await?)?;
    let actor = caller.actor();
    let plan = update_form(
        &state.store.db,
        &state.store.registry,
        &path,
        &doc,
        flags.dry_run,
        &actor,
    )
    .await?;
    Ok(HttpResponse::Ok().json(plan))
}

/// Delete a form; refused while it holds records unless `?purge=true`.
#[utoipa::path(delete, path = "/api/v1/forms/{form}", tag = "forms", security(("bearer" = [])), params(("form" = String, Path, description = "Form name"), Flags),
    responses((status = 204, description = "Deleted"), (status = 409, description = "Holds records or is referenced")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    flags: web::Query<Flags>,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    state.store.delete_form(&path, flags.purge).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Every published version of a form.
#[utoipa::path(get, path = "/api/v1/forms/{form}/versions", tag = "forms", security(("bearer" = [])), params(("form" = String, Path, description = "Form name")),
    responses((status = 200, description = "Versions, oldest first")))]
pub async fn list_versions(
    state: web::Data<AppState>,
    _caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    state.store.registry.get(&path)?;
    let v: Vec<Value> = versions(&state.store.db, &path)
        .await?
        .into_iter()
        .map(|m| json!({"version": m.version, "definition": m.definition, "plan": m.plan, "created_by": m.created_by, "created_at": m.created_at.to_rfc3339()}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"data": v})))
}

/// The columns of a form's table, including hidden and retired ones.
#[utoipa::path(get, path = "/api/v1/forms/{form}/columns", tag = "forms", security(("bearer" = [])), params(("form" = String, Path, description = "Form name")),
    responses((status = 200, description = "Columns")))]
pub async fn columns(
    state: web::Data<AppState>,
    _caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let e = state.store.registry.get(&path)?;
    Ok(HttpResponse::Ok().json(json!({"table": e.table, "columns": e.columns})))
}
