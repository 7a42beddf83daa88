//! File uploads for attachment fields.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use trellis_store::files;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::read_body;

/// `?name=contract.pdf`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Upload {
    /// The file name.
    name: Option<String>,
}

/// Upload a file (the raw body; `Content-Type` is its type, `?name=` its name). Put the
/// returned object in an attachment field.
#[utoipa::path(post, path = "/api/v1/files", tag = "files", security(("bearer" = [])), params(Upload),
    responses((status = 201, description = "{\"id\",\"name\",\"size\",\"content_type\"}"), (status = 413, description = "Too large")))]
pub async fn upload(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<Upload>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    crate::access::writes(&caller)?;
    let body = read_body(&req, payload, state.config.max_upload_bytes).await?;
    if body.is_empty() {
        return Err(ApiError::field(
            Code::Validation,
            "body",
            "required",
            "the file is empty",
        ));
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    let ct = ct.split(';').next().unwrap_or(ct).trim();
    let name = q.name.clone().unwrap_or_else(|| "file".to_owned());
    let meta = files::save(
        &state.store.db,
        &state.config.files_dir,
        &name,
        ct,
        &body,
        Some(&caller.0.id),
    )
    .await?;
    Ok(HttpResponse::Created().json(meta))
}

/// Download a file: its uploader, administrators, and whoever may read a record that holds it.
#[utoipa::path(get, path = "/api/v1/files/{id}", tag = "files", security(("bearer" = [])), params(("id" = String, Path, description = "File id")),
    responses((status = 200, description = "The bytes"), (status = 404, description = "No such file")))]
pub async fn download(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (meta, p) = files::open(&state.store.db, &state.config.files_dir, &path).await?;
    // A file is as private as the records that hold it: do not confirm it exists.
    if !state
        .store
        .may_download(caller.perms(), &meta.id, meta.uploaded_by.as_deref())
        .await?
    {
        return Err(ApiError::new(Code::NotFound, "file not found"));
    }
    let bytes = tokio::fs::read(&p)
        .await
        .map_err(|_| ApiError::new(Code::NotFound, "the file's content is missing"))?;
    let disposition = format!("attachment; filename*=UTF-8''{}", pct(&meta.name));
    Ok(HttpResponse::Ok()
        .content_type(meta.content_type)
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(bytes))
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
