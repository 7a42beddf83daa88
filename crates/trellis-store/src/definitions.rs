//! Rows of the definition tables of roles and rules: a name, the definition as JSON, and the
//! bundle and position that installed it.

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use serde::de::DeserializeOwned;

use crate::error::StoreError;

/// One stored definition.
pub(crate) struct Row<T> {
    /// Its name.
    pub name: String,
    /// The definition.
    pub def: T,
    /// Bundle that installed it.
    pub bundle: Option<String>,
    /// Position in the bundle.
    pub position: i64,
}

fn select(table: &str) -> sea_orm::sea_query::SelectStatement {
    let mut s = Query::select();
    s.columns(["name", "definition", "bundle", "position"].map(Alias::new))
        .from(Alias::new(table));
    s
}

fn read<T: DeserializeOwned>(r: &sea_orm::QueryResult) -> Result<Row<T>, StoreError> {
    Ok(Row {
        name: r.try_get_by_index(0)?,
        def: serde_json::from_str(&r.try_get_by_index::<String>(1)?)?,
        bundle: r.try_get_by_index(2)?,
        position: r.try_get_by_index(3)?,
    })
}

/// Every definition of a table.
pub(crate) async fn all<T: DeserializeOwned, C: ConnectionTrait>(
    c: &C,
    table: &str,
) -> Result<Vec<Row<T>>, StoreError> {
    c.query_all(&select(table))
        .await?
        .iter()
        .map(read)
        .collect()
}

/// The definition of this name, if stored.
pub(crate) async fn one<T: DeserializeOwned, C: ConnectionTrait>(
    c: &C,
    table: &str,
    name: &str,
) -> Result<Option<Row<T>>, StoreError> {
    let mut s = select(table);
    s.and_where(Expr::col(Alias::new("name")).eq(name));
    c.query_one(&s).await?.as_ref().map(read).transpose()
}
