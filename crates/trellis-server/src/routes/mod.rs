//! HTTP routes, one module per surface.

pub mod audit;
pub mod bundles;
pub mod files;
pub mod forms;
pub mod imports;
pub mod inbox;
pub mod ops;
pub mod public;
pub mod records;
pub mod reports;
pub mod roles;
pub mod rules;
pub mod users;
pub mod workflows;

use actix_web::web;
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, Code};

/// The body's length as its `Content-Length` header declares it, if it does.
pub fn declared_length(req: &actix_web::HttpRequest) -> Option<u64> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok())
}

/// Read a body up to `limit` bytes; past it answer 413 without reading the rest.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> ApiResult<web::Bytes> {
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    if declared_length(req).is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                Code::MalformedJson,
                format!("the body could not be read: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Largest body of a role, rule or workflow definition.
const DEFINITION_LIMIT: usize = 1 << 20;

/// Read a role, rule or workflow definition from the body.
pub async fn read_definition(
    req: &actix_web::HttpRequest,
    payload: web::Payload,
) -> ApiResult<Value> {
    parse_json(&read_body(req, payload, DEFINITION_LIMIT).await?)
}

/// The definition a `PUT /api/v1/{plural}/{name}` stores: the body, named by the address.
pub async fn read_named_definition(
    req: &actix_web::HttpRequest,
    payload: web::Payload,
    name: &str,
    plural: &str,
) -> ApiResult<Value> {
    named(read_definition(req, payload).await?, name, plural)
}

/// What creating a `kind` answers when one with this name exists (409).
pub fn name_taken(kind: &str, plural: &str, name: &str) -> ApiError {
    ApiError::field(
        Code::Conflict,
        "name",
        "duplicate_name",
        format!("a {kind} named {name:?} exists; PUT /api/v1/{plural}/{name} changes it"),
    )
}

/// Parse a body as JSON.
pub fn parse_json(body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::new(
            Code::MalformedJson,
            "the body is empty; send a JSON document",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = if std::str::from_utf8(body).is_err() {
            "the body is not valid UTF-8"
        } else {
            "the body is not valid JSON"
        };
        ApiError::new(Code::MalformedJson, format!("{what}: {e}"))
    })
}

/// Parse a body as a JSON object.
pub fn parse_object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    match parse_json(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::field(
            Code::MalformedJson,
            "",
            "not_an_object",
            "the body must be a JSON object",
        )),
    }
}

/// A definition sent to `PUT …/{name}`: it takes the address's name, and may not name
/// another (`what` says which kind, for the message: definitions are not renamed).
pub fn named(mut doc: Value, name: &str, what: &str) -> ApiResult<Value> {
    match doc.get("name") {
        None => {
            if let Some(o) = doc.as_object_mut() {
                o.insert("name".into(), Value::String(name.to_owned()));
            }
            Ok(doc)
        }
        Some(Value::String(n)) if n == name => Ok(doc),
        Some(_) => Err(ApiError::field(
            Code::InvalidDefinition,
            "name",
            "rename",
            format!("the name in the body must match the address; {what} are not renamed"),
        )),
    }
}
