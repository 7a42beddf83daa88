//! Bundles: install or upgrade, list, export.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use trellis_store::bundles;

use crate::AppState;
use crate::access;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::routes::{parse_json, read_body};

/// `?dry_run=true`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DryRun {
    /// Only plan.
    #[serde(default)]
    dry_run: bool,
}

/// Installed bundles.
#[utoipa::path(get, path = "/api/v1/bundles", tag = "bundles", security(("bearer" = [])), responses((status = 200, description = "Bundles")))]
pub async fn list(state: web::Data<AppState>, _caller: Caller) -> ApiResult<HttpResponse> {
    let v: Vec<_> = bundles::list(&state.store.db)
        .await?
        .into_iter()
        .map(|b| json!({"name": b.name, "version": b.version, "label": b.manifest.get("label"), "installed_at": b.installed_at.to_rfc3339(), "updated_at": b.updated_at.to_rfc3339()}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"data": v})))
}

/// Install or upgrade a bundle (idempotent); `?dry_run=true` returns the plan.
#[utoipa::path(post, path = "/api/v1/bundles", tag = "bundles", security(("bearer" = [])), params(DryRun), request_body(content = Object, description = "A bundle (schemas/bundle.schema.json)"),
    responses((status = 200, description = "What changed"), (status = 422, description = "Invalid or lossy")))]
pub async fn install(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<DryRun>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc =
        parse_json(&read_body(&req, payload, state.config.max_body_bytes.max(32 << 20)).await?)?;
    let actor = caller.actor();
    let report = bundles::install(
        &state.store.db,
        &state.store.registry,
        &state.store.roles,
        &state.store.rules,
        &doc,
        q.dry_run,
        &actor,
    )
    .await?;
    // Stored already: a failed reload is caught up by the periodic one.
    if let Err(e) = state.engine.reload().await {
        tracing::warn!(error = %e, "reloading workflows failed");
    }
    Ok(HttpResponse::Ok().json(report))
}

/// Export an installed bundle as installable JSON.
#[utoipa::path(get, path = "/api/v1/bundles/{name}/export", tag = "bundles", security(("bearer" = [])), params(("name" = String, Path, description = "Bundle name")),
    responses((status = 200, description = "The bundle"), (status = 404, description = "Not installed")))]
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let b = bundles::export(
        &state.store.db,
        &state.store.registry,
        &state.store.roles,
        &state.store.rules,
        &path,
    )
    .await?;
    let text = serde_json::to_string_pretty(&b).map_err(trellis_store::StoreError::from)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(text + "\n"))
}
