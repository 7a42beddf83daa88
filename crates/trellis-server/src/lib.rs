//! The HTTP surface: actix-web routes, authentication, problem+json, OpenAPI and metrics.
//! The only crate that knows actix.

pub mod access;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;

use std::net::SocketAddr;
use std::time::Instant;

use actix_web::dev::Service;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;
use trellis_store::Store;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::auth::TokenCache;
use crate::error::{ApiError, Code};
use crate::metrics::Metrics;
use crate::routes::{
    audit, bundles, files, forms, imports, inbox, ops, public, records, reports, roles, rules,
    users, workflows,
};

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// Where uploaded files are kept.
    pub files_dir: std::path::PathBuf,
    /// Largest upload in bytes.
    pub max_upload_bytes: usize,
    /// Largest file to import, in bytes (streamed to disk, never held in memory).
    pub max_import_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            workers: 0,
            files_dir: "files".into(),
            max_upload_bytes: 50 << 20,
            max_import_bytes: 1 << 30,
        }
    }
}

/// Shared by every request.
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The workflow engine.
    pub engine: trellis_workflow::Engine,
    /// Resolved tokens.
    pub tokens: TokenCache,
    /// Metrics.
    pub metrics: Metrics,
    /// The static OpenAPI document.
    pub openapi_base: Value,
    /// Settings.
    pub config: ServerConfig,
    /// Public form submissions per address.
    pub public_limits: public::RateLimiter,
    /// The runtime background jobs (imports) run on, not a request worker's.
    pub runtime: tokio::runtime::Handle,
}

fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::new(
        Code::InvalidQuery,
        format!("a query parameter is invalid: {err}"),
    )
    .into()
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(Code::NotFound, "no such route"))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        Code::MethodNotAllowed,
        "this route does not take that method",
    ))
}

/// A resource that answers problem+json 405 to other methods.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Register every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(query_error))
        .route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .route(
            "/docs",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header(("Location", "/docs/"))
                    .finish()
            }),
        )
        .service(
            SwaggerUi::new("/docs/{_:.*}")
                .config(Config::new(["/api/v1/openapi.json"]).persist_authorization(true)),
        )
        .service(
            web::scope("/api/v1")
                .service(resource("/openapi.json").get(ops::openapi))
                .service(resource("/auth/login").post(users::login))
                .service(resource("/auth/logout").post(users::logout))
                .service(resource("/auth/csrf").get(users::csrf))
                .service(resource("/me").get(users::me))
                .service(
                    resource("/tokens")
                        .get(users::list_tokens)
                        .post(users::create_token),
                )
                .service(resource("/tokens/{id}").delete(users::revoke_token))
                .service(
                    resource("/users")
                        .get(users::list_users)
                        .post(users::create_user),
                )
                .service(
                    resource("/users/{id}")
                        .get(users::get_user)
                        .patch(users::patch_user),
                )
                .service(resource("/users/{id}/reassign").post(users::reassign_user))
                .service(
                    resource("/teams")
                        .get(users::list_teams)
                        .post(users::create_team),
                )
                .service(
                    resource("/teams/{name}")
                        .get(users::get_team)
                        .patch(users::patch_team),
                )
                .service(resource("/roles").get(roles::list).post(roles::create))
                .service(
                    resource("/roles/{name}")
                        .get(roles::get)
                        .put(roles::put)
                        .delete(roles::delete),
                )
                .service(resource("/rules").get(rules::list).post(rules::create))
                .service(
                    resource("/rules/{name}")
                        .get(rules::get)
                        .put(rules::put)
                        .delete(rules::delete),
                )
                .service(resource("/rules/{name}/test").post(rules::test))
                .service(
                    resource("/workflows")
                        .get(workflows::list)
                        .post(workflows::create),
                )
                .service(
                    resource("/workflows/{name}")
                        .get(workflows::get)
                        .put(workflows::put)
                        .delete(workflows::delete),
                )
                .service(resource("/workflows/{name}/versions").get(workflows::versions))
                .service(
                    resource("/reports")
                        .get(reports::list)
                        .post(reports::create),
                )
                .service(resource("/reports/preview").post(reports::preview))
                .service(
                    resource("/reports/{name}")
                        .get(reports::get)
                        .put(reports::put)
                        .delete(reports::delete),
                )
                .service(
                    resource("/reports/{name}/run")
                        .get(reports::run_get)
                        .post(reports::run_post),
                )
                .service(
                    resource("/dashboards")
                        .get(reports::list_dashboards)
                        .post(reports::create_dashboard),
                )
                .service(
                    resource("/dashboards/{name}")
                        .get(reports::get_dashboard)
                        .put(reports::put_dashboard)
                        .delete(reports::delete_dashboard),
                )
                .service(resource("/dashboards/{name}/run").get(reports::run_dashboard))
                .service(resource("/workflows/{name}/runs").get(inbox::workflow_runs))
                .service(resource("/workflows/{name}/start").post(inbox::start))
                .service(resource("/runs").get(inbox::runs))
                .service(resource("/runs/{id}").get(inbox::run))
                .service(resource("/runs/{id}/retry").post(inbox::retry))
                .service(resource("/runs/{id}/cancel").post(inbox::cancel))
                .service(
                    resource("/tasks")
                        .get(inbox::tasks)
                        .post(inbox::create_task),
                )
                .service(resource("/tasks/{id}/complete").post(inbox::complete_task))
                .service(resource("/approvals").get(inbox::approvals))
                .service(resource("/approvals/{id}/decision").post(inbox::decide))
                .service(resource("/notifications").get(inbox::notifications))
                .service(resource("/notifications/read").post(inbox::mark_read))
                .service(resource("/messages").get(inbox::messages))
                .service(resource("/messages/{id}/replay").post(inbox::replay))
                .service(resource("/audit").get(audit::list))
                .service(resource("/public/{key}").post(public::submit))
                .service(resource("/forms").get(forms::list).post(forms::create))
                .service(
                    resource("/forms/{form}")
                        .get(forms::get)
                        .put(forms::put)
                        .delete(forms::delete),
                )
                .service(resource("/forms/{form}/versions").get(forms::list_versions))
                .service(resource("/forms/{form}/columns").get(forms::columns))
                .service(
                    resource("/forms/{form}/public")
                        .get(public::get)
                        .put(public::put)
                        .delete(public::delete),
                )
                .service(resource("/files").post(files::upload))
                .service(resource("/files/{id}").get(files::download))
                .service(
                    resource("/bundles")
                        .get(bundles::list)
                        .post(bundles::install),
                )
                .service(resource("/bundles/{name}/export").get(bundles::export))
                .service(
                    resource("/data/{form}")
                        .get(records::list)
                        .post(records::create),
                )
                .service(resource("/data/{form}/batch").post(records::batch))
                .service(resource("/data/{form}/reassign").post(records::reassign))
                .service(resource("/data/{form}/export").get(records::export))
                .service(resource("/data/{form}/import").post(imports::start))
                .service(resource("/data/{form}/duplicates").get(records::duplicates))
                .service(resource("/data/{form}/merge").post(records::merge))
                .service(resource("/imports").get(imports::list))
                .service(
                    resource("/imports/{id}")
                        .get(imports::get)
                        .delete(imports::delete),
                )
                .service(resource("/imports/{id}/rows").get(imports::rows))
                .service(resource("/imports/{id}/errors").get(imports::errors))
                .service(resource("/imports/{id}/cancel").post(imports::cancel))
                .service(
                    resource("/data/{form}/{id}")
                        .get(records::get)
                        .patch(records::patch)
                        .delete(records::delete),
                )
                .service(resource("/data/{form}/{id}/history").get(records::history)),
        )
        .default_service(web::to(not_found));
}

/// Build the shared state.
pub fn state(
    store: Store,
    engine: trellis_workflow::Engine,
    config: ServerConfig,
) -> Result<web::Data<AppState>, prometheus::Error> {
    Ok(web::Data::new(AppState {
        store,
        engine,
        tokens: TokenCache::default(),
        metrics: Metrics::new()?,
        openapi_base: openapi::base(),
        config,
        public_limits: public::RateLimiter::default(),
        runtime: tokio::runtime::Handle::current(),
    }))
}

/// Bind and run until a signal: SIGTERM finishes requests in flight first (up to 30 s),
/// SIGINT and SIGQUIT stop at once. `on_bound`
/// receives the actual address (the port may have been 0).
pub async fn run(
    state: web::Data<AppState>,
    bind: &str,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let workers = match state.config.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let refresher = state.clone();
    tokio::spawn(async move {
        for tick in 0u64.. {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            if let Err(e) = refresher.store.registry.refresh(&refresher.store.db).await {
                tracing::warn!(error = %e, "refreshing form definitions failed");
            }
            // Roles changed by another process (or the command line) arrive here.
            if let Err(e) = refresher.store.roles.reload(&refresher.store.db).await {
                tracing::warn!(error = %e, "refreshing roles failed");
            }
            if let Err(e) = refresher.store.rules.reload(&refresher.store.db).await {
                tracing::warn!(error = %e, "refreshing rules failed");
            }
            if let Err(e) = refresher.engine.reload().await {
                tracing::warn!(error = %e, "refreshing workflows failed");
            }
            if tick % 5 == 0
                && let Err(e) = refresher.store.maintain().await
            {
                tracing::warn!(error = %e, "refreshing planner statistics failed");
            }
        }
    });
    let st = state.clone();
    let server = HttpServer::new(move || {
        let st2 = st.clone();
        App::new()
            .app_data(st.clone())
            .wrap_fn(move |req, srv| {
                let start = Instant::now();
                let method = req.method().as_str().to_owned();
                let fut = srv.call(req);
                let st3 = st2.clone();
                async move {
                    let res = fut.await?;
                    let route = res
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_owned());
                    let status = res.status().as_u16().to_string();
                    st3.metrics
                        .requests
                        .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
                        .inc();
                    st3.metrics
                        .latency
                        .with_label_values(&[method.as_str(), route.as_str()])
                        .observe(start.elapsed().as_secs_f64());
                    Ok(res)
                }
            })
            .configure(configure)
    })
    .workers(workers)
    .shutdown_timeout(30)
    .bind(bind)?;
    if let Some(addr) = server.addrs().first() {
        on_bound(*addr);
    }
    server.run().await
}
