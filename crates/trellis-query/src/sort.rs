//! Sort orders: `-score,company` parsed against a catalog and applied as ORDER BY.
//!
//! The ordering is always the keys followed by `id` in the direction of the last key
//! (ascending without keys), so an index on `(field, id)` can serve `sort=-score`.
//! NULL is the smallest value: first for ascending keys, last for descending ones. That is
//! SQLite's native order, so on SQLite no `NULLS` clause is emitted (an explicit one stops
//! SQLite from serving `ORDER BY score DESC, id DESC` from an index on `(score, id)`).
//! PostgreSQL's native order is the opposite, so there `NULLS FIRST` is emitted for
//! ascending keys and `NULLS LAST` for descending ones; its indexes are created as
//! `(col NULLS FIRST, id)` to match. The `id` tie-break is never NULL and gets no clause.

use sea_orm::sea_query::{Alias, NullOrdering, Order, SelectStatement};

use crate::filter::FilterError;
use crate::{Catalog, Dialect, ValueKind};

/// Most keys a sort may have (the `id` tie-break is not counted).
pub const MAX_SORT_KEYS: usize = 5;

/// Where sort errors are reported.
const PATH: &str = "sort";

/// An ordering of records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sort {
    /// The keys, most significant first.
    pub keys: Vec<SortKey>,
}

/// One key of a sort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    /// Field name, as in records.
    pub field: String,
    /// SQL column.
    pub column: String,
    /// How the column stores its values.
    pub kind: ValueKind,
    /// Largest first (NULLs last).
    pub descending: bool,
}

/// Parses a comma-separated list of field names, `-` meaning descending.
pub fn parse(form: &str, s: &str, catalog: &dyn Catalog) -> Result<Sort, FilterError> {
    Sort::parse(form, s, catalog)
}

impl Sort {
    /// Parses a comma-separated list of field names, `-` meaning descending; `""` is no keys.
    pub fn parse(form: &str, s: &str, catalog: &dyn Catalog) -> Result<Sort, FilterError> {
        let mut keys: Vec<SortKey> = Vec::new();
        if s.trim().is_empty() {
            return Ok(Sort { keys });
        }
        for part in s.split(',') {
            let part = part.trim();
            let (field, descending) = match part.strip_prefix('-') {
                Some(rest) => (rest, true),
                None => (part, false),
            };
            if field.is_empty() {
                return Err(FilterError::new(PATH, "invalid_value", "empty sort key"));
            }
            if field.contains('.') {
                return Err(FilterError::new(
                    PATH,
                    "invalid_path",
                    format!("cannot sort by relation path `{field}`"),
                ));
            }
            let info = catalog.field(form, field).ok_or_else(|| {
                FilterError::new(PATH, "unknown_field", format!("unknown field `{field}`"))
            })?;
            if matches!(info.kind, ValueKind::TextArray | ValueKind::Json) {
                return Err(FilterError::new(
                    PATH,
                    "not_sortable",
                    format!("field `{field}` cannot be sorted"),
                ));
            }
            if keys.iter().any(|k| k.field == field) {
                return Err(FilterError::new(
                    PATH,
                    "invalid_value",
                    format!("field `{field}` appears twice"),
                ));
            }
            keys.push(SortKey {
                field: field.to_owned(),
                column: info.column,
                kind: info.kind,
                descending,
            });
            if keys.len() > MAX_SORT_KEYS {
                return Err(FilterError::new(
                    PATH,
                    "too_many_sort_keys",
                    format!("at most {MAX_SORT_KEYS} sort keys"),
                ));
            }
        }
        Ok(Sort { keys })
    }

    /// Whether the `id` tie-break runs descending (it follows the last key).
    pub fn id_descending(&self) -> bool {
        self.keys.last().is_some_and(|k| k.descending)
    }

    /// Adds the ORDER BY (keys, then `id`) with columns qualified by `table`, NULL being the
    /// smallest value: a `NULLS` clause only on PostgreSQL, whose native order differs.
    pub fn apply(&self, table: &str, dialect: Dialect, select: &mut SelectStatement) {
        for key in &self.keys {
            let column = (Alias::new(table), Alias::new(key.column.as_str()));
            let (order, nulls) = if key.descending {
                (Order::Desc, NullOrdering::Last)
            } else {
                (Order::Asc, NullOrdering::First)
            };
            match dialect {
                Dialect::Sqlite => select.order_by(column, order),
                Dialect::Postgres => select.order_by_with_nulls(column, order, nulls),
            };
        }
        let order = if self.id_descending() {
            Order::Desc
        } else {
            Order::Asc
        };
        select.order_by((Alias::new(table), Alias::new("id")), order);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testkit::catalog;
    use sea_orm::sea_query::{PostgresQueryBuilder, Query, SqliteQueryBuilder};

    #[test]
    fn parses_keys_and_directions() {
        let sort = Sort::parse("deal", "-score, title", &catalog()).unwrap();
        assert_eq!(sort.keys.len(), 2);
        assert_eq!(sort.keys[0].field, "score");
        assert_eq!(sort.keys[0].column, "c_score");
        assert!(sort.keys[0].descending);
        assert!(!sort.keys[1].descending);
        assert!(!sort.id_descending());
        assert!(parse("deal", "", &catalog()).unwrap().keys.is_empty());
    }

    #[test]
    fn rejects_bad_keys() {
        let cat = catalog();
        let code = |s: &str| {
            let e = Sort::parse("deal", s, &cat).unwrap_err();
            assert_eq!(e.path, "sort");
            e.code
        };
        assert_eq!(code("nope"), "unknown_field");
        assert_eq!(code("customer.industry"), "invalid_path");
        assert_eq!(code("tags"), "not_sortable");
        assert_eq!(code("meta"), "not_sortable");
        assert_eq!(code("score,,title"), "invalid_value");
        assert_eq!(code("score,-score"), "invalid_value");
        assert_eq!(
            code("score,title,amount,closes_on,closed_at,active"),
            "too_many_sort_keys"
        );
    }

    /// The ORDER BY of `spec` on `t_deal` in `dialect`.
    fn order_by(spec: &str, dialect: Dialect) -> String {
        let sort = Sort::parse("deal", spec, &catalog()).unwrap();
        let mut q = Query::select();
        q.column(Alias::new("id")).from(Alias::new("t_deal"));
        sort.apply("t_deal", dialect, &mut q);
        let (sql, _) = match dialect {
            Dialect::Sqlite => q.build(SqliteQueryBuilder),
            Dialect::Postgres => q.build(PostgresQueryBuilder),
        };
        sql.split_once(" ORDER BY ").unwrap().1.to_owned()
    }

    #[test]
    fn order_by_sql() {
        // SQLite's native order already puts NULL first ascending: no NULLS clause at all.
        let sql = order_by("title,-score", Dialect::Sqlite);
        assert_eq!(
            sql,
            r#""t_deal"."c_title" ASC, "t_deal"."c_score" DESC, "t_deal"."id" DESC"#
        );
        assert!(!sql.to_uppercase().contains("NULLS"), "{sql}");
        // PostgreSQL needs it spelled out; the id tie-break never gets one.
        assert_eq!(
            order_by("title,-score", Dialect::Postgres),
            r#""t_deal"."c_title" ASC NULLS FIRST, "t_deal"."c_score" DESC NULLS LAST, "t_deal"."id" DESC"#
        );
        assert_eq!(
            order_by("-score,title", Dialect::Postgres),
            r#""t_deal"."c_score" DESC NULLS LAST, "t_deal"."c_title" ASC NULLS FIRST, "t_deal"."id" ASC"#
        );
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            assert_eq!(order_by("", dialect), r#""t_deal"."id" ASC"#);
        }
    }
}
