//! Rule definitions: list, create, read, replace, delete, and a test run on a sample.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use trellis_store::StoreError;
use trellis_store::rules::{self, RuleEntry};

use crate::AppState;
use crate::access;
use crate::auth::{Caller, client_ip};
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{name_taken, parse_object, read_body, read_definition, read_named_definition};

fn view(e: &RuleEntry) -> ApiResult<Value> {
    let mut v = serde_json::to_value(&*e.rule).map_err(StoreError::from)?;
    v["bundle"] = json!(e.bundle);
    Ok(v)
}

fn entry(state: &AppState, name: &str) -> ApiResult<RuleEntry> {
    state
        .store
        .rules
        .get(name)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no rule named {name:?}")))
}

/// Rules (administrators).
#[utoipa::path(get, path = "/api/v1/rules", tag = "rules", security(("bearer" = [])), responses((status = 200, description = "Rules")))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    let data = state
        .store
        .rules
        .list()
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
    let (rule, _) = rules::check(doc, &snap).map_err(StoreError::Definition)?;
    let ip = client_ip(req);
    rules::put(&state.store.db, &state.store.rules, &rule, caller.by(&ip)).await?;
    view(&entry(state, &rule.name)?)
}

/// Create a rule (schemas/rule.schema.json); its script is compiled now (administrators).
#[utoipa::path(post, path = "/api/v1/rules", tag = "rules", security(("bearer" = [])), request_body(content = Object, description = "A rule"),
    responses((status = 201, description = "Created"), (status = 409, description = "The name is taken"), (status = 422, description = "Invalid, or the script does not compile")))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = read_definition(&req, payload).await?;
    if let Some(n) = doc.get("name").and_then(Value::as_str)
        && state.store.rules.get(n).is_some()
    {
        return Err(name_taken("rule", "rules", n));
    }
    Ok(HttpResponse::Created().json(save(&state, &caller, &req, &doc).await?))
}

/// One rule.
#[utoipa::path(get, path = "/api/v1/rules/{name}", tag = "rules", security(("bearer" = [])), params(("name" = String, Path, description = "Rule name")), responses((status = 200, description = "The rule")))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    access::inspect(&caller)?;
    Ok(HttpResponse::Ok().json(view(&entry(&state, &path)?)?))
}

/// Create or replace a rule; writes use it at once (administrators).
#[utoipa::path(put, path = "/api/v1/rules/{name}", tag = "rules", security(("bearer" = [])), params(("name" = String, Path, description = "Rule name")), request_body(content = Object, description = "A rule"),
    responses((status = 200, description = "The rule"), (status = 422, description = "Invalid, or the script does not compile")))]
pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = read_named_definition(&req, payload, &path, "rules").await?;
    Ok(HttpResponse::Ok().json(save(&state, &caller, &req, &doc).await?))
}

/// Delete a rule (administrators).
#[utoipa::path(delete, path = "/api/v1/rules/{name}", tag = "rules", security(("bearer" = [])), params(("name" = String, Path, description = "Rule name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let ip = client_ip(&req);
    rules::delete(&state.store.db, &state.store.rules, &path, caller.by(&ip)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Run a rule on a sample `{"record": {...}, "previous"?: {...}}`; nothing is written.
/// Answers the result, `reject` and `assign` calls and the `print`/`debug` output, or the
/// error with its line.
#[utoipa::path(post, path = "/api/v1/rules/{name}/test", tag = "rules", security(("bearer" = [])), params(("name" = String, Path, description = "Rule name")),
    responses((status = 200, description = "{\"result\", \"rejections\", \"assigned\", \"log\"} or {\"error\": {\"kind\", \"line\", \"column\", \"message\"}}")))]
pub async fn test(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let e = entry(&state, &path)?;
    let doc = parse_object(&read_body(&req, payload, 1 << 20).await?)?;
    let object = |k: &str| -> ApiResult<Option<Map<String, Value>>> {
        match doc.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(ApiError::field(
                Code::Validation,
                k,
                "not_an_object",
                "a record is a JSON object",
            )),
        }
    };
    let record = object("record")?.unwrap_or_default();
    let previous = object("previous")?;
    // Lookups read the database; the script's own work is bounded by the engine's limits.
    let out = state
        .store
        .test_rule(&e.rule.name, &record, previous.as_ref())
        .await?;
    Ok(HttpResponse::Ok().json(match out {
        Ok(o) => json!({"result": o.value, "rejections": o.rejections.iter()
            .map(|r| json!({"field": r.field, "message": r.message})).collect::<Vec<_>>(),
            "assigned": o.assigned, "log": o.log}),
        Err(err) => json!({"error": {"kind": err.kind.code(), "line": err.line,
            "column": err.column, "message": err.to_string()}}),
    }))
}
