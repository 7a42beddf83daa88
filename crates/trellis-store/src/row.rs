//! Reading typed columns back into JSON.

use sea_orm::QueryResult;
use serde_json::Value;
use trellis_query::value::format_datetime;
use trellis_query::{Dialect, ValueKind};

use crate::error::StoreError;

fn get<T: sea_orm::TryGetable>(row: &QueryResult, idx: usize) -> Result<Option<T>, StoreError> {
    Ok(row.try_get_by_index::<Option<T>>(idx)?)
}

/// Decode column `idx` of `row`, stored as `kind`.
pub fn decode(
    row: &QueryResult,
    idx: usize,
    kind: ValueKind,
    dialect: Dialect,
) -> Result<Value, StoreError> {
    Ok(match (kind, dialect) {
        (ValueKind::Text, _) => get::<String>(row, idx)?
            .map(Value::String)
            .unwrap_or(Value::Null),
        (ValueKind::Integer, _) => get::<i64>(row, idx)?
            .map(Value::from)
            .unwrap_or(Value::Null),
        (ValueKind::Float, _) => get::<f64>(row, idx)?
            .map(Value::from)
            .unwrap_or(Value::Null),
        (ValueKind::Boolean, _) => get::<bool>(row, idx)?
            .map(Value::Bool)
            .unwrap_or(Value::Null),
        (ValueKind::Date, Dialect::Postgres) => get::<chrono::NaiveDate>(row, idx)?
            .map(|d| Value::String(d.to_string()))
            .unwrap_or(Value::Null),
        (ValueKind::DateTime, Dialect::Postgres) => get::<chrono::DateTime<chrono::Utc>>(row, idx)?
            .map(|d| Value::String(format_datetime(&d)))
            .unwrap_or(Value::Null),
        (ValueKind::TextArray | ValueKind::Json, Dialect::Postgres) => {
            get::<Value>(row, idx)?.unwrap_or(Value::Null)
        }
        (ValueKind::Date | ValueKind::DateTime, Dialect::Sqlite) => get::<String>(row, idx)?
            .map(Value::String)
            .unwrap_or(Value::Null),
        (ValueKind::TextArray | ValueKind::Json, Dialect::Sqlite) => match get::<String>(row, idx)?
        {
            Some(s) => serde_json::from_str(&s)?,
            None => Value::Null,
        },
    })
}
