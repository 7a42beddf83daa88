//! The filter language: parse, check against a catalog, compile to sea-query, evaluate in memory;
//! sort and keyset cursors.
//!
//! This crate knows nothing of database connections or HTTP: it only builds sea-query
//! conditions and ORDER BY clauses, always binding values as parameters.

pub mod cursor;
pub mod filter;
pub mod sort;
pub mod value;

pub use cursor::Cursor;
pub use filter::{Filter, FilterError};
pub use sort::{Sort, SortKey};
pub use value::ValueError;

/// SQL dialect differences that matter when compiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: dates, datetimes and JSON are stored as text.
    Sqlite,
    /// PostgreSQL: typed dates, timestamps and jsonb.
    Postgres,
}

/// How a column stores its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// A string.
    Text,
    /// A 64-bit integer.
    Integer,
    /// A double-precision float.
    Float,
    /// A boolean.
    Boolean,
    /// A calendar date (`YYYY-MM-DD`).
    Date,
    /// An instant in time, kept in UTC.
    DateTime,
    /// A list of strings stored as a JSON array (multiselect).
    TextArray,
    /// Any JSON value.
    Json,
}

/// One field as the filter sees it.
#[derive(Clone, Debug)]
pub struct FieldInfo {
    /// The SQL column holding the field.
    pub column: String,
    /// How the column stores its values.
    pub kind: ValueKind,
    /// For relation fields, the target form name (used by relation paths).
    pub target: Option<String>,
}

/// Where field names are looked up; implemented by the caller (it includes system columns
/// id, version, created_at, updated_at, created_by, owner).
pub trait Catalog {
    /// The field `name` of form `form`, if it exists.
    fn field(&self, form: &str, name: &str) -> Option<FieldInfo>;
    /// The SQL table of form `form`, if it exists.
    fn table(&self, form: &str) -> Option<String>;
    /// The rows of `form` a relation path may look at (None: all). Row permissions plug
    /// in here, so a filter cannot probe records the caller may not read.
    fn row_scope(&self, _form: &str) -> Option<Filter> {
        None
    }
}

#[cfg(test)]
mod testkit {
    //! A small catalog shared by the unit tests: deals point at customers, customers at regions.

    use super::{Catalog, FieldInfo, ValueKind};

    /// Forms `deal` (table `t_deal`), `customer` (`t_customer`) and `region` (`t_region`).
    pub struct TestCatalog;

    /// The shared test catalog.
    pub fn catalog() -> TestCatalog {
        TestCatalog
    }

    impl Catalog for TestCatalog {
        fn field(&self, form: &str, name: &str) -> Option<FieldInfo> {
            let plain = |kind| {
                Some(FieldInfo {
                    column: format!("c_{name}"),
                    kind,
                    target: None,
                })
            };
            let relation = |target: &str| {
                Some(FieldInfo {
                    column: format!("c_{name}"),
                    kind: ValueKind::Text,
                    target: Some(target.to_owned()),
                })
            };
            match (form, name) {
                (_, "id") | (_, "owner") | (_, "created_by") => Some(FieldInfo {
                    column: name.to_owned(),
                    kind: ValueKind::Text,
                    target: None,
                }),
                (_, "created_at") | (_, "updated_at") => Some(FieldInfo {
                    column: name.to_owned(),
                    kind: ValueKind::DateTime,
                    target: None,
                }),
                ("deal", "title" | "status") => plain(ValueKind::Text),
                ("deal", "score") => plain(ValueKind::Integer),
                ("deal", "amount") => plain(ValueKind::Float),
                ("deal", "active") => plain(ValueKind::Boolean),
                ("deal", "closes_on") => plain(ValueKind::Date),
                ("deal", "closed_at") => plain(ValueKind::DateTime),
                ("deal", "tags") => plain(ValueKind::TextArray),
                ("deal", "meta") => plain(ValueKind::Json),
                ("deal", "customer") => relation("customer"),
                ("deal", "parent") => relation("deal"),
                ("customer", "industry" | "name") => plain(ValueKind::Text),
                ("customer", "employees") => plain(ValueKind::Integer),
                ("customer", "region") => relation("region"),
                ("region", "name") => plain(ValueKind::Text),
                ("region", "country") => relation("country"),
                ("country", "name") => plain(ValueKind::Text),
                ("country", "union") => relation("union"),
                ("union", "name") => plain(ValueKind::Text),
                _ => None,
            }
        }

        fn table(&self, form: &str) -> Option<String> {
            matches!(form, "deal" | "customer" | "region" | "country" | "union")
                .then(|| format!("t_{form}"))
        }
    }
}
