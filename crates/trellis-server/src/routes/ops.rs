//! Health, readiness, metrics and the OpenAPI document.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::AppState;

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Ready"), (status = 503, description = "Not ready")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.store.db.ping().await;
    let applied = trellis_store::migrate::applied(&state.store.db)
        .await
        .unwrap_or(0);
    let latest = trellis_store::migrate::latest();
    let body = json!({"database": db, "migrations": {"applied": applied, "latest": latest}});
    if db && applied >= latest {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(
            state
                .metrics
                .render(state.store.db.pool_stats(), state.engine.metrics().gather()),
        )
}

/// The OpenAPI document, with a path set and schemas for every form as it is now.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    let doc = crate::openapi::document(&state.openapi_base, &state.store.registry.list());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.to_string())
}
