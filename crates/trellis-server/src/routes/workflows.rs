//! Workflow definitions: list, create, read, replace, delete, and their versions.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use trellis_store::StoreError;
use trellis_store::workflows::{self, Stored};

use crate::AppState;
use crate::access;
use crate::auth::{Caller, client_ip};
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{name_taken, read_definition, read_named_definition};

fn view(s: &Stored) -> ApiResult<Value> {
    let mut v = serde_json::to_value(&s.workflow).map_err(StoreError::from)?;
    v["version"] = json!(s.version);
    v["bundle"] = json!(s.bundle);
    Ok(v)
}

async fn stored(state: &AppState, name: &str) -> ApiResult<Stored> {
    workflows::load(&state.store.db.reader, name)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no workflow named {name:?}")))
}

/// Workflows (administrators).
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", security(("bearer" = [])), responses((status = 200, description = "Workflows, each with its current version")))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let data = workflows::list(&state.store.db.reader)
        .await?
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
) -> ApiResult<Value> {
    let snap = state.store.registry.snapshot();
    let wf = workflows::check(doc, &snap, &state.store.rules, &state.store.roles)
        .map_err(StoreError::Definition)?;
    let ip = client_ip(req);
    workflows::put(&state.store.db, &wf, caller.by(&ip)).await?;
    // Stored already: a failed reload is caught up by the periodic one.
    if let Err(e) = state.engine.reload().await {
        tracing::warn!(error = %e, "reloading workflows failed");
    }
    view(&stored(state, &wf.name).await?)
}

/// Create a workflow (schemas/workflow.schema.json), version 1 (administrators).
#[utoipa::path(post, path = "/api/v1/workflows", tag = "workflows", security(("bearer" = [])), request_body(content = Object, description = "A workflow"),
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
        && workflows::load(&state.store.db.reader, n).await?.is_some()
    {
        return Err(name_taken("workflow", "workflows", n));
    }
    Ok(HttpResponse::Created().json(save(&state, &caller, &req, &doc).await?))
}

/// One workflow, current version.
#[utoipa::path(get, path = "/api/v1/workflows/{name}", tag = "workflows", security(("bearer" = [])), params(("name" = String, Path, description = "Workflow name")), responses((status = 200, description = "The workflow")))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    Ok(HttpResponse::Ok().json(view(&stored(&state, &path).await?)?))
}

/// Create or replace a workflow; a changed definition becomes the next version, and runs
/// already started keep theirs (administrators).
#[utoipa::path(put, path = "/api/v1/workflows/{name}", tag = "workflows", security(("bearer" = [])), params(("name" = String, Path, description = "Workflow name")), request_body(content = Object, description = "A workflow"),
    responses((status = 200, description = "The workflow"), (status = 422, description = "Invalid")))]
pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = read_named_definition(&req, payload, &path, "workflows").await?;
    Ok(HttpResponse::Ok().json(save(&state, &caller, &req, &doc).await?))
}

/// Delete a workflow; its versions stay for the runs that use them (administrators).
#[utoipa::path(delete, path = "/api/v1/workflows/{name}", tag = "workflows", security(("bearer" = [])), params(("name" = String, Path, description = "Workflow name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let ip = client_ip(&req);
    workflows::delete(&state.store.db, &path, caller.by(&ip)).await?;
    // Stored already: a failed reload is caught up by the periodic one.
    if let Err(e) = state.engine.reload().await {
        tracing::warn!(error = %e, "reloading workflows failed");
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Every version of a workflow, newest first.
#[utoipa::path(get, path = "/api/v1/workflows/{name}/versions", tag = "workflows", security(("bearer" = [])), params(("name" = String, Path, description = "Workflow name")),
    responses((status = 200, description = "{\"data\": [{\"version\", \"created_at\", \"definition\"}]}")))]
pub async fn versions(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let v = workflows::versions(&state.store.db.reader, &path).await?;
    if v.is_empty() {
        return Err(ApiError::new(
            Code::NotFound,
            format!("no workflow named {:?}", path.as_str()),
        ));
    }
    let data: Vec<Value> = v
        .into_iter()
        .map(|(version, at, wf)| json!({"version": version, "created_at": at, "definition": wf}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}
