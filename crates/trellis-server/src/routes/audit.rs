//! The admin audit: who logged in, failed to, changed roles and permissions, made or
//! revoked tokens, handed records over.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use trellis_query::value::{format_datetime, parse_datetime};
use trellis_store::admin_audit::{self, AuditQuery};

use crate::AppState;
use crate::access;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};

/// Query parameters of the admin audit.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditParams {
    /// An action (`login.failed`) or a family ending in a dot (`role.`).
    action: Option<String>,
    /// The acting user's id.
    actor: Option<String>,
    /// What was acted on: a user id, role, token id, form.
    target: Option<String>,
    /// From this time (RFC 3339 or a date).
    since: Option<String>,
    /// Before this time.
    until: Option<String>,
    /// Entries older than this id (the previous page's `next_before`).
    before: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u64>,
}

fn time(name: &str, v: &Option<String>) -> ApiResult<Option<String>> {
    v.as_deref()
        .map(|s| {
            parse_datetime(s)
                .map(|d| format_datetime(&d))
                .ok_or_else(|| {
                    ApiError::field(
                        Code::InvalidQuery,
                        name,
                        "invalid",
                        "an RFC 3339 time or a YYYY-MM-DD date",
                    )
                })
        })
        .transpose()
}

/// The admin audit, newest first (administrators).
#[utoipa::path(get, path = "/api/v1/audit", tag = "people", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, description = "{\"data\": [{\"id\",\"at\",\"actor\",\"action\",\"target\",\"ip\",\"detail\"}], \"next_before\"}")))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<AuditParams>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=admin_audit::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field(
            Code::InvalidQuery,
            "limit",
            "out_of_range",
            format!("limit is 1 to {}", admin_audit::MAX_LIMIT),
        ));
    }
    let aq = AuditQuery {
        action: q.action.clone(),
        actor: q.actor.clone(),
        target: q.target.clone(),
        since: time("since", &q.since)?,
        until: time("until", &q.until)?,
        before: q.before,
        limit,
    };
    let data = admin_audit::query(&state.store.db, &aq).await?;
    let next = (data.len() as u64 == limit)
        .then(|| data.last().map(|e| e.id))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({"data": data, "next_before": next})))
}
