//! Forms open to anonymous submission (web-to-lead from the company website): their
//! settings for administrators, and the public address visitors post to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use trellis_access::Permissions;
use trellis_meta::FieldType;
use trellis_store::public::{self, Settings, Submission};
use trellis_store::{Actor, StoreError};

use crate::AppState;
use crate::access;
use crate::auth::{Caller, client_ip};
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{parse_object, read_body};

/// Submissions per (public key, address) in the current minute.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<(String, String), (Instant, u32)>>,
}

impl RateLimiter {
    /// Count one submission; the seconds to wait when over `per_minute`.
    pub fn hit(&self, key: &str, ip: &str, per_minute: u32) -> Result<(), u64> {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let mut w = self.windows.lock();
        if w.len() > 100_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < minute);
        }
        let e = w.entry((key.to_owned(), ip.to_owned())).or_insert((now, 0));
        if now.duration_since(e.0) >= minute {
            *e = (now, 0);
        }
        if e.1 >= per_minute {
            let wait = minute.saturating_sub(now.duration_since(e.0)).as_secs();
            return Err(wait.max(1));
        }
        e.1 += 1;
        Ok(())
    }
}

/// `?rotate=true` issues a new public key.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Rotate {
    /// Issue a new key (the old address stops working).
    #[serde(default)]
    rotate: bool,
}

fn view(p: &public::PublicForm) -> ApiResult<Value> {
    let mut v = serde_json::to_value(p).map_err(StoreError::from)?;
    v["url"] = json!(format!("/api/v1/public/{}", p.key));
    Ok(v)
}

/// How a form takes anonymous submissions (administrators).
#[utoipa::path(get, path = "/api/v1/forms/{form}/public", tag = "forms", security(("bearer" = [])), params(("form" = String, Path, description = "Form name")),
    responses((status = 200, description = "{\"form\",\"key\",\"url\",\"fields\",\"values\",\"owner\",\"honeypot\",\"rate_per_minute\",\"active\"}"), (status = 404, description = "Not public")))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    state.store.registry.get(&path)?;
    let p = public::of_form(&state.store.db, &path)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("{} is not public", *path)))?;
    Ok(HttpResponse::Ok().json(view(&p)?))
}

/// Open a form to anonymous submission, or change how (administrators): `{"fields":
/// [...], "values"?: {...}, "owner": "<user id>", "honeypot"?, "rate_per_minute"?, "active"?}`.
#[utoipa::path(put, path = "/api/v1/forms/{form}/public", tag = "forms", security(("bearer" = [])), params(("form" = String, Path, description = "Form name"), Rotate),
    responses((status = 200, description = "The settings with the key and public address"), (status = 422, description = "Invalid")))]
pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<Rotate>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = parse_object(&read_body(&req, payload, 64 << 10).await?)?;
    let settings: Settings = serde_json::from_value(Value::Object(doc))
        .map_err(|e| ApiError::field(Code::Validation, "", "schema", format!("{e}")))?;
    let snap = state.store.registry.snapshot();
    let ip = client_ip(&req);
    let p = public::put(
        &state.store.db,
        &snap,
        &path,
        settings,
        q.rotate,
        caller.by(&ip),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view(&p)?))
}

/// Close a form to anonymous submission (administrators).
#[utoipa::path(delete, path = "/api/v1/forms/{form}/public", tag = "forms", security(("bearer" = [])), params(("form" = String, Path, description = "Form name")),
    responses((status = 204, description = "Closed")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let ip = client_ip(&req);
    public::delete(&state.store.db, &path, caller.by(&ip)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A website form posts strings: read numbers and yes/no as the fields' types want them.
fn from_urlencoded(body: &[u8], form: &trellis_meta::Form) -> ApiResult<Map<String, Value>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| {
        ApiError::new(
            Code::MalformedJson,
            format!("the form data is malformed: {e}"),
        )
    })?;
    let mut out = Map::new();
    for (k, v) in pairs {
        let kind = form.field(&k).map(|f| f.kind);
        let value = match kind {
            _ if v.is_empty() => Value::Null,
            Some(FieldType::Integer) => v
                .trim()
                .parse::<i64>()
                .map_or(Value::String(v), Value::from),
            Some(FieldType::Decimal | FieldType::Currency) => v
                .trim()
                .parse::<f64>()
                .map_or(Value::String(v), Value::from),
            Some(FieldType::Boolean) => match v.as_str() {
                "true" | "on" | "1" | "yes" => Value::Bool(true),
                "false" | "off" | "0" | "no" => Value::Bool(false),
                _ => Value::String(v),
            },
            Some(FieldType::Multiselect) => {
                let mut a = match out.remove(&k) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                a.push(Value::String(v));
                Value::Array(a)
            }
            _ => Value::String(v),
        };
        out.insert(k, value);
    }
    Ok(out)
}

/// Submit a public form (no token): JSON or `application/x-www-form-urlencoded`, limited
/// per address. The record is owned by the form's configured owner.
#[utoipa::path(post, path = "/api/v1/public/{key}", tag = "forms", params(("key" = String, Path, description = "The form's public key")),
    responses((status = 201, description = "{\"ok\": true}"), (status = 404, description = "No such public form"), (status = 422, description = "Invalid values"), (status = 429, description = "Too many submissions from this address")))]
pub async fn submit(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let p = public::by_key(&state.store.db, &path)
        .await?
        .filter(|p| p.settings.active)
        .ok_or_else(|| ApiError::new(Code::NotFound, "no public form at this address"))?;
    let ip = client_ip(&req);
    if let Err(wait) = state
        .public_limits
        .hit(&p.key, &ip, p.settings.rate_per_minute)
    {
        return Err(ApiError {
            code: Code::RateLimited,
            detail: format!("too many submissions; try again in {wait} seconds"),
            errors: vec![],
            extra: Some(Box::new(("retry_after", json!(wait)))),
        });
    }
    let entry = state.store.registry.get(&p.form)?;
    let body = read_body(&req, payload, 256 << 10).await?;
    let urlencoded = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let input = if urlencoded {
        from_urlencoded(&body, &entry.form)?
    } else {
        parse_object(&body)?
    };
    match p.settings.admit(input)? {
        Submission::Drop => {
            tracing::info!(form = %p.form, ip = %ip, "a public submission filled the honeypot");
        }
        Submission::Create(values) => {
            // The whitelist is the permission: the record is written as the system.
            let created = state
                .store
                .create(&p.form, values, &Actor::user(None), &Permissions::system())
                .await;
            match created {
                // Telling a visitor that a value is taken would let anyone probe the
                // records (is this e-mail a lead?): a duplicate is taken in and dropped.
                Err(StoreError::Unique { field }) => {
                    tracing::info!(form = %p.form, field, "a public submission repeated a unique value; dropped");
                }
                r => {
                    r?;
                }
            }
        }
    }
    Ok(HttpResponse::Created().json(json!({"ok": true})))
}
