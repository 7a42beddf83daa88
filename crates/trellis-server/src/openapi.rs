//! The OpenAPI 3.1 document: utoipa describes the static routes; every form adds its own
//! paths and schemas at request time, so a new field shows without a restart.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use trellis_meta::record::{Mode, input_schema, output_schema};
use trellis_store::FormEntry;
use utoipa::OpenApi;

use crate::routes::{
    audit, bundles, forms, imports, inbox, ops, public, reports, roles, rules, users, workflows,
};

/// The static part of the API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Trellis", description = "Self-hosted no-code platform: forms, records, rules, workflows and reports. Every form gets the record API below."),
    paths(
        users::login, users::logout, users::me, users::list_tokens, users::create_token, users::revoke_token,
        users::csrf, users::list_users, users::create_user, users::get_user, users::patch_user, users::reassign_user,
        users::list_teams, users::create_team, users::get_team, users::patch_team,
        roles::list, roles::create, roles::get, roles::put, roles::delete, audit::list,
        rules::list, rules::create, rules::get, rules::put, rules::delete, rules::test,
        workflows::list, workflows::create, workflows::get, workflows::put, workflows::delete, workflows::versions,
        reports::list, reports::create, reports::get, reports::put, reports::delete, reports::run_get, reports::run_post, reports::preview,
        reports::list_dashboards, reports::create_dashboard, reports::get_dashboard, reports::put_dashboard, reports::delete_dashboard, reports::run_dashboard,
        inbox::tasks, inbox::create_task, inbox::complete_task, inbox::approvals, inbox::decide,
        inbox::notifications, inbox::mark_read, inbox::runs, inbox::workflow_runs, inbox::run,
        inbox::retry, inbox::cancel, inbox::start, inbox::messages, inbox::replay,
        public::get, public::put, public::delete, public::submit,
        forms::list, forms::create, forms::get, forms::put, forms::delete, forms::list_versions, forms::columns,
        bundles::list, bundles::install, bundles::export,
        imports::start, imports::list, imports::get, imports::rows, imports::errors, imports::cancel, imports::delete,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    tags((name = "auth"), (name = "people"), (name = "rules"), (name = "workflows"), (name = "reports", description = "Reports and dashboards"), (name = "forms"), (name = "bundles"), (name = "imports", description = "CSV and XLSX imports, run as jobs"), (name = "operations"), (name = "records", description = "Generated for every form"))
)]
pub struct ApiDoc;

/// The static document as JSON, with the bearer scheme and the problem schema.
pub fn base() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(
        |_| json!({"openapi": "3.1.0", "info": {"title": "Trellis", "version": "0"}, "paths": {}}),
    );
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    let comps = doc
        .as_object_mut()
        .map(|o| o.entry("components").or_insert_with(|| json!({})));
    if let Some(c) = comps {
        c["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer"}});
        if c.get("schemas").is_none() {
            c["schemas"] = json!({});
        }
        c["schemas"]["Problem"] = json!({
            "type": "object", "description": "RFC 9457 problem details",
            "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}}}}}
        });
    }
    doc
}

fn pascal(name: &str) -> String {
    name.split('_')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn problem(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn param(name: &str, desc: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": desc, "schema": schema})
}

/// The whole document for the forms as they are now.
pub fn document(base: &Value, forms: &[Arc<FormEntry>]) -> Value {
    let mut doc = base.clone();
    let mut paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let sec = json!([{"bearer": []}]);
    let id_param =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    for e in forms {
        let n = &e.form.name;
        let p = pascal(n);
        let label = e.form.label_in("en").to_owned();
        schemas.insert(format!("{p}Record"), output_schema(&e.form));
        schemas.insert(format!("{p}Input"), input_schema(&e.form, Mode::Create));
        schemas.insert(format!("{p}Patch"), input_schema(&e.form, Mode::Update));
        let rec = json!({"$ref": format!("#/components/schemas/{p}Record")});
        let tags = json!(["records"]);
        paths.insert(format!("/api/v1/data/{n}"), json!({
            "get": {"tags": tags, "summary": format!("List {label} records"), "operationId": format!("list_{n}"), "security": sec,
                "parameters": [
                    param("filter", "Filter in the filter language (JSON)", json!({"type": "string"})),
                    param("sort", "Comma-separated fields, - for descending", json!({"type": "string"})),
                    param("limit", "Page size, 1 to 1000", json!({"type": "integer", "default": 50, "minimum": 1, "maximum": 1000})),
                    param("cursor", "next_cursor of the previous page", json!({"type": "string"})),
                    param("fields", "Only these fields", json!({"type": "string"})),
                    param("expand", "Relation fields to embed", json!({"type": "string"})),
                    param("count", "Also count all matches", json!({"type": "boolean"}))],
                "responses": {"200": {"description": "A page", "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"data": {"type": "array", "items": rec}, "next_cursor": {"type": ["string", "null"]}, "total": {"type": "integer"}}}}}},
                    "400": problem("Invalid filter, sort or cursor"), "401": problem("No token")}},
            "post": {"tags": tags, "summary": format!("Create a {label} record"), "operationId": format!("create_{n}"), "security": sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{p}Input")}}}},
                "responses": {"201": {"description": "Created", "content": {"application/json": {"schema": rec}}},
                    "409": problem("Unique value taken"), "422": problem("Invalid values"), "401": problem("No token")}}
        }));
        paths.insert(format!("/api/v1/data/{n}/batch"), json!({
            "post": {"tags": tags, "summary": format!("Create up to 1000 {label} records, all or nothing"), "operationId": format!("batch_{n}"), "security": sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["records"],
                    "properties": {"records": {"type": "array", "maxItems": 1000, "items": {"$ref": format!("#/components/schemas/{p}Input")}}}}}}},
                "responses": {"201": {"description": "Created", "content": {"application/json": {"schema": {"type": "object", "properties": {"data": {"type": "array", "items": rec}}}}}},
                    "409": problem("Unique value taken"), "422": problem("Invalid values")}}
        }));
        paths.insert(format!("/api/v1/data/{n}/export"), json!({
            "get": {"tags": tags, "summary": format!("Export {label} records as CSV or XLSX"), "operationId": format!("export_{n}"), "security": sec,
                "parameters": [
                    param("filter", "Filter in the filter language (JSON)", json!({"type": "string"})),
                    param("sort", "Comma-separated fields, - for descending", json!({"type": "string"})),
                    param("fields", "Only these columns (id first unless lang is given)", json!({"type": "string"})),
                    param("format", "csv (default) or xlsx", json!({"type": "string", "enum": ["csv", "xlsx"]})),
                    param("lang", "Labels in this language (headers, options, yes/no, related titles), as an import reads them", json!({"type": "string"}))],
                "responses": {"200": {"description": "Every matching record the caller may read, with a header row", "content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}},
                    "400": problem("Invalid filter, sort or fields"), "403": problem("Not permitted")}}
        }));
        paths.insert(format!("/api/v1/data/{n}/duplicates"), json!({
            "get": {"tags": tags, "summary": format!("Groups of {label} records that a duplicate rule matches"), "operationId": format!("duplicates_{n}"), "security": sec,
                "parameters": [param("rule", "Only this rule", json!({"type": "string"})), param("limit", "At most this many groups (default 100)", json!({"type": "integer"}))],
                "responses": {"200": {"description": "{\"data\": [{\"rule\", \"key\", \"ids\"}]}"}, "422": problem("Unknown rule")}}
        }));
        paths.insert(format!("/api/v1/data/{n}/merge"), json!({
            "post": {"tags": tags, "summary": format!("Merge one {label} record into another"), "operationId": format!("merge_{n}"), "security": sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["survivor", "merged"],
                    "properties": {"survivor": {"type": "string"}, "merged": {"type": "string"},
                        "take": {"type": "object", "additionalProperties": {"type": "string", "enum": ["survivor", "merged"]}}}}}}},
                "responses": {"200": {"description": "{\"record\": the survivor, \"repointed\": {\"form.field\": count}}"},
                    "404": problem("A record is not found"), "422": problem("Invalid merge")}}
        }));
        paths.insert(format!("/api/v1/data/{n}/reassign"), json!({
            "post": {"tags": tags, "summary": format!("Hand {label} records to another owner"), "operationId": format!("reassign_{n}"), "security": sec,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["to"],
                    "properties": {"to": {"type": "string", "description": "The new owner's user id"},
                        "ids": {"type": "array", "maxItems": 1000, "items": {"type": "string"}},
                        "from": {"type": "string", "description": "Every record this user owns"}}}}}},
                "responses": {"200": {"description": "{\"form\", \"to\", \"count\"}"}, "403": problem("Not permitted"), "404": problem("A record is not found")}}
        }));
        paths.insert(format!("/api/v1/data/{n}/{{id}}"), json!({
            "parameters": [id_param],
            "get": {"tags": tags, "summary": format!("Get a {label} record"), "operationId": format!("get_{n}"), "security": sec,
                "responses": {"200": {"description": "The record; ETag is its version", "content": {"application/json": {"schema": rec}}}, "404": problem("Not found")}},
            "patch": {"tags": tags, "summary": format!("Change a {label} record"), "operationId": format!("update_{n}"), "security": sec,
                "parameters": [{"name": "If-Match", "in": "header", "required": false, "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{p}Patch")}}}},
                "responses": {"200": {"description": "Changed", "content": {"application/json": {"schema": rec}}}, "404": problem("Not found"),
                    "412": problem("Stale If-Match"), "422": problem("Invalid values")}},
            "delete": {"tags": tags, "summary": format!("Delete a {label} record"), "operationId": format!("delete_{n}"), "security": sec,
                "responses": {"204": {"description": "Deleted"}, "404": problem("Not found"), "409": problem("Other records point at it")}}
        }));
        paths.insert(format!("/api/v1/data/{n}/{{id}}/history"), json!({
            "parameters": [id_param],
            "get": {"tags": tags, "summary": format!("History of a {label} record"), "operationId": format!("history_{n}"), "security": sec,
                "responses": {"200": {"description": "Audit entries, oldest first"}, "404": problem("Not found")}}
        }));
    }
    doc["paths"] = Value::Object(paths);
    if let Some(c) = doc.get_mut("components").and_then(Value::as_object_mut) {
        c.insert("schemas".into(), Value::Object(schemas));
    } else {
        let mut c = Map::new();
        c.insert("schemas".into(), Value::Object(schemas));
        doc["components"] = Value::Object(c);
    }
    doc
}
