//! One cell's text as the JSON a form field takes, and the escape that keeps text a
//! spreadsheet would run as a formula from running.

use serde_json::Value;
use trellis_meta::form::{Field, FieldType};

use crate::convert;

/// Why a cell does not convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    /// Stable code: `number`, `integer`, `boolean`, `date`, `datetime`, `json`,
    /// `not_importable`.
    pub code: &'static str,
    /// What is wrong, naming the text.
    pub message: String,
}

fn bad(code: &'static str, what: &str, text: &str) -> CellError {
    CellError {
        code,
        message: format!("{text:?} is not {what}"),
    }
}

/// Characters that make a spreadsheet read a cell as a formula.
fn formula_start(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// Text as written to an export: a value a spreadsheet would take for a formula (or one
/// that already starts with the escape) gets a leading apostrophe.
pub fn defuse(s: &str) -> String {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), _) if formula_start(c) => format!("'{s}"),
        (Some('\''), Some(c)) if formula_start(c) || c == '\'' => format!("'{s}"),
        _ => s.to_owned(),
    }
}

/// The inverse of [`defuse`], applied to imported cells, so an export imports unchanged.
pub fn undefuse(s: &str) -> &str {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some('\''), Some(c)) if formula_start(c) || c == '\'' => &s[1..],
        _ => s,
    }
}

/// The value of `text` for `field`; `None` for an empty cell. Select, relation and user
/// cells stay text: the form's normalization and the importer's lookups resolve them.
pub fn to_value(field: &Field, text: &str, tz: chrono_tz::Tz) -> Result<Option<Value>, CellError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let kind = field.storage_type();
    let v = match kind {
        FieldType::Integer => match convert::integer(t) {
            Some(n) => Value::from(n),
            None => return Err(bad("integer", "a whole number", t)),
        },
        FieldType::Decimal | FieldType::Currency => match convert::number(t) {
            Some(n) => Value::Number(n),
            None => return Err(bad("number", "a number", t)),
        },
        FieldType::Boolean => match convert::boolean(t) {
            Some(b) => Value::Bool(b),
            None => return Err(bad("boolean", "yes or no", t)),
        },
        FieldType::Date => match convert::date(t) {
            Some(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            None => return Err(bad("date", "a date", t)),
        },
        FieldType::Datetime => match convert::datetime(t, tz) {
            Some(d) => Value::String(d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            None => return Err(bad("datetime", "a date and time", t)),
        },
        FieldType::Multiselect => Value::Array(
            convert::split_list(t)
                .into_iter()
                .map(Value::String)
                .collect(),
        ),
        FieldType::Subtable | FieldType::Json => match serde_json::from_str::<Value>(t) {
            Ok(v) => v,
            Err(_) => return Err(bad("json", "JSON", t)),
        },
        FieldType::Attachment | FieldType::Formula | FieldType::Autonumber => {
            return Err(CellError {
                code: "not_importable",
                message: format!("{} fields cannot be imported", kind.as_str()),
            });
        }
        _ => Value::String(t.to_owned()),
    };
    Ok(Some(v))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defuse_and_undefuse_are_inverse() {
        for s in [
            "=HYPERLINK(\"http://x\")",
            "+86 138",
            "-5",
            "@SUM(A1)",
            "'=already",
            "''x",
            "'plain",
            "plain",
            "",
        ] {
            assert_eq!(undefuse(&defuse(s)), s, "{s}");
        }
        assert_eq!(defuse("=1+1"), "'=1+1");
        assert_eq!(defuse("'plain"), "'plain");
    }

    #[test]
    fn cells_convert_by_field_type() {
        let tz = chrono_tz::Asia::Shanghai;
        let f = |k| Field::new("x", k);
        assert_eq!(
            to_value(&f(FieldType::Integer), " 1,200 ", tz).unwrap(),
            Some(json!(1200))
        );
        assert_eq!(
            to_value(&f(FieldType::Currency), "¥50,000.5", tz).unwrap(),
            Some(json!(50000.5))
        );
        assert_eq!(
            to_value(&f(FieldType::Boolean), "是", tz).unwrap(),
            Some(json!(true))
        );
        assert_eq!(
            to_value(&f(FieldType::Date), "2024年3月5日", tz).unwrap(),
            Some(json!("2024-03-05"))
        );
        assert_eq!(
            to_value(&f(FieldType::Datetime), "2024/3/5 14:30", tz).unwrap(),
            Some(json!("2024-03-05T06:30:00Z"))
        );
        assert_eq!(to_value(&f(FieldType::Text), "  ", tz).unwrap(), None);
        assert_eq!(
            to_value(&f(FieldType::Integer), "about 50", tz)
                .unwrap_err()
                .code,
            "integer"
        );
        assert_eq!(
            to_value(&f(FieldType::Date), "2024-13-45", tz)
                .unwrap_err()
                .code,
            "date"
        );
        assert_eq!(
            to_value(&f(FieldType::Multiselect), "a、b, c", tz).unwrap(),
            Some(json!(["a", "b", "c"]))
        );
    }
}
