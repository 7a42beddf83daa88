//! Keyset pagination: a cursor holds the sort values and `id` of the last row returned, and
//! [`after`] selects the rows strictly after it. Unlike offsets, this stays stable while
//! rows are inserted or deleted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::filter::FilterError;
use crate::sort::{Sort, SortKey};
use crate::value::{self, Scalar};
use crate::{Dialect, ValueKind};

/// Where cursor errors are reported.
const PATH: &str = "cursor";
/// Longest encoded cursor accepted; real ones are far shorter.
const MAX_ENCODED_LEN: usize = 64 * 1024;

/// The position of a row in a sort order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The row's value for each sort key, in key order.
    pub values: Vec<Json>,
    /// The row's id (the final tie-break).
    pub id: String,
}

fn invalid(message: impl Into<String>) -> FilterError {
    FilterError::new(PATH, "invalid_cursor", message)
}

impl Cursor {
    /// URL-safe base64 (no padding) of the compact JSON form.
    pub fn encode(&self) -> String {
        // Built by hand because `Value`'s Display cannot fail, unlike `to_string`'s Result.
        let json = serde_json::json!({ "values": self.values, "id": self.id });
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    /// Reverses [`Cursor::encode`].
    pub fn decode(s: &str) -> Result<Cursor, FilterError> {
        if s.len() > MAX_ENCODED_LEN {
            return Err(invalid("cursor is too long"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| invalid("cursor is not valid base64"))?;
        serde_json::from_slice(&bytes).map_err(|_| invalid("cursor is malformed"))
    }
}

/// The cursor of `record` (keyed by field name) under `sort`.
pub fn from_record(sort: &Sort, record: &Map<String, Json>) -> Cursor {
    let values = sort
        .keys
        .iter()
        .map(|k| record.get(&k.field).cloned().unwrap_or(Json::Null))
        .collect();
    let id = match record.get("id") {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    Cursor { values, id }
}

/// The condition "row comes strictly after `cursor`" in `sort`'s order (NULL is smallest,
/// as in [`Sort::apply`]).
pub fn after(
    sort: &Sort,
    cursor: &Cursor,
    table: &str,
    dialect: Dialect,
) -> Result<Condition, FilterError> {
    let terms = after_terms(sort, cursor)?;
    let mut any = Condition::any();
    for term in &terms {
        let mut all = Condition::all();
        for test in term {
            all = all.add(test.to_expr(&sort.keys, table, dialect));
        }
        any = any.add(all);
    }
    Ok(any)
}

/// One comparison of a row against the cursor; `usize` indexes the sort keys.
#[derive(Clone, Debug)]
enum Test {
    Eq(usize, Scalar),
    IsNull(usize),
    NotNull(usize),
    Gt(usize, Scalar),
    /// Less than, or NULL (which sorts below every value).
    LtOrNull(usize, Scalar),
    IdGt(String),
    IdLt(String),
}

/// "After" as an OR of ANDs: for each key, all earlier keys equal and this one later;
/// finally all keys equal and a later id. Terms that can never hold are left out.
fn after_terms(sort: &Sort, cursor: &Cursor) -> Result<Vec<Vec<Test>>, FilterError> {
    if cursor.values.len() != sort.keys.len() {
        return Err(invalid(format!(
            "cursor has {} values but the sort has {} keys",
            cursor.values.len(),
            sort.keys.len()
        )));
    }
    let mut equal: Vec<Test> = Vec::new();
    let mut terms = Vec::new();
    for (i, (key, raw)) in sort.keys.iter().zip(&cursor.values).enumerate() {
        let v = value::parse(key.kind, raw)
            .map_err(|e| invalid(format!("value for `{}`: {e}", key.field)))?;
        let later = match (&v, key.descending) {
            // Every value sorts after NULL ascending; nothing does descending.
            (Scalar::Null, false) => Some(Test::NotNull(i)),
            (Scalar::Null, true) => None,
            (_, false) => Some(Test::Gt(i, v.clone())),
            (_, true) => Some(Test::LtOrNull(i, v.clone())),
        };
        if let Some(later) = later {
            let mut term = equal.clone();
            term.push(later);
            terms.push(term);
        }
        equal.push(match v {
            Scalar::Null => Test::IsNull(i),
            v => Test::Eq(i, v),
        });
    }
    equal.push(if sort.id_descending() {
        Test::IdLt(cursor.id.clone())
    } else {
        Test::IdGt(cursor.id.clone())
    });
    terms.push(equal);
    Ok(terms)
}

impl Test {
    fn to_expr(&self, keys: &[SortKey], table: &str, dialect: Dialect) -> Condition {
        let col = |i: usize| {
            let column = keys.get(i).map_or("id", |k| k.column.as_str());
            Expr::col((Alias::new(table), Alias::new(column)))
        };
        let kind = |i: usize| keys.get(i).map_or(ValueKind::Text, |k| k.kind);
        let bind = |i: usize, v: &Scalar| v.to_sql(kind(i), dialect);
        let id = || Expr::col((Alias::new(table), Alias::new("id")));
        let e = match self {
            Test::Eq(i, v) => col(*i).eq(bind(*i, v)),
            Test::IsNull(i) => col(*i).is_null(),
            Test::NotNull(i) => col(*i).is_not_null(),
            Test::Gt(i, v) => col(*i).gt(bind(*i, v)),
            Test::LtOrNull(i, v) => {
                return Condition::any()
                    .add(col(*i).lt(bind(*i, v)))
                    .add(col(*i).is_null());
            }
            Test::IdGt(s) => id().gt(Value::String(Some(s.clone()))),
            Test::IdLt(s) => id().lt(Value::String(Some(s.clone()))),
        };
        Condition::all().add(e)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
