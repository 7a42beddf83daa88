//! The one codec between JSON values and bound SQL values, shared by filters and record writes.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sea_orm::sea_query::Value;
use serde_json::Value as Json;

use crate::{Dialect, ValueKind};

/// Fixed-width UTC format so that text order equals time order on SQLite.
const DATETIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";
/// Calendar date format, shared by both dialects.
const DATE_FORMAT: &str = "%Y-%m-%d";

/// A JSON value that does not fit a column's kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The value has the wrong shape, e.g. a string for an integer column.
    #[error("expected {0}")]
    Expected(&'static str),
    /// The value has the right shape but cannot be represented.
    #[error("{0}")]
    OutOfRange(&'static str),
}

/// Converts a JSON value to a bound SQL value for a column of `kind`.
pub fn to_sql(kind: ValueKind, v: &Json, dialect: Dialect) -> Result<Value, ValueError> {
    Ok(parse(kind, v)?.to_sql(kind, dialect))
}

/// Formats an instant in the fixed-width text form used on SQLite.
pub fn format_datetime(dt: &DateTime<Utc>) -> String {
    dt.format(DATETIME_FORMAT).to_string()
}

/// Parses RFC 3339 (any offset, converted to UTC) or a bare `YYYY-MM-DD` as midnight UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    parse_date(s).map(|d| d.and_time(NaiveTime::MIN).and_utc())
}

/// Parses a bare `YYYY-MM-DD` date.
pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    // Length check rejects chrono's lenient forms such as "2024-1-5".
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, DATE_FORMAT).ok()
}

/// A JSON value checked against a kind; converts to SQL without further failure.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    /// TextArray and Json values, kept as JSON.
    Json(Json),
}

/// Checks `v` against `kind`.
pub(crate) fn parse(kind: ValueKind, v: &Json) -> Result<Scalar, ValueError> {
    if v.is_null() {
        return Ok(Scalar::Null);
    }
    match kind {
        ValueKind::Text => v
            .as_str()
            .map(|s| Scalar::Text(s.to_owned()))
            .ok_or(ValueError::Expected("a string")),
        ValueKind::Integer => parse_integer(v).map(Scalar::Int),
        ValueKind::Float => match v {
            Json::Number(n) => n
                .as_f64()
                .map(Scalar::Float)
                .ok_or(ValueError::Expected("a number")),
            _ => Err(ValueError::Expected("a number")),
        },
        ValueKind::Boolean => v
            .as_bool()
            .map(Scalar::Bool)
            .ok_or(ValueError::Expected("a boolean")),
        ValueKind::Date => v
            .as_str()
            .and_then(parse_date)
            .map(Scalar::Date)
            .ok_or(ValueError::Expected("a date (YYYY-MM-DD)")),
        ValueKind::DateTime => v
            .as_str()
            .and_then(parse_datetime)
            .map(Scalar::DateTime)
            .ok_or(ValueError::Expected("a date-time (RFC 3339)")),
        ValueKind::TextArray => match v {
            Json::Array(items) if items.iter().all(Json::is_string) => Ok(Scalar::Json(v.clone())),
            _ => Err(ValueError::Expected("an array of strings")),
        },
        ValueKind::Json => Ok(Scalar::Json(v.clone())),
    }
}

/// Accepts JSON integers and integral floats within the i64 range.
fn parse_integer(v: &Json) -> Result<i64, ValueError> {
    let Json::Number(n) = v else {
        return Err(ValueError::Expected("an integer"));
    };
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    if n.is_u64() {
        return Err(ValueError::OutOfRange("integer out of range"));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 => {
            // i64::MAX as f64 rounds up to 2^63, so the upper bound is exclusive.
            if f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                Ok(f as i64)
            } else {
                Err(ValueError::OutOfRange("integer out of range"))
            }
        }
        _ => Err(ValueError::Expected("an integer")),
    }
}

impl Scalar {
    /// The bound SQL value; NULLs are typed because PostgreSQL is strict about them.
    pub(crate) fn to_sql(&self, kind: ValueKind, dialect: Dialect) -> Value {
        let pg = dialect == Dialect::Postgres;
        match self {
            Scalar::Null => null_of(kind, dialect),
            Scalar::Text(s) => Value::String(Some(s.clone())),
            Scalar::Int(i) => Value::BigInt(Some(*i)),
            Scalar::Float(f) => Value::Double(Some(*f)),
            Scalar::Bool(b) => Value::Bool(Some(*b)),
            Scalar::Date(d) if pg => Value::ChronoDate(Some(*d)),
            Scalar::Date(d) => Value::String(Some(d.format(DATE_FORMAT).to_string())),
            Scalar::DateTime(dt) if pg => Value::ChronoDateTimeUtc(Some(*dt)),
            Scalar::DateTime(dt) => Value::String(Some(format_datetime(dt))),
            Scalar::Json(j) if pg => Value::Json(Some(Box::new(j.clone()))),
            Scalar::Json(j) => Value::String(Some(j.to_string())),
        }
    }

    /// Orders two scalars of the same kind; `None` when they are not comparable.
    pub(crate) fn compare(&self, other: &Scalar) -> Option<Ordering> {
        match (self, other) {
            (Scalar::Text(a), Scalar::Text(b)) => Some(a.cmp(b)),
            (Scalar::Int(a), Scalar::Int(b)) => Some(a.cmp(b)),
            (Scalar::Float(a), Scalar::Float(b)) => a.partial_cmp(b),
            (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
            (Scalar::Date(a), Scalar::Date(b)) => Some(a.cmp(b)),
            (Scalar::DateTime(a), Scalar::DateTime(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// A NULL of the variant the column's values use.
fn null_of(kind: ValueKind, dialect: Dialect) -> Value {
    let pg = dialect == Dialect::Postgres;
    match kind {
        ValueKind::Text => Value::String(None),
        ValueKind::Integer => Value::BigInt(None),
        ValueKind::Float => Value::Double(None),
        ValueKind::Boolean => Value::Bool(None),
        ValueKind::Date if pg => Value::ChronoDate(None),
        ValueKind::DateTime if pg => Value::ChronoDateTimeUtc(None),
        ValueKind::TextArray | ValueKind::Json if pg => Value::Json(None),
        ValueKind::Date | ValueKind::DateTime | ValueKind::TextArray | ValueKind::Json => {
            Value::String(None)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn nulls_are_typed() {
        let pg = Dialect::Postgres;
        let lite = Dialect::Sqlite;
        assert_eq!(
            to_sql(ValueKind::Text, &Json::Null, pg),
            Ok(Value::String(None))
        );
        assert_eq!(
            to_sql(ValueKind::Integer, &Json::Null, pg),
            Ok(Value::BigInt(None))
        );
        assert_eq!(
            to_sql(ValueKind::Float, &Json::Null, pg),
            Ok(Value::Double(None))
        );
        assert_eq!(
            to_sql(ValueKind::Boolean, &Json::Null, pg),
            Ok(Value::Bool(None))
        );
        assert_eq!(
            to_sql(ValueKind::Date, &Json::Null, pg),
            Ok(Value::ChronoDate(None))
        );
        assert_eq!(
            to_sql(ValueKind::DateTime, &Json::Null, pg),
            Ok(Value::ChronoDateTimeUtc(None))
        );
        assert_eq!(
            to_sql(ValueKind::TextArray, &Json::Null, pg),
            Ok(Value::Json(None))
        );
        assert_eq!(
            to_sql(ValueKind::Json, &Json::Null, pg),
            Ok(Value::Json(None))
        );
        assert_eq!(
            to_sql(ValueKind::Date, &Json::Null, lite),
            Ok(Value::String(None))
        );
        assert_eq!(
            to_sql(ValueKind::Json, &Json::Null, lite),
            Ok(Value::String(None))
        );
    }

    #[test]
    fn integers() {
        let d = Dialect::Sqlite;
        assert_eq!(
            to_sql(ValueKind::Integer, &json!(42), d),
            Ok(Value::BigInt(Some(42)))
        );
        assert_eq!(
            to_sql(ValueKind::Integer, &json!(42.0), d),
            Ok(Value::BigInt(Some(42)))
        );
        assert_eq!(
            to_sql(ValueKind::Integer, &json!(4.5), d),
            Err(ValueError::Expected("an integer"))
        );
        let err = to_sql(ValueKind::Integer, &json!("42"), d).unwrap_err();
        assert_eq!(err.to_string(), "expected an integer");
        assert!(to_sql(ValueKind::Integer, &json!(u64::MAX), d).is_err());
        assert!(to_sql(ValueKind::Integer, &json!(1e300), d).is_err());
    }

    #[test]
    fn floats_bools_text() {
        let d = Dialect::Postgres;
        assert_eq!(
            to_sql(ValueKind::Float, &json!(1), d),
            Ok(Value::Double(Some(1.0)))
        );
        assert!(to_sql(ValueKind::Float, &json!("1.5"), d).is_err());
        assert_eq!(
            to_sql(ValueKind::Boolean, &json!(true), d),
            Ok(Value::Bool(Some(true)))
        );
        assert!(to_sql(ValueKind::Boolean, &json!(1), d).is_err());
        assert_eq!(
            to_sql(ValueKind::Text, &json!("a"), d),
            Ok(Value::String(Some("a".into())))
        );
        assert!(to_sql(ValueKind::Text, &json!(1), d).is_err());
    }

    #[test]
    fn dates() {
        let d = NaiveDate::from_ymd_opt(2024, 3, 9).unwrap();
        assert_eq!(
            to_sql(ValueKind::Date, &json!("2024-03-09"), Dialect::Postgres),
            Ok(Value::ChronoDate(Some(d)))
        );
        assert_eq!(
            to_sql(ValueKind::Date, &json!("2024-03-09"), Dialect::Sqlite),
            Ok(Value::String(Some("2024-03-09".into())))
        );
        assert!(to_sql(ValueKind::Date, &json!("2024-3-9"), Dialect::Sqlite).is_err());
        assert!(to_sql(ValueKind::Date, &json!("2024-02-30"), Dialect::Sqlite).is_err());
    }

    #[test]
    fn datetimes_are_utc_and_fixed_width() {
        let v = json!("2024-03-09T10:00:00+02:00");
        let utc = Utc.with_ymd_and_hms(2024, 3, 9, 8, 0, 0).unwrap();
        assert_eq!(
            to_sql(ValueKind::DateTime, &v, Dialect::Postgres),
            Ok(Value::ChronoDateTimeUtc(Some(utc)))
        );
        assert_eq!(
            to_sql(ValueKind::DateTime, &v, Dialect::Sqlite),
            Ok(Value::String(Some("2024-03-09T08:00:00.000000Z".into())))
        );
        assert_eq!(
            to_sql(ValueKind::DateTime, &json!("2024-03-09"), Dialect::Sqlite),
            Ok(Value::String(Some("2024-03-09T00:00:00.000000Z".into())))
        );
        let precise = parse_datetime("2024-03-09T08:00:00.123456789Z").unwrap();
        assert_eq!(format_datetime(&precise), "2024-03-09T08:00:00.123456Z");
        assert!(parse_datetime("yesterday").is_none());
    }

    #[test]
    fn json_and_arrays() {
        let tags = json!(["a", "b"]);
        assert_eq!(
            to_sql(ValueKind::TextArray, &tags, Dialect::Postgres),
            Ok(Value::Json(Some(Box::new(tags.clone()))))
        );
        assert_eq!(
            to_sql(ValueKind::TextArray, &tags, Dialect::Sqlite),
            Ok(Value::String(Some(r#"["a","b"]"#.into())))
        );
        assert!(to_sql(ValueKind::TextArray, &json!([1]), Dialect::Sqlite).is_err());
        assert!(to_sql(ValueKind::TextArray, &json!("a"), Dialect::Sqlite).is_err());
        assert_eq!(
            to_sql(ValueKind::Json, &json!({"k": 1}), Dialect::Sqlite),
            Ok(Value::String(Some(r#"{"k":1}"#.into())))
        );
    }
}
