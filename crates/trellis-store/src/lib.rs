//! Everything that talks SQL: system tables and their migrations, the dynamic record
//! tables, online schema change, records with their audit history, users and tokens,
//! bundles. Knows nothing of HTTP.

pub mod access;
pub mod admin_audit;
pub mod auth;
pub mod bulk;
pub mod bundles;
pub mod db;
pub mod dedupe;
mod definitions;
pub mod entity;
pub mod error;
mod events;
pub mod facts;
pub mod files;
pub mod forms;
pub mod formulas;
mod group;
pub mod imports;
pub mod merge;
pub mod migrate;
// Frozen table definitions: only their DDL is used.
#[allow(dead_code)]
mod migrate_v1;
#[allow(dead_code)]
mod migrate_v2;
pub mod plan;
pub mod public;
pub mod reassign;
pub mod records;
pub mod reports;
pub mod rerun;
pub mod roles;
pub mod row;
pub mod rules;
pub mod seed;
pub mod stats;
pub mod workflows;

pub use db::{Db, DbOptions, Watch};
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
    /// Role definitions, cached.
    pub roles: Arc<roles::Roles>,
    /// Rule definitions, compiled and cached.
    pub rules: Arc<rules::RuleSet>,
    /// Group commit of single creates.
    pub(crate) group: Option<group::GroupWriter>,
    /// Rows written since tables were last analyzed.
    pub(crate) stats: Arc<stats::Stats>,
    /// Import jobs running in this process.
    pub(crate) imports: Arc<imports::Running>,
}

impl Store {
    /// Open the database, apply migrations and load the forms.
    pub async fn open(opts: &DbOptions) -> Result<Self, StoreError> {
        let db = Db::connect(opts).await?;
        migrate::run(&db).await?;
        let registry = Arc::new(Registry::load(&db).await?);
        let roles = Arc::new(roles::Roles::load(&db).await?);
        let rules = Arc::new(rules::RuleSet::load(&db).await?);
        workflows::refresh_watch(&db).await?;
        let db = Arc::new(db);
        let stats = Arc::new(stats::Stats::default());
        // Both backends: on SQLite there is one writer anyway; on PostgreSQL a shared
        // commit saves a WAL flush per create.
        let group = Some(group::GroupWriter::start(
            db.clone(),
            registry.clone(),
            stats.clone(),
        ));
        Ok(Self {
            db,
            registry,
            roles,
            rules,
            group,
            stats,
            imports: Arc::default(),
        })
    }

    /// Keep the query planner's statistics fresh. On SQLite this runs `PRAGMA optimize`,
    /// which analyzes tables that were never analyzed or grew 25-fold; writes through the
    /// store also analyze a table whenever it doubles (see `stats`). PostgreSQL's
    /// autovacuum analyzes by itself.
    pub async fn maintain(&self) -> Result<(), StoreError> {
        use sea_orm::ConnectionTrait;
        if self.db.dialect == Dialect::Sqlite {
            self.db
                .writer
                .execute_unprepared("PRAGMA optimize=0x10002")
                .await?;
        }
        Ok(())
    }

    /// Delete a form (with its records when `purge`); its table's statistics are forgotten.
    pub async fn delete_form(&self, name: &str, purge: bool) -> Result<(), StoreError> {
        forms::delete_form(&self.db, &self.registry, name, purge).await?;
        self.stats.forget(&forms::table_name(name));
        Ok(())
    }

    /// The SQL dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect
    }
}
