//! Workflow surfaces: tasks, approvals, notices, runs with their step logs, outgoing
//! messages (dead letters and replay), and starting a workflow by hand.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_meta::role::Action;
use trellis_workflow::inbox::{TaskQuery, Who};

use crate::AppState;
use crate::access;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{parse_json, read_body};

/// Largest body of a task, decision or start.
const LIMIT: usize = 256 << 10;

fn who(c: &Caller) -> Who {
    Who {
        user: c.0.id.clone(),
        roles: c.perms().role_names(),
        // An administrator's token limited to some forms or read-only does not act for all.
        admin: c.perms().may_administer(),
    }
}

async fn body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    shape: &str,
) -> ApiResult<T> {
    let bytes = read_body(req, payload, LIMIT).await?;
    let doc = if bytes.is_empty() {
        json!({})
    } else {
        parse_json(&bytes)?
    };
    serde_json::from_value(doc)
        .map_err(|e| ApiError::new(Code::MalformedJson, format!("send {shape}: {e}")))
}

/// What a list of tasks asks for.
#[derive(Debug, Deserialize)]
pub struct TaskParams {
    /// `open` (default), `done`, or `any`.
    status: Option<String>,
    /// `me` (default: mine and my roles'), `any`, or a user id.
    assignee: Option<String>,
    /// Tasks about records of this form.
    form: Option<String>,
    /// Tasks about this record.
    record: Option<String>,
    /// Page size (≤ 500).
    limit: Option<u64>,
}

/// Tasks: the caller's and their roles' by default.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "workflows", security(("bearer" = [])),
    params(("status" = Option<String>, Query, description = "open (default), done, any"), ("assignee" = Option<String>, Query, description = "me (default), any (administrators), a user id"), ("form" = Option<String>, Query, description = "A form"), ("record" = Option<String>, Query, description = "A record id"), ("limit" = Option<u64>, Query, description = "Page size")),
    responses((status = 200, description = "{\"data\": [task]}")))]
pub async fn tasks(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<TaskParams>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let data = state
        .engine
        .tasks(
            &who(&caller),
            &TaskQuery {
                status: Some(q.status.unwrap_or_else(|| "open".into())),
                assignee: q.assignee,
                form: q.form,
                record: q.record,
                limit: q.limit.unwrap_or(100),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}

/// A new task.
#[derive(Debug, Deserialize)]
struct NewTask {
    title: String,
    description: Option<String>,
    /// A user id (default: the caller).
    assignee: Option<String>,
    /// RFC 3339.
    due_at: Option<String>,
    form: Option<String>,
    record_id: Option<String>,
}

/// Give a task to yourself or someone else.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "workflows", security(("bearer" = [])), request_body(content = Object, description = "{\"title\", \"description\"?, \"assignee\"?, \"due_at\"?, \"form\"?, \"record_id\"?}"),
    responses((status = 201, description = "The task"), (status = 422, description = "No title, or no such assignee")))]
pub async fn create_task(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::writes(&caller)?;
    let t: NewTask = body(&req, payload, "{\"title\", …}").await?;
    let due = match &t.due_at {
        Some(s) => Some(
            trellis_query::value::parse_datetime(s)
                .ok_or_else(|| {
                    ApiError::field(
                        Code::Validation,
                        "due_at",
                        "invalid",
                        "not an RFC 3339 time",
                    )
                })?
                .timestamp_millis(),
        ),
        None => None,
    };
    let out = state
        .engine
        .create_task(
            &who(&caller),
            &t.title,
            t.description.as_deref(),
            t.assignee.as_deref(),
            due,
            t.form.as_deref(),
            t.record_id.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Created().json(out))
}

/// A comment.
#[derive(Debug, Deserialize)]
struct Comment {
    comment: Option<String>,
}

/// Finish a task (its assignee, a holder of its role, or an administrator).
#[utoipa::path(post, path = "/api/v1/tasks/{id}/complete", tag = "workflows", security(("bearer" = [])), params(("id" = String, Path, description = "Task id")), request_body(content = Object, description = "{\"comment\"?}"),
    responses((status = 200, description = "The task"), (status = 403, description = "Not yours"), (status = 409, description = "Already done")))]
pub async fn complete_task(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::writes(&caller)?;
    let c: Comment = body(&req, payload, "{\"comment\"?}").await?;
    let out = state
        .engine
        .complete_task(&who(&caller), &path, c.comment.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Status and page size.
#[derive(Debug, Deserialize)]
pub struct StatusParams {
    /// The status to list.
    status: Option<String>,
    /// Page size (≤ 500).
    limit: Option<u64>,
}

/// Approval requests waiting for the caller (`status=pending`, the default), or decided.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "workflows", security(("bearer" = [])), params(("status" = Option<String>, Query, description = "pending (default), approved, rejected, withdrawn, any"), ("limit" = Option<u64>, Query, description = "Page size")),
    responses((status = 200, description = "{\"data\": [approval]}")))]
pub async fn approvals(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<StatusParams>,
) -> ApiResult<HttpResponse> {
    let data = state
        .engine
        .approvals(
            &who(&caller),
            Some(q.status.as_deref().unwrap_or("pending")),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}

/// A decision.
#[derive(Debug, Deserialize)]
struct Decision {
    decision: String,
    comment: Option<String>,
}

/// Approve or reject (a rejection needs a comment).
#[utoipa::path(post, path = "/api/v1/approvals/{id}/decision", tag = "workflows", security(("bearer" = [])), params(("id" = String, Path, description = "Approval id")), request_body(content = Object, description = "{\"decision\": \"approve\"|\"reject\", \"comment\"}"),
    responses((status = 200, description = "The approval"), (status = 403, description = "Not an approver"), (status = 409, description = "Already decided"), (status = 422, description = "Bad decision, or a rejection without a comment")))]
pub async fn decide(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::writes(&caller)?;
    let d: Decision = body(&req, payload, "{\"decision\", \"comment\"}").await?;
    let approve = match d.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::field(
                Code::Validation,
                "decision",
                "invalid",
                format!("{other:?} is neither \"approve\" nor \"reject\""),
            ));
        }
    };
    let out = state
        .engine
        .decide(&who(&caller), &path, approve, d.comment.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Which notices.
#[derive(Debug, Deserialize)]
pub struct NoticeParams {
    /// Only unread ones.
    unread: Option<bool>,
    /// Page size (≤ 500).
    limit: Option<u64>,
}

/// The caller's in-app notices, newest first, with the unread count.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "workflows", security(("bearer" = [])), params(("unread" = Option<bool>, Query, description = "Only unread"), ("limit" = Option<u64>, Query, description = "Page size")),
    responses((status = 200, description = "{\"data\": [notice], \"unread\": n}")))]
pub async fn notifications(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<NoticeParams>,
) -> ApiResult<HttpResponse> {
    let out = state
        .engine
        .notifications(
            &who(&caller),
            q.unread.unwrap_or(false),
            q.limit.unwrap_or(50),
        )
        .await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Which notice to mark.
#[derive(Debug, Deserialize)]
struct ReadOne {
    id: Option<i64>,
}

/// Mark one notice (`{"id"}`) or all of them read.
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "workflows", security(("bearer" = [])), request_body(content = Object, description = "{\"id\"?}"),
    responses((status = 200, description = "{\"marked\": n}")))]
pub async fn mark_read(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::writes(&caller)?;
    let r: ReadOne = body(&req, payload, "{\"id\"?}").await?;
    let n = state.engine.mark_read(&who(&caller), r.id).await?;
    Ok(HttpResponse::Ok().json(json!({"marked": n})))
}

/// Which runs.
#[derive(Debug, Deserialize)]
pub struct RunParams {
    /// A workflow.
    workflow: Option<String>,
    /// ready, running, waiting, done, skipped, stopped, failed, cancelled.
    status: Option<String>,
    /// A record id.
    record: Option<String>,
    /// Page size (≤ 500).
    limit: Option<u64>,
}

/// Runs of every workflow, newest first (administrators).
#[utoipa::path(get, path = "/api/v1/runs", tag = "workflows", security(("bearer" = [])), params(("workflow" = Option<String>, Query, description = "A workflow"), ("status" = Option<String>, Query, description = "A status"), ("record" = Option<String>, Query, description = "A record id"), ("limit" = Option<u64>, Query, description = "Page size")),
    responses((status = 200, description = "{\"data\": [run]}")))]
pub async fn runs(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<RunParams>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let data = state
        .engine
        .runs(
            q.workflow.as_deref(),
            q.status.as_deref(),
            q.record.as_deref(),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}

/// Runs of one workflow, newest first (administrators).
#[utoipa::path(get, path = "/api/v1/workflows/{name}/runs", tag = "workflows", security(("bearer" = [])), params(("name" = String, Path, description = "Workflow name"), ("status" = Option<String>, Query, description = "A status"), ("record" = Option<String>, Query, description = "A record id"), ("limit" = Option<u64>, Query, description = "Page size")),
    responses((status = 200, description = "{\"data\": [run]}")))]
pub async fn workflow_runs(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<RunParams>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let data = state
        .engine
        .runs(
            Some(&path),
            q.status.as_deref(),
            q.record.as_deref(),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}

/// One run with its step log (administrators).
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "workflows", security(("bearer" = [])), params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run with \"steps\": each step's path, kind, status, time, detail and error")))]
pub async fn run(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    Ok(HttpResponse::Ok().json(state.engine.run(&path).await?))
}

/// Take a failed run's failed step again (administrators).
#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", tag = "workflows", security(("bearer" = [])), params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run"), (status = 409, description = "The run did not fail")))]
pub async fn retry(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    Ok(HttpResponse::Ok().json(state.engine.retry(&path).await?))
}

/// Stop a run that has not ended (administrators).
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "workflows", security(("bearer" = [])), params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run"), (status = 409, description = "The run has ended")))]
pub async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    Ok(HttpResponse::Ok().json(state.engine.cancel(&path).await?))
}

/// What to start a workflow on.
#[derive(Debug, Deserialize)]
struct Start {
    record_id: Option<String>,
    payload: Option<Value>,
}

/// Start a manual workflow on a record (anyone who may change the record), or a
/// webhook-triggered one with a payload (administrators' and integration tokens).
#[utoipa::path(post, path = "/api/v1/workflows/{name}/start", tag = "workflows", security(("bearer" = [])), params(("name" = String, Path, description = "Workflow name")), request_body(content = Object, description = "{\"record_id\"?, \"payload\"?}"),
    responses((status = 201, description = "The run"), (status = 404, description = "No such workflow or record"), (status = 409, description = "Not a manual or webhook workflow")))]
pub async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::writes(&caller)?;
    let s: Start = body(&req, payload, "{\"record_id\"?, \"payload\"?}").await?;
    let wf = trellis_store::workflows::load(&state.store.db.reader, &path)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                format!("no workflow named {:?}", path.as_str()),
            )
        })?;
    match (&wf.workflow.trigger, &s.record_id) {
        (trellis_meta::workflow::Trigger::Manual { .. }, Some(id)) => {
            // The caller must be able to change this very record: an empty change checks
            // the form, the row scope for updates and the read scope, and writes nothing.
            if !caller.perms().may(&wf.workflow.form, Action::Update) {
                return Err(ApiError::new(
                    Code::Forbidden,
                    "you may not change this record, so you may not start its workflows",
                ));
            }
            state
                .store
                .update(
                    &wf.workflow.form,
                    id,
                    serde_json::Map::new(),
                    None,
                    &caller.actor(),
                    caller.perms(),
                )
                .await?;
        }
        (trellis_meta::workflow::Trigger::Manual { .. }, None) => {
            return Err(ApiError::field(
                Code::Validation,
                "record_id",
                "required",
                "a manual workflow starts on a record",
            ));
        }
        _ => access::admin(&caller)?,
    }
    let out = state
        .engine
        .start_run(&path, s.record_id.as_deref(), s.payload, Some(&caller.0.id))
        .await?;
    Ok(HttpResponse::Created().json(out))
}

/// Outgoing e-mails and webhook calls (`status=dead` for the dead letters; administrators).
#[utoipa::path(get, path = "/api/v1/messages", tag = "workflows", security(("bearer" = [])), params(("status" = Option<String>, Query, description = "pending, sending, sent, dead"), ("limit" = Option<u64>, Query, description = "Page size")),
    responses((status = 200, description = "{\"data\": [message]}")))]
pub async fn messages(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<StatusParams>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let data = state
        .engine
        .messages(q.status.as_deref(), q.limit.unwrap_or(100))
        .await?;
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}

/// Send a dead letter again under the same key (administrators).
#[utoipa::path(post, path = "/api/v1/messages/{id}/replay", tag = "workflows", security(("bearer" = [])), params(("id" = String, Path, description = "Message id")),
    responses((status = 204, description = "Queued"), (status = 409, description = "Not a dead letter")))]
pub async fn replay(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    state.engine.replay(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}
