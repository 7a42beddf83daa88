//! Reports and dashboards: definitions (administrators), and runs for anyone who may read
//! the report's form — each run counts only what the caller may read.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use trellis_meta::report::{Dashboard, Report, bind_run_params};
use trellis_meta::role::Action;
use trellis_reports::{Input, Output};
use trellis_store::StoreError;
use trellis_store::reports::{self as defs, Stored};

use crate::AppState;
use crate::access;
use crate::auth::{Caller, client_ip};
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{name_taken, parse_object, read_body, read_definition, read_named_definition};

/// Largest body of a run request.
const RUN_LIMIT: usize = 1 << 20;

/// Widgets of one dashboard run at the same time.
const WIDGETS_AT_ONCE: usize = 3;

fn view<T: serde::Serialize>(s: &Stored<T>) -> ApiResult<Value> {
    let mut v = serde_json::to_value(&s.def).map_err(StoreError::from)?;
    v["bundle"] = json!(s.bundle);
    v["updated_at"] = json!(s.updated_at);
    Ok(v)
}

/// A run's errors: the definition was checked when saved, so what is wrong now is the run
/// (its parameters, its size): `invalid_run`, naming the part.
fn run_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Definition(errs) => ApiError {
            code: Code::InvalidRun,
            detail: errs.first().map(|e| e.message.clone()).unwrap_or_default(),
            errors: errs
                .iter()
                .map(|e| json!({"field": e.path, "code": e.code, "message": e.message}))
                .collect(),
            extra: None,
        },
        other => other.into(),
    }
}

async fn stored_report(state: &AppState, name: &str) -> ApiResult<Stored<Report>> {
    defs::load_report(&state.store.db.reader, name)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no report named {name:?}")))
}

async fn stored_dashboard(state: &AppState, name: &str) -> ApiResult<Stored<Dashboard>> {
    defs::load_dashboard(&state.store.db.reader, name)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no dashboard named {name:?}")))
}

/// May the caller see this report (its definition, its runs)?
fn may_see(caller: &Caller, r: &Report) -> bool {
    caller.perms().may_inspect() || caller.perms().may(&r.form, Action::Read)
}

fn hidden(name: &str) -> ApiError {
    ApiError::new(
        Code::Forbidden,
        format!("you may not read the records the report {name:?} counts"),
    )
}

/// Reports whose form the caller may read.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", security(("bearer" = [])), responses((status = 200, description = "{\"data\": [report…]}")))]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let data = defs::list_reports(&state.store.db.reader)
        .await?
        .iter()
        .filter(|s| may_see(&caller, &s.def))
        .map(view)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}

async fn save_report(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    doc: &Value,
) -> ApiResult<Value> {
    let snap = state.store.registry.snapshot();
    let r = defs::check_report(doc, &snap).map_err(StoreError::Definition)?;
    let ip = client_ip(req);
    defs::put_report(&state.store.db, &r, caller.by(&ip)).await?;
    view(&stored_report(state, &r.name).await?)
}

/// Create a report (schemas/report.schema.json) (administrators).
#[utoipa::path(post, path = "/api/v1/reports", tag = "reports", security(("bearer" = [])), request_body(content = Object, description = "A report"),
    responses((status = 201, description = "Created"), (status = 409, description = "The name is taken"), (status = 422, description = "Invalid, with the path of each problem")))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = read_definition(&req, payload).await?;
    if let Some(n) = doc.get("name").and_then(Value::as_str)
        && defs::load_report(&state.store.db.reader, n)
            .await?
            .is_some()
    {
        return Err(name_taken("report", "reports", n));
    }
    Ok(HttpResponse::Created().json(save_report(&state, &caller, &req, &doc).await?))
}

/// One report.
#[utoipa::path(get, path = "/api/v1/reports/{name}", tag = "reports", security(("bearer" = [])), params(("name" = String, Path, description = "Report name")), responses((status = 200, description = "The report")))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let s = stored_report(&state, &path).await?;
    if !may_see(&caller, &s.def) {
        return Err(hidden(&path));
    }
    Ok(HttpResponse::Ok().json(view(&s)?))
}

/// Create or replace a report (administrators).
#[utoipa::path(put, path = "/api/v1/reports/{name}", tag = "reports", security(("bearer" = [])), params(("name" = String, Path, description = "Report name")), request_body(content = Object, description = "A report"),
    responses((status = 200, description = "The report"), (status = 422, description = "Invalid")))]
pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = read_named_definition(&req, payload, &path, "reports").await?;
    Ok(HttpResponse::Ok().json(save_report(&state, &caller, &req, &doc).await?))
}

/// Delete a report; refused while a dashboard shows it (administrators).
#[utoipa::path(delete, path = "/api/v1/reports/{name}", tag = "reports", security(("bearer" = [])), params(("name" = String, Path, description = "Report name")),
    responses((status = 204, description = "Deleted"), (status = 409, description = "A dashboard shows it")))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let ip = client_ip(&req);
    defs::delete_report(&state.store.db, &path, caller.by(&ip)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Query string of a run.
#[derive(Debug, Deserialize)]
pub struct RunQuery {
    /// A filter (JSON) ANDed with the report's.
    filter: Option<String>,
    /// Parameter values (a JSON object).
    params: Option<String>,
    /// `json` (default), `csv` or `xlsx`.
    format: Option<String>,
    /// Return each row's drill-down filter.
    drill: Option<bool>,
    /// Language of the file's headers.
    lang: Option<String>,
}

fn json_param(v: &Option<String>, name: &str) -> ApiResult<Option<Value>> {
    match v {
        Some(s) if !s.trim().is_empty() => serde_json::from_str(s).map(Some).map_err(|e| {
            ApiError::field(
                Code::InvalidQuery,
                name,
                "malformed",
                format!("{name} is not valid JSON: {e}"),
            )
        }),
        _ => Ok(None),
    }
}

fn object(v: Option<Value>, name: &str) -> ApiResult<Map<String, Value>> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::field(
            Code::InvalidQuery,
            name,
            "not_an_object",
            format!("{name} must be a JSON object"),
        )),
    }
}

/// The run's input from the query string, and from a POST body when there is one.
fn input(q: &RunQuery, body: Option<Map<String, Value>>) -> ApiResult<Input> {
    let mut filter = json_param(&q.filter, "filter")?;
    let mut params = object(json_param(&q.params, "params")?, "params")?;
    let mut drill = q.drill.unwrap_or(false);
    if let Some(mut b) = body {
        if let Some(f) = b.remove("filter").filter(|f| !f.is_null()) {
            filter = Some(f);
        }
        if let Some(p) = b.remove("params") {
            params.extend(object(Some(p), "params")?);
        }
        if let Some(d) = b.remove("drill") {
            drill = d.as_bool().ok_or_else(|| {
                ApiError::field(
                    Code::InvalidQuery,
                    "drill",
                    "not_a_boolean",
                    "drill is true or false",
                )
            })?;
        }
        if let Some(k) = b.keys().next() {
            return Err(ApiError::field(
                Code::InvalidQuery,
                k,
                "unknown_key",
                "a run takes filter, params and drill",
            ));
        }
    }
    if let Some(f) = &filter
        && !f.is_object()
    {
        return Err(ApiError::field(
            Code::InvalidFilter,
            "filter",
            "not_an_object",
            "a filter is a JSON object",
        ));
    }
    Ok(Input {
        filter,
        params,
        drill,
    })
}

/// The answer in the format asked for.
fn respond(out: &Output, name: &str, q: &RunQuery) -> ApiResult<HttpResponse> {
    let lang = q.lang.as_deref().unwrap_or("en");
    let file = |bytes: Vec<u8>, mime: &str, ext: &str| {
        HttpResponse::Ok()
            .content_type(mime)
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{ext}\""),
            ))
            .body(bytes)
    };
    let export = |e: trellis_reports::export::ExportError| {
        tracing::error!(error = %e, "export failed");
        ApiError::new(
            Code::Internal,
            "the file could not be written; the error is logged",
        )
    };
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(HttpResponse::Ok().json(out)),
        "csv" => Ok(file(
            trellis_reports::export::csv(out, lang).map_err(export)?,
            "text/csv; charset=utf-8",
            "csv",
        )),
        "xlsx" => Ok(file(
            trellis_reports::export::xlsx(out, lang, name).map_err(export)?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        )),
        other => Err(ApiError::field(
            Code::InvalidQuery,
            "format",
            "unknown_format",
            format!("{other:?} is not json, csv or xlsx"),
        )),
    }
}

async fn run_stored(
    state: &AppState,
    caller: &Caller,
    name: &str,
    q: &RunQuery,
    body: Option<Map<String, Value>>,
) -> ApiResult<HttpResponse> {
    let s = stored_report(state, name).await?;
    if !may_see(caller, &s.def) {
        return Err(hidden(name));
    }
    let input = input(q, body)?;
    let out = trellis_reports::run(&state.store, &s.def, &input, caller.perms())
        .await
        .map_err(run_error)?;
    respond(&out, name, q)
}

/// Run a report: `{"columns": [{"name", "type", "label"}…], "rows": [[…]…]}`, dimension
/// values first, then measures; `?drill=true` adds each row's filter; `?format=csv|xlsx`.
#[utoipa::path(get, path = "/api/v1/reports/{name}/run", tag = "reports", security(("bearer" = [])),
    params(("name" = String, Path, description = "Report name"), ("filter" = Option<String>, Query, description = "A filter (JSON)"), ("params" = Option<String>, Query, description = "Parameter values (JSON object)"), ("format" = Option<String>, Query, description = "json, csv or xlsx"), ("drill" = Option<bool>, Query, description = "Each row's drill-down filter"), ("lang" = Option<String>, Query, description = "Language of file headers")),
    responses((status = 200, description = "The result"), (status = 403, description = "The caller may not read the form or a field the report uses"), (status = 422, description = "Parameters of the wrong type, too many groups")))]
pub async fn run_get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<RunQuery>,
) -> ApiResult<HttpResponse> {
    run_stored(&state, &caller, &path, &q, None).await
}

/// Run a report with `{"filter", "params", "drill"}` in the body.
#[utoipa::path(post, path = "/api/v1/reports/{name}/run", tag = "reports", security(("bearer" = [])),
    params(("name" = String, Path, description = "Report name"), ("format" = Option<String>, Query, description = "json, csv or xlsx")),
    request_body(content = Object, description = "{\"filter\"?, \"params\"?, \"drill\"?}"),
    responses((status = 200, description = "The result"), (status = 422, description = "Parameters of the wrong type, too many groups")))]
pub async fn run_post(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<RunQuery>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let body = read_body(&req, payload, RUN_LIMIT).await?;
    let body = if body.is_empty() {
        None
    } else {
        Some(parse_object(&body)?)
    };
    run_stored(&state, &caller, &path, &q, body).await
}

/// Run a definition without saving it (a report designer's preview, administrators):
/// `{"report": …, "filter"?, "params"?, "drill"?}`.
#[utoipa::path(post, path = "/api/v1/reports/preview", tag = "reports", security(("bearer" = [])),
    params(("format" = Option<String>, Query, description = "json, csv or xlsx")),
    request_body(content = Object, description = "{\"report\": a report, \"filter\"?, \"params\"?, \"drill\"?}"),
    responses((status = 200, description = "The result"), (status = 422, description = "The definition or the run is invalid")))]
pub async fn preview(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<RunQuery>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    // Report designers are administrators; a preview checks against every field, so it
    // would tell others which hidden fields exist.
    access::inspect(&caller)?;
    let mut body = parse_object(&read_body(&req, payload, RUN_LIMIT).await?)?;
    let doc = body.remove("report").ok_or_else(|| {
        ApiError::field(
            Code::InvalidQuery,
            "report",
            "required",
            "send the definition under \"report\"",
        )
    })?;
    let snap = state.store.registry.snapshot();
    let r = defs::check_report(&doc, &snap).map_err(|errs| {
        StoreError::Definition(
            errs.into_iter()
                .map(|mut e| {
                    e.path = if e.path.is_empty() {
                        "report".into()
                    } else {
                        format!("report.{}", e.path)
                    };
                    e
                })
                .collect(),
        )
    })?;
    let input = input(&q, Some(body))?;
    let out = trellis_reports::run(&state.store, &r, &input, caller.perms())
        .await
        .map_err(run_error)?;
    respond(&out, &r.name, &q)
}

/// Dashboards (anyone signed in; each widget shows what the caller may read).
#[utoipa::path(get, path = "/api/v1/dashboards", tag = "reports", security(("bearer" = [])), responses((status = 200, description = "{\"data\": [dashboard…]}")))]
pub async fn list_dashboards(
    state: web::Data<AppState>,
    _caller: Caller,
) -> ApiResult<HttpResponse> {
    let data = defs::list_dashboards(&state.store.db.reader)
        .await?
        .iter()
        .map(view)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(HttpResponse::Ok().json(json!({"data": data})))
}

/// Create a dashboard (schemas/dashboard.schema.json) (administrators).
#[utoipa::path(post, path = "/api/v1/dashboards", tag = "reports", security(("bearer" = [])), request_body(content = Object, description = "A dashboard"),
    responses((status = 201, description = "Created"), (status = 409, description = "The name is taken"), (status = 422, description = "Invalid")))]
pub async fn create_dashboard(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = read_definition(&req, payload).await?;
    if let Some(n) = doc.get("name").and_then(Value::as_str)
        && defs::load_dashboard(&state.store.db.reader, n)
            .await?
            .is_some()
    {
        return Err(name_taken("dashboard", "dashboards", n));
    }
    let ip = client_ip(&req);
    let d = defs::put_dashboard(&state.store.db, &doc, caller.by(&ip)).await?;
    Ok(HttpResponse::Created().json(view(&stored_dashboard(&state, &d.name).await?)?))
}

/// One dashboard.
#[utoipa::path(get, path = "/api/v1/dashboards/{name}", tag = "reports", security(("bearer" = [])), params(("name" = String, Path, description = "Dashboard name")), responses((status = 200, description = "The dashboard")))]
pub async fn get_dashboard(
    state: web::Data<AppState>,
    _caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(view(&stored_dashboard(&state, &path).await?)?))
}

/// Create or replace a dashboard (administrators).
#[utoipa::path(put, path = "/api/v1/dashboards/{name}", tag = "reports", security(("bearer" = [])), params(("name" = String, Path, description = "Dashboard name")), request_body(content = Object, description = "A dashboard"),
    responses((status = 200, description = "The dashboard"), (status = 422, description = "Invalid")))]
pub async fn put_dashboard(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let doc = read_named_definition(&req, payload, &path, "dashboards").await?;
    let ip = client_ip(&req);
    let d = defs::put_dashboard(&state.store.db, &doc, caller.by(&ip)).await?;
    Ok(HttpResponse::Ok().json(view(&stored_dashboard(&state, &d.name).await?)?))
}

/// Delete a dashboard (administrators).
#[utoipa::path(delete, path = "/api/v1/dashboards/{name}", tag = "reports", security(("bearer" = [])), params(("name" = String, Path, description = "Dashboard name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_dashboard(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    access::admin(&caller)?;
    let ip = client_ip(&req);
    defs::delete_dashboard(&state.store.db, &path, caller.by(&ip)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Query string of a dashboard run.
#[derive(Debug, Deserialize)]
pub struct DashboardQuery {
    /// Dashboard-wide parameter values (a JSON object).
    params: Option<String>,
}

/// Run every widget of a dashboard with the dashboard-wide parameters:
/// `{"name", "label", "widgets": [{"report", "chart", "title", "width", "result" | "error"}]}`.
/// A widget the caller may not see carries its error; the others still answer.
#[utoipa::path(get, path = "/api/v1/dashboards/{name}/run", tag = "reports", security(("bearer" = [])),
    params(("name" = String, Path, description = "Dashboard name"), ("params" = Option<String>, Query, description = "Dashboard parameters (JSON object)")),
    responses((status = 200, description = "Each widget's result or error"), (status = 422, description = "A parameter of the wrong type")))]
pub async fn run_dashboard(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<DashboardQuery>,
) -> ApiResult<HttpResponse> {
    let d = stored_dashboard(&state, &path).await?.def;
    let given = object(json_param(&q.params, "params")?, "params")?;
    let shared = bind_run_params(&d.params, &given, caller.perms().user(), "the dashboard")
        .map_err(|errs| run_error(StoreError::Definition(errs)))?;
    let reports = defs::list_reports(&state.store.db.reader).await?;
    let caller = &caller;
    let runs = d.widgets.iter().map(|w| {
        let report = reports
            .iter()
            .find(|r| r.def.name == w.report)
            .map(|r| r.def.clone());
        let (store, perms, shared) = (&state.store, caller.perms(), &shared);
        async move {
            let Some(r) = report else {
                return Err(ApiError::new(
                    Code::NotFound,
                    format!("no report named {:?}", w.report),
                ));
            };
            if !may_see(caller, &r) {
                return Err(hidden(&r.name));
            }
            trellis_reports::run_widget(store, &r, &w.params, shared, perms)
                .await
                .map_err(run_error)
                .map(|out| (r, out))
        }
    });
    // A few at a time: each widget holds a reader, and the pool serves writes too.
    let results: Vec<_> = futures_util::stream::iter(runs)
        .buffered(WIDGETS_AT_ONCE)
        .collect()
        .await;
    let widgets: Vec<Value> = d
        .widgets
        .iter()
        .zip(results)
        .map(|(w, res)| {
            let mut v = json!({"report": w.report, "chart": w.chart, "width": w.width});
            match res {
                Ok((r, out)) => {
                    v["title"] = json!(w.title.clone().unwrap_or(r.label));
                    v["result"] = json!(out);
                }
                Err(e) => {
                    v["title"] = json!(w.title);
                    v["error"] = e.problem();
                }
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok()
        .json(json!({"name": d.name, "label": d.label, "params": shared, "widgets": widgets})))
}
