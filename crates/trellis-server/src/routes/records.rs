//! The record API generated for every form.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_store::ListQuery;
use trellis_store::reassign::Selection;

use crate::AppState;
use crate::auth::{Caller, client_ip};
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{parse_json, parse_object, read_body};

/// Query parameters of a list.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
    fields: Option<String>,
    expand: Option<String>,
    count: Option<bool>,
}

/// The `filter` query parameter as JSON.
fn filter_param(f: &Option<String>) -> ApiResult<Option<Value>> {
    match f {
        Some(f) if !f.trim().is_empty() => {
            serde_json::from_str::<Value>(f).map(Some).map_err(|e| {
                ApiError::field(
                    Code::InvalidFilter,
                    "filter",
                    "malformed",
                    format!("the filter is not valid JSON: {e}"),
                )
            })
        }
        _ => Ok(None),
    }
}

fn split_list(s: &Option<String>) -> Option<Vec<String>> {
    s.as_ref().map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Parse `If-Match: "3"`; `*` means any version.
fn if_match(req: &HttpRequest) -> ApiResult<Option<i64>> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default().trim();
    if s == "*" {
        return Ok(None);
    }
    s.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| {
            ApiError::field(
                Code::InvalidQuery,
                "If-Match",
                "invalid",
                "If-Match must be the record version in quotes, e.g. \"3\"",
            )
        })
}

fn etag(record: &serde_json::Map<String, Value>) -> String {
    format!(
        "\"{}\"",
        record.get("version").and_then(Value::as_i64).unwrap_or(0)
    )
}

/// `GET /api/v1/data/{form}`
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<ListParams>,
) -> ApiResult<HttpResponse> {
    let form = path.into_inner();
    state.store.registry.get(&form)?;
    let filter = filter_param(&q.filter)?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > trellis_store::records::MAX_LIMIT {
        return Err(ApiError::field(
            Code::InvalidQuery,
            "limit",
            "out_of_range",
            format!("limit is 1 to {}", trellis_store::records::MAX_LIMIT),
        ));
    }
    let lq = ListQuery {
        filter,
        sort: q.sort.clone(),
        limit,
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
        fields: split_list(&q.fields),
        expand: split_list(&q.expand).unwrap_or_default(),
        count: q.count.unwrap_or(false),
    };
    let page = state.store.list(&form, &lq, caller.perms()).await?;
    let mut body = json!({"data": page.data, "next_cursor": page.next_cursor});
    if let Some(t) = page.total {
        body["total"] = json!(t);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string()))
}

/// `POST /api/v1/data/{form}`
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let form = path.into_inner();
    state.store.registry.get(&form)?;
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let input = parse_object(&body)?;
    let rec = state
        .store
        .create(&form, input, &caller.actor(), caller.perms())
        .await?;
    let id = rec
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut resp = HttpResponse::Created();
    resp.insert_header((header::LOCATION, format!("/api/v1/data/{form}/{id}")))
        .insert_header((header::ETAG, etag(&rec)));
    // A `warn` duplicate rule lets the create through and says what it matched.
    let dupes = state
        .store
        .duplicates_of(&form, &id, &rec, caller.perms())
        .await?;
    if !dupes.is_empty() {
        let text: Vec<String> = dupes
            .iter()
            .map(|(rule, ids)| format!("{rule}={}", ids.join(",")))
            .collect();
        resp.insert_header((DUPLICATES_HEADER, text.join("; ")));
    }
    Ok(resp
        .content_type("application/json")
        .body(Value::Object(rec).to_string()))
}

/// Answers a create that duplicate rules matched: `rule=id,id; rule=id`.
pub const DUPLICATES_HEADER: &str = "Trellis-Duplicates";

/// `?rule=&limit=`.
#[derive(Debug, Deserialize)]
pub struct DuplicateParams {
    rule: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/data/{form}/duplicates`: groups of readable records that a duplicate
/// rule of the form matches.
pub async fn duplicates(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<DuplicateParams>,
) -> ApiResult<HttpResponse> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let groups = state
        .store
        .duplicate_groups(&path, q.rule.as_deref(), limit, caller.perms())
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "data": groups })))
}

/// `POST /api/v1/data/{form}/merge`: `{"survivor", "merged", "take": {"field":
/// "survivor"|"merged"}}` → the survivor and the relations re-pointed to it.
pub async fn merge(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    crate::access::writes(&caller)?;
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let doc = parse_json(&body)?;
    let mr: trellis_store::merge::MergeRequest = serde_json::from_value(doc).map_err(|e| {
        let msg = e.to_string();
        let field = ["survivor", "merged", "take"]
            .into_iter()
            .find(|f| msg.contains(f))
            .unwrap_or("body");
        ApiError::field(Code::Validation, field, "invalid", msg)
    })?;
    let (rec, repointed) = state
        .store
        .merge(&path, &mr, &caller.actor(), caller.perms())
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(&rec)))
        .json(json!({ "record": rec, "repointed": repointed })))
}

/// `POST /api/v1/data/{form}/batch`
pub async fn batch(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let form = path.into_inner();
    state.store.registry.get(&form)?;
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let doc = parse_json(&body)?;
    let Some(Value::Array(items)) = doc.get("records") else {
        return Err(ApiError::field(
            Code::MalformedJson,
            "records",
            "required",
            "send {\"records\": [ … ]}",
        ));
    };
    if items.is_empty() || items.len() > trellis_store::records::MAX_BATCH {
        return Err(ApiError::field(
            Code::Validation,
            "records",
            "count",
            format!(
                "a batch holds 1 to {} records",
                trellis_store::records::MAX_BATCH
            ),
        ));
    }
    let mut inputs = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        match it {
            Value::Object(m) => inputs.push(m.clone()),
            _ => {
                return Err(ApiError::field(
                    Code::MalformedJson,
                    &format!("records[{i}]"),
                    "not_an_object",
                    "each record is a JSON object",
                ));
            }
        }
    }
    let recs = state
        .store
        .create_batch(&form, inputs, &caller.actor(), true, caller.perms())
        .await?;
    Ok(HttpResponse::Created()
        .content_type("application/json")
        .body(json!({"data": recs}).to_string()))
}

/// `GET /api/v1/data/{form}/{id}`
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    q: web::Query<ListParams>,
) -> ApiResult<HttpResponse> {
    let (form, id) = path.into_inner();
    let fields = split_list(&q.fields);
    let expand = split_list(&q.expand);
    // Relation fields to expand are read even when `fields` leaves them out.
    let read: Option<Vec<String>> = fields
        .as_ref()
        .map(|f| f.iter().chain(expand.iter().flatten()).cloned().collect());
    let mut rec = state
        .store
        .get(&form, &id, read.as_deref(), caller.perms())
        .await?;
    let tag = etag(&rec);
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(tag.as_str())
    {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, tag))
            .finish());
    }
    if let Some(ex) = &expand {
        let snap = state.store.registry.snapshot();
        let entry = snap.get(&form)?;
        let mut one = [rec];
        state
            .store
            .expand(&snap, &entry, &mut one, ex, caller.perms())
            .await?;
        let [r] = one;
        rec = r;
    }
    if let Some(fs) = &fields {
        rec.retain(|k, _| {
            k == "id" || k == "version" || k == "expand" || fs.iter().any(|f| f == k)
        });
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, tag))
        .content_type("application/json")
        .body(Value::Object(rec).to_string()))
}

/// `PATCH /api/v1/data/{form}/{id}`
pub async fn patch(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let (form, id) = path.into_inner();
    state.store.registry.get(&form)?;
    let expected = if_match(&req)?;
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let input = parse_object(&body)?;
    let rec = state
        .store
        .update(&form, &id, input, expected, &caller.actor(), caller.perms())
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(&rec)))
        .content_type("application/json")
        .body(Value::Object(rec).to_string()))
}

/// `DELETE /api/v1/data/{form}/{id}`
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let (form, id) = path.into_inner();
    let expected = if_match(&req)?;
    state
        .store
        .delete(&form, &id, expected, &caller.actor(), caller.perms())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/data/{form}/{id}/history`
pub async fn history(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (form, id) = path.into_inner();
    let h = state.store.history(&form, &id, caller.perms()).await?;
    Ok(HttpResponse::Ok().json(json!({"data": h})))
}

/// `POST /api/v1/data/{form}/reassign`: `{"ids": [...], "to"}` or `{"from", "to"}`.
pub async fn reassign(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let form = path.into_inner();
    state.store.registry.get(&form)?;
    let doc = parse_object(&read_body(&req, payload, state.config.max_body_bytes).await?)?;
    let to = doc.get("to").and_then(Value::as_str).ok_or_else(|| {
        ApiError::field(
            Code::Validation,
            "to",
            "required",
            "name the user who receives the records",
        )
    })?;
    let sel = match (doc.get("ids"), doc.get("from")) {
        (Some(Value::Array(ids)), None) => {
            if ids.is_empty() || ids.len() > trellis_store::records::MAX_BATCH {
                return Err(ApiError::field(
                    Code::Validation,
                    "ids",
                    "count",
                    format!("1 to {} ids", trellis_store::records::MAX_BATCH),
                ));
            }
            let mut v = Vec::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                v.push(id.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::field(
                        Code::Validation,
                        &format!("ids[{i}]"),
                        "type",
                        "ids are strings",
                    )
                })?);
            }
            Selection::Ids(v)
        }
        (None, Some(Value::String(from))) => Selection::OwnedBy(from.clone()),
        _ => {
            return Err(ApiError::field(
                Code::Validation,
                "ids",
                "required",
                "send either {\"ids\": [...], \"to\"} or {\"from\", \"to\"}",
            ));
        }
    };
    let ip = client_ip(&req);
    let out = state
        .store
        .reassign(
            std::slice::from_ref(&form),
            &sel,
            to,
            &caller.actor(),
            caller.perms(),
            Some(&ip),
        )
        .await?;
    let count: u64 = out.iter().map(|r| r.count).sum();
    Ok(HttpResponse::Ok().json(json!({"form": form, "to": to, "count": count})))
}

/// One CSV cell: text as it is, lists of plain values joined with "; ", the rest as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => v.to_string(),
        Value::Array(a) if a.iter().all(|x| x.is_string() || x.is_number()) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; "),
        _ => v.to_string(),
    }
}

/// Query parameters of an export.
#[derive(Debug, Deserialize)]
pub struct ExportParams {
    filter: Option<String>,
    sort: Option<String>,
    fields: Option<String>,
    /// `csv` (default) or `xlsx`.
    format: Option<String>,
    /// Labels in this language: headers, select options, yes/no, related records' titles
    /// and users' e-mails; without it, names and stored values.
    lang: Option<String>,
}

/// How a stored value shows in a labelled export.
struct Labeller {
    lang: Option<String>,
    fields: std::collections::HashMap<String, trellis_meta::Field>,
    titles: std::collections::HashMap<String, String>,
    users: std::collections::HashMap<String, String>,
}

impl Labeller {
    fn cell(&self, column: &str, r: &serde_json::Map<String, Value>) -> Value {
        let v = r.get(column).cloned().unwrap_or(Value::Null);
        let Some(lang) = &self.lang else {
            return v;
        };
        if column == "owner" || column == "created_by" {
            return match v.as_str().and_then(|id| self.users.get(id)) {
                Some(e) => json!(e),
                None => v,
            };
        }
        let Some(f) = self.fields.get(column) else {
            return v;
        };
        let option = |x: &Value| -> Value {
            match x
                .as_str()
                .and_then(|s| f.options.iter().find(|o| o.value == s))
            {
                Some(o) => json!(trellis_meta::form::label_in(&o.label, lang, &o.value)),
                None => x.clone(),
            }
        };
        use trellis_meta::FieldType as T;
        match (f.storage_type(), &v) {
            (T::Select, _) => option(&v),
            (T::Multiselect, Value::Array(a)) => Value::Array(a.iter().map(option).collect()),
            (T::Boolean, Value::Bool(b)) => {
                let zh = lang.starts_with("zh");
                json!(match (b, zh) {
                    (true, true) => "是",
                    (false, true) => "否",
                    (true, false) => "Yes",
                    (false, false) => "No",
                })
            }
            (T::Relation, Value::String(_)) => {
                match r
                    .get("expand")
                    .and_then(|e| e.get(column))
                    .and_then(|t| t.get(self.titles.get(column)?))
                {
                    Some(t) if !t.is_null() => t.clone(),
                    _ => v,
                }
            }
            (T::User, Value::String(id)) => self.users.get(id).map_or(v.clone(), |e| json!(e)),
            _ => v,
        }
    }
}

/// A cell of a CSV export: text a spreadsheet would run as a formula is escaped.
fn csv_cell(v: &Value) -> String {
    match v {
        Value::String(s) => trellis_reports::export::defuse(s),
        // A number such as -5 is no formula; lists and objects may hold text that is.
        Value::Number(_) | Value::Bool(_) | Value::Null => cell(v),
        other => trellis_reports::export::defuse(&cell(other)),
    }
}

/// `GET /api/v1/data/{form}/export`: the records a list with the same `filter`, `sort`
/// and `fields` would give, every page of them, streamed (never all in memory), as CSV
/// (UTF-8 with a byte-order mark, so spreadsheet programs read Chinese right) or XLSX.
/// With `lang`, headers and values are labels in that language (and the columns default
/// to the form's fields), which an import reads back unchanged. Only what the caller may
/// read; text that would run as a formula is escaped.
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<ExportParams>,
) -> ApiResult<HttpResponse> {
    let form = path.into_inner();
    let entry = state.store.registry.get(&form)?;
    let filter = filter_param(&q.filter)?;
    let perms = caller.perms().clone();
    let xlsx = match q.format.as_deref() {
        None | Some("csv") => false,
        Some("xlsx") => true,
        Some(other) => {
            return Err(ApiError::field(
                Code::InvalidQuery,
                "format",
                "unknown_format",
                format!("unknown format {other:?}: use csv or xlsx"),
            ));
        }
    };
    let visible = entry
        .form
        .fields
        .iter()
        .filter(|f| trellis_store::access::visible(&perms, &form, &f.name))
        .filter(|f| f.kind != trellis_meta::FieldType::Subtable || q.lang.is_none());
    let columns: Vec<String> = match (split_list(&q.fields), &q.lang) {
        (Some(f), None) => std::iter::once("id".to_owned())
            .chain(f.into_iter().filter(|x| x != "id"))
            .collect(),
        (Some(f), Some(_)) => f,
        (None, None) => std::iter::once("id".to_owned())
            .chain(visible.map(|f| f.name.clone()))
            .chain(["owner", "created_at", "updated_at"].map(str::to_owned))
            .collect(),
        (None, Some(_)) => visible.map(|f| f.name.clone()).collect(),
    };
    let mut labeller = Labeller {
        lang: q.lang.clone(),
        fields: entry
            .form
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.clone()))
            .collect(),
        titles: Default::default(),
        users: Default::default(),
    };
    let mut expand = Vec::new();
    if q.lang.is_some() {
        for c in &columns {
            if let Some(f) = entry.form.field(c)
                && f.kind == trellis_meta::FieldType::Relation
                && let Some(t) = f.target.as_deref()
                && let Ok(te) = state.store.registry.get(t)
                && let Some(title) = te.form.title_field.clone()
            {
                expand.push(c.clone());
                labeller.titles.insert(c.clone(), title);
            }
        }
        if columns.iter().any(|c| {
            c == "owner"
                || c == "created_by"
                || entry
                    .form
                    .field(c)
                    .is_some_and(|f| f.kind == trellis_meta::FieldType::User)
        }) {
            // E-mails for administrators (an import matches them back); names for the
            // others, who may not list users and so never see their e-mails.
            let emails = perms.may_inspect();
            for u in trellis_store::auth::list_users(&state.store.db).await? {
                let shown = if emails {
                    u.email
                } else if u.name.is_empty() {
                    u.id.clone()
                } else {
                    u.name
                };
                labeller.users.insert(u.id, shown);
            }
        }
    }
    let headers: Vec<String> = columns
        .iter()
        .map(|c| match (&q.lang, entry.form.field(c)) {
            (Some(lang), Some(f)) => {
                trellis_meta::form::label_in(&f.label, lang, &f.name).to_owned()
            }
            _ => c.clone(),
        })
        .collect();
    let lq = ListQuery {
        filter,
        sort: q.sort.clone(),
        limit: trellis_store::records::MAX_LIMIT,
        cursor: None,
        fields: Some(columns.clone()),
        expand,
        count: xlsx,
    };
    // The first page before answering: a bad filter is still a 400, not a broken file.
    let first = state.store.list(&form, &lq, &perms).await?;
    if xlsx {
        if first.total.unwrap_or(0) > trellis_reports::export::MAX_XLSX_ROWS {
            return Err(ApiError::field(
                Code::InvalidQuery,
                "format",
                "too_many_rows",
                format!(
                    "{} records do not fit in one XLSX sheet ({} at most): export CSV, or filter",
                    first.total.unwrap_or(0),
                    trellis_reports::export::MAX_XLSX_ROWS
                ),
            ));
        }
        return export_xlsx(
            &state, &form, &headers, &columns, &labeller, lq, first, &perms,
        )
        .await;
    }
    let labeller = std::sync::Arc::new(labeller);
    let page_csv = {
        let (columns, labeller) = (columns.clone(), labeller.clone());
        move |rows: &[serde_json::Map<String, Value>]| -> ApiResult<web::Bytes> {
            let mut w = csv::Writer::from_writer(Vec::new());
            let fail =
                |e: csv::Error| ApiError::new(Code::Internal, format!("writing CSV failed: {e}"));
            for r in rows {
                w.write_record(columns.iter().map(|c| csv_cell(&labeller.cell(c, r))))
                    .map_err(fail)?;
            }
            let bytes = w
                .into_inner()
                .map_err(|e| ApiError::new(Code::Internal, format!("writing CSV failed: {e}")))?;
            Ok(web::Bytes::from(bytes))
        }
    };
    let mut head = "\u{FEFF}".as_bytes().to_vec();
    {
        let mut w = csv::Writer::from_writer(&mut head);
        w.write_record(headers.iter().map(|h| trellis_reports::export::defuse(h)))
            .map_err(|e| ApiError::new(Code::Internal, format!("writing CSV failed: {e}")))?;
    }
    head.extend_from_slice(&page_csv(&first.data)?);
    let next = first.next_cursor.clone();
    let store = state.store.clone();
    let form_name = form.clone();
    let rest = futures_util::stream::unfold(next, move |cursor| {
        let (store, perms, form, mut lq, page_csv) = (
            store.clone(),
            perms.clone(),
            form_name.clone(),
            lq.clone(),
            page_csv.clone(),
        );
        async move {
            let c = cursor?;
            lq.cursor = Some(c);
            lq.count = false;
            match store.list(&form, &lq, &perms).await {
                Ok(page) => match page_csv(&page.data) {
                    Ok(b) => Some((Ok::<_, actix_web::Error>(b), page.next_cursor)),
                    Err(e) => Some((Err(e.into()), None)),
                },
                Err(e) => {
                    // The answer has started: all that can be done is to stop it short.
                    tracing::error!(form = %form, error = %e, "an export stopped");
                    Some((Err(ApiError::from(e).into()), None))
                }
            }
        }
    });
    let body =
        futures_util::stream::once(
            async move { Ok::<_, actix_web::Error>(web::Bytes::from(head)) },
        )
        .chain(rest);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{form}.csv\""),
        ))
        .streaming(body))
}

/// An XLSX export: pages go to a constant-memory workbook on disk, which is then sent and
/// removed.
#[allow(clippy::too_many_arguments)]
async fn export_xlsx(
    state: &AppState,
    form: &str,
    headers: &[String],
    columns: &[String],
    labeller: &Labeller,
    mut lq: ListQuery,
    first: trellis_store::records::Page,
    perms: &trellis_access::Permissions,
) -> ApiResult<HttpResponse> {
    let fail =
        |e: trellis_reports::export::ExportError| ApiError::new(Code::Internal, e.to_string());
    let mut book = trellis_reports::export::XlsxStream::new(form, headers).map_err(fail)?;
    let mut page = first;
    loop {
        for r in &page.data {
            // Lists and objects as the CSV shows them (a list joined by "; ").
            let row: Vec<Value> = columns
                .iter()
                .map(|c| match labeller.cell(c, r) {
                    v @ (Value::Array(_) | Value::Object(_)) => Value::String(cell(&v)),
                    v => v,
                })
                .collect();
            book.row(&row).map_err(fail)?;
        }
        let Some(c) = page.next_cursor.take() else {
            break;
        };
        lq.cursor = Some(c);
        lq.count = false;
        page = state.store.list(form, &lq, perms).await?;
    }
    let dir = state.config.files_dir.join("exports");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    let path = dir.join(format!("{}.xlsx", uuid::Uuid::now_v7()));
    let p = path.clone();
    tokio::task::spawn_blocking(move || book.save(&p))
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
        .map_err(fail)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    // Unlinked now; the open handle still reads it to the end.
    let _ = tokio::fs::remove_file(&path).await;
    Ok(HttpResponse::Ok()
        .content_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{form}.xlsx\""),
        ))
        .streaming(tokio_util::io::ReaderStream::new(file)))
}
