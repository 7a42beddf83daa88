//! Imports: a CSV or XLSX file posted as the body becomes a job that runs in the
//! background; its progress, row outcomes and error file are read back here.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use trellis_access::Permissions;
use trellis_meta::role::Action;
use trellis_store::imports::{self, ImportJob, ImportOptions, Live};
use trellis_store::records::Actor;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};

/// Query parameters of `POST /data/{form}/import`: the options, flat; the JSON ones as
/// JSON text.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    name: Option<String>,
    mapping: Option<String>,
    constants: Option<String>,
    relation_keys: Option<String>,
    mode: Option<String>,
    key: Option<String>,
    on_error: Option<String>,
    duplicates: Option<String>,
    dry_run: Option<String>,
    clear_empty: Option<String>,
    tz: Option<String>,
    format: Option<String>,
    encoding: Option<String>,
    delimiter: Option<String>,
    sheet: Option<String>,
    batch: Option<String>,
    wait: Option<bool>,
}

/// The options a request asks for, checked field by field.
fn options(q: &ImportParams) -> ApiResult<ImportOptions> {
    let flags = [
        ("mapping", &q.mapping),
        ("constants", &q.constants),
        ("relation_keys", &q.relation_keys),
        ("mode", &q.mode),
        ("key", &q.key),
        ("on_error", &q.on_error),
        ("duplicates", &q.duplicates),
        ("dry_run", &q.dry_run),
        ("clear_empty", &q.clear_empty),
        ("tz", &q.tz),
        ("format", &q.format),
        ("encoding", &q.encoding),
        ("delimiter", &q.delimiter),
        ("sheet", &q.sheet),
        ("batch", &q.batch),
    ];
    Ok(ImportOptions::from_pairs(
        flags
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v))),
    )?)
}

/// Where imports keep their files.
pub fn imports_dir(state: &AppState) -> PathBuf {
    state.config.files_dir.join("imports")
}

/// Stream the body to a file, refusing it past the limit (the file is removed).
async fn save_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    dir: &std::path::Path,
    limit: u64,
) -> ApiResult<PathBuf> {
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("the file is larger than the import limit of {limit} bytes"),
        )
    };
    if crate::routes::declared_length(req).is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let io = |e: std::io::Error| ApiError::new(Code::Internal, format!("saving the upload: {e}"));
    let uploads = dir.join("uploads");
    tokio::fs::create_dir_all(&uploads).await.map_err(io)?;
    let path = uploads.join(uuid::Uuid::now_v7().to_string());
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(&path).await.map_err(io)?);
    let mut size = 0u64;
    let result: ApiResult<()> = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    Code::MalformedJson,
                    format!("the body could not be read: {e}"),
                )
            })?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(too_large());
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        if size == 0 {
            return Err(ApiError::field(
                Code::Validation,
                "file",
                "empty_file",
                "the file is empty",
            ));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            drop(file);
            let _ = tokio::fs::remove_file(&path).await;
            Err(e)
        }
    }
}

/// Run a job on the server's runtime (not the request's worker); answers when it ends.
pub fn spawn_job(
    state: web::Data<AppState>,
    id: String,
    actor: Actor,
    perms: Permissions,
) -> tokio::task::JoinHandle<Result<ImportJob, trellis_store::StoreError>> {
    let live = Arc::new(Live::default());
    let rt = state.runtime.clone();
    rt.spawn(async move {
        let dir = imports_dir(&state);
        let out = state
            .store
            .run_import(&dir, &id, &actor, &perms, live)
            .await;
        if let Err(e) = &out {
            tracing::error!(import = %id, error = %e, "an import failed");
        }
        out
    })
}

/// Resume the jobs a previous process left running, each as its creator through the
/// token it was started with (system jobs as the system).
pub async fn resume(state: web::Data<AppState>) {
    let jobs = match state.store.interrupted_imports().await {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "listing interrupted imports failed");
            return;
        }
    };
    for job in jobs {
        let who = match (job.created_by.as_deref(), job.token.as_deref()) {
            (None, _) => None,
            (Some(uid), Some(t)) => {
                Some(trellis_store::auth::principal_of_token(&state.store.db, uid, t).await)
            }
            (Some(uid), None) => {
                Some(trellis_store::auth::principal_of(&state.store.db, uid).await)
            }
        };
        let (actor, perms) = match who {
            None => (Actor::default(), Permissions::system()),
            Some(Ok(Some(p))) => (
                Actor::user(Some(p.id.clone())),
                Permissions::new(p.subject(), state.store.roles.resolve(&p.roles)),
            ),
            Some(Ok(None)) => {
                let why = "not resumed: the user who started it is disabled or gone, or the \
                           token it was started with is revoked or expired";
                tracing::warn!(import = %job.id, "{why}");
                if let Err(e) = state.store.fail_import(&job.id, why).await {
                    tracing::error!(import = %job.id, error = %e, "ending an import failed");
                }
                continue;
            }
            Some(Err(e)) => {
                // Tried again at the next start.
                tracing::error!(import = %job.id, error = %e, "loading an import's user failed");
                continue;
            }
        };
        tracing::info!(import = %job.id, form = %job.form, "resuming an interrupted import");
        drop(spawn_job(state.clone(), job.id, actor, perms));
    }
}

/// Import a CSV or XLSX file (the raw body) into a form. The answer is the job (202, or
/// 200 with `wait=true` once it has finished); poll `/api/v1/imports/{id}`.
#[utoipa::path(post, path = "/api/v1/data/{form}/import", tag = "imports", security(("bearer" = [])),
    params(("form" = String, Path, description = "Form name"),
        ("name" = Option<String>, Query, description = "The file's name"),
        ("mode" = Option<String>, Query, description = "insert (default), update or upsert"),
        ("key" = Option<String>, Query, description = "The field that finds existing records (update, upsert)"),
        ("mapping" = Option<String>, Query, description = "JSON: {\"header\": \"field\"}; \"\" leaves a column out"),
        ("constants" = Option<String>, Query, description = "JSON: {\"field\": value} for every row"),
        ("relation_keys" = Option<String>, Query, description = "JSON: {\"relation field\": \"target field\"}"),
        ("on_error" = Option<String>, Query, description = "abort (default: all or nothing) or skip"),
        ("duplicates" = Option<String>, Query, description = "rules (default), skip, update, merge, flag or ignore"),
        ("dry_run" = Option<bool>, Query, description = "Only report what would happen"),
        ("clear_empty" = Option<bool>, Query, description = "Empty cells clear fields of updated records"),
        ("tz" = Option<String>, Query, description = "Time zone of dates without an offset (default UTC)"),
        ("format" = Option<String>, Query, description = "csv or xlsx (default: detected)"),
        ("encoding" = Option<String>, Query, description = "utf-8, gbk, gb18030, utf-16le, utf-16be (default: detected)"),
        ("delimiter" = Option<String>, Query, description = "One character, or tab (default: detected)"),
        ("sheet" = Option<String>, Query, description = "XLSX sheet (default: the first)"),
        ("batch" = Option<usize>, Query, description = "Rows per transaction with on_error=skip (default 1000)"),
        ("wait" = Option<bool>, Query, description = "Answer when the job has finished")),
    responses((status = 202, description = "The job"), (status = 200, description = "The finished job (wait=true)"),
        (status = 413, description = "Larger than the import limit"), (status = 422, description = "The file or an option is invalid")))]
pub async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<ImportParams>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    crate::access::writes(&caller)?;
    let form = path.into_inner();
    let opts = options(&q)?;
    let dir = imports_dir(&state);
    let upload = save_body(&req, payload, &dir, state.config.max_import_bytes).await?;
    let actor = Actor::user(Some(caller.0.id.clone()));
    let job = match state
        .store
        .create_import(
            &dir,
            &form,
            &upload,
            false,
            q.name.clone(),
            opts,
            &actor,
            caller.perms(),
            Some(caller.0.token_id.as_str()),
        )
        .await
    {
        Ok(j) => j,
        Err(e) => {
            let _ = tokio::fs::remove_file(&upload).await;
            return Err(e.into());
        }
    };
    let handle = spawn_job(state.clone(), job.id.clone(), actor, caller.perms().clone());
    let location = format!("/api/v1/imports/{}", job.id);
    if q.wait.unwrap_or(false) {
        let done = handle
            .await
            .map_err(|e| ApiError::new(Code::Internal, format!("the import stopped: {e}")))?;
        let job = match done {
            Ok(j) => j,
            // The job records its own failure; answer with it.
            Err(_) => state.store.import_job(&job.id, None).await?,
        };
        return Ok(HttpResponse::Ok()
            .insert_header((header::LOCATION, location))
            .json(job));
    }
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location))
        .json(job))
}

/// Administrators see every job; others their own.
fn owner_filter(caller: &Caller) -> Option<&str> {
    (!caller.perms().may_inspect()).then_some(caller.0.id.as_str())
}

/// A job the caller may see: theirs (or any, for administrators), on a form they may read
/// (a token limited to some forms sees only those forms' jobs).
async fn visible_job(state: &AppState, caller: &Caller, id: &str) -> ApiResult<ImportJob> {
    let job = state.store.import_job(id, owner_filter(caller)).await?;
    if !caller.perms().may(&job.form, Action::Read) {
        return Err(ApiError::new(
            Code::NotFound,
            format!("import {id} not found"),
        ));
    }
    Ok(job)
}

/// `?limit=`.
#[derive(Debug, Deserialize)]
pub struct ListImports {
    limit: Option<u64>,
}

/// Import jobs, newest first.
#[utoipa::path(get, path = "/api/v1/imports", tag = "imports", security(("bearer" = [])),
    params(("limit" = Option<u64>, Query, description = "At most this many (default 50, max 1000)")),
    responses((status = 200, description = "{\"data\": [job]}")))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ListImports>,
) -> ApiResult<HttpResponse> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let mut jobs = state
        .store
        .import_jobs(owner_filter(&caller), limit)
        .await?;
    jobs.retain(|j| caller.perms().may(&j.form, Action::Read));
    Ok(HttpResponse::Ok().json(json!({ "data": jobs })))
}

/// One job: status, columns and progress (live while it runs).
#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "imports", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job"), (status = 404, description = "No such job")))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let job = visible_job(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(job))
}

/// `?from=&limit=`.
#[derive(Debug, Deserialize)]
pub struct RowsParams {
    from: Option<u64>,
    limit: Option<u64>,
}

/// What happened to each row (a dry run's plan), from row `from` (0-based) on.
#[utoipa::path(get, path = "/api/v1/imports/{id}/rows", tag = "imports", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id"),
        ("from" = Option<u64>, Query, description = "Skip this many rows"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 100, max 1000)")),
    responses((status = 200, description = "{\"data\": [{\"row\",\"action\",\"id\",\"matched\",\"rule\",\"errors\"}]}")))]
pub async fn rows(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<RowsParams>,
) -> ApiResult<HttpResponse> {
    let job = visible_job(&state, &caller, &path).await?;
    let dir = imports_dir(&state);
    let (from, limit) = (q.from.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 1000));
    let data = tokio::task::spawn_blocking(move || {
        trellis_store::Store::import_rows(&dir, &job.id, from, limit)
    })
    .await
    .map_err(|e| ApiError::new(Code::Internal, e.to_string()))??;
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// The rejected rows as CSV: the row number, the original cells and what is wrong, to fix
/// and import again.
#[utoipa::path(get, path = "/api/v1/imports/{id}/errors", tag = "imports", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "text/csv")))]
pub async fn errors(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let job = visible_job(&state, &caller, &path).await?;
    let p = imports::error_path(&imports_dir(&state), &job.id);
    let file = tokio::fs::File::open(&p)
        .await
        .map_err(|_| ApiError::new(Code::NotFound, "the job has no error file yet"))?;
    let body = tokio_util::io::ReaderStream::new(file);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}-errors.csv\"", job.form),
        ))
        .streaming(body))
}

/// Stop a running job after its current batch (an all-or-nothing job rolls back).
#[utoipa::path(post, path = "/api/v1/imports/{id}/cancel", tag = "imports", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 202, description = "Asked to stop"), (status = 409, description = "Not running here")))]
pub async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    crate::access::writes(&caller)?;
    let job = visible_job(&state, &caller, &path).await?;
    if !state.store.cancel_import(&job.id) {
        return Err(ApiError::field(
            Code::Conflict,
            "status",
            "not_running",
            format!("the import is {}, not running", job.status),
        ));
    }
    Ok(HttpResponse::Accepted().json(json!({"id": job.id, "status": "cancelling"})))
}

/// Forget a finished job and its files (the records it imported stay).
#[utoipa::path(delete, path = "/api/v1/imports/{id}", tag = "imports", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 204, description = "Deleted"), (status = 409, description = "Still running")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    crate::access::writes(&caller)?;
    visible_job(&state, &caller, &path).await?;
    state
        .store
        .delete_import(&imports_dir(&state), &path, owner_filter(&caller))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
