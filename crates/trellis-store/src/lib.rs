//! Everything that talks SQL: system tables and their migrations, the dynamic record
//! tables, online schema change, records with their audit history, users and tokens,
//! bundles. Knows nothing of HTTP.

pub mod auth;
pub mod bundles;
pub mod db;
pub mod entity;
pub mod error;
pub mod files;
pub mod forms;
pub mod migrate;
pub mod plan;
pub mod records;
mod row;
pub mod seed;

pub use db::{Db, DbOptions};
pub use error::StoreError;
pub use forms::{FormEntry, Registry};
pub use records::{Actor, ListQuery, Page};
pub use trellis_query::Dialect;

use std::sync::Arc;

/// The store: database connections plus the cached form registry.
#[derive(Clone)]
pub struct Store {
    /// Connections.
    pub db: Arc<Db>,
    /// Form definitions, cached.
    pub registry: Arc<Registry>,
}

impl Store {
    /// Open the database, apply migrations and load the forms.
    pub async fn open(opts: &DbOptions) -> Result<Self, StoreError> {
        let db = Db::connect(opts).await?;
        migrate::run(&db).await?;
        let registry = Registry::load(&db).await?;
        Ok(Self {
            db: Arc::new(db),
            registry: Arc::new(registry),
        })
    }

    /// The SQL dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect
    }
}
