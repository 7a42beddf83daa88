//! Connections: on SQLite one writer and a pool of readers (WAL), on PostgreSQL one pool.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::Notify;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use trellis_query::Dialect;

use crate::error::StoreError;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `sqlite:path` (or a bare path) or `postgres://…`.
    pub url: String,
    /// Most connections in the (reader) pool.
    pub max_connections: u32,
}

/// The database: connections and dialect.
#[derive(Debug, Clone)]
pub struct Db {
    /// Writes go here (one connection on SQLite, so writes queue instead of fighting for the lock).
    pub writer: DatabaseConnection,
    /// Reads go here.
    pub reader: DatabaseConnection,
    /// Which SQL dialect.
    pub dialect: Dialect,
    /// Forms whose record changes are written to the workflow outbox.
    pub watch: Arc<Watch>,
}

/// The forms that workflows watch, and a bell rung when their events commit.
#[derive(Debug, Default)]
pub struct Watch {
    forms: RwLock<Arc<HashSet<String>>>,
    bell: Notify,
}

/// SQLite's page cache of the writer connection (KiB).
pub const WRITER_CACHE_KIB: u32 = 16_000;

impl Watch {
    /// Does a change of this form's records start or wake workflows?
    pub fn watches(&self, form: &str) -> bool {
        self.forms.read().contains(form)
    }

    /// Replace the watched forms.
    pub fn set(&self, forms: HashSet<String>) {
        *self.forms.write() = Arc::new(forms);
    }

    /// Tell the workflow engine that events (or other work) may be waiting.
    pub fn ring(&self) {
        self.bell.notify_one();
    }

    /// Wait for the bell.
    pub async fn wait(&self) {
        self.bell.notified().await;
    }
}

fn sqlite_url(url: &str) -> String {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    format!("sqlite://{path}?mode=rwc")
}

impl Db {
    /// Connect, creating the SQLite file if needed.
    pub async fn connect(opts: &DbOptions) -> Result<Self, StoreError> {
        if opts.url.starts_with("postgres://") || opts.url.starts_with("postgresql://") {
            let mut o = ConnectOptions::new(opts.url.clone());
            o.max_connections(opts.max_connections.max(2))
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .sqlx_logging(false);
            let pool = Database::connect(o).await?;
            return Ok(Self {
                writer: pool.clone(),
                reader: pool,
                dialect: Dialect::Postgres,
                watch: Arc::default(),
            });
        }
        let url = sqlite_url(&opts.url);
        let tune = |o: sea_orm::sqlx::sqlite::SqliteConnectOptions| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
                .pragma("temp_store", "memory")
                .statement_cache_capacity(500)
        };
        let mut w = ConnectOptions::new(url.clone());
        w.max_connections(1)
            .min_connections(1)
            .idle_timeout(None::<Duration>)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(tune);
        let writer = Database::connect(w).await?;
        let mut r = ConnectOptions::new(url);
        r.max_connections(opts.max_connections.max(1))
            .min_connections(1)
            .idle_timeout(None::<Duration>)
            .sqlx_logging(false)
            // Readers share the OS page cache; a small private cache each keeps memory flat.
            // They keep the default temp store: with temp_store=memory a GROUP BY over
            // 100,000 rows ran 1.3x slower alone, and two at a time contended on the
            // allocator. (Mapping the file made scans faster still, but every connection
            // maps it apart, so the process's RSS counted the file once per reader.)
            .map_sqlx_sqlite_opts(move |o| {
                tune(o)
                    .pragma("cache_size", "-4000")
                    .pragma("temp_store", "default")
                    .read_only(true)
            });
        let reader = Database::connect(r).await?;
        Ok(Self {
            writer,
            reader,
            dialect: Dialect::Sqlite,
            watch: Arc::default(),
        })
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> bool {
        self.reader.execute_unprepared("SELECT 1").await.is_ok()
    }

    /// The most connections the (read) pool opens.
    pub fn max_connections(&self) -> u32 {
        match self.dialect {
            Dialect::Postgres => self
                .reader
                .get_postgres_connection_pool()
                .options()
                .get_max_connections(),
            Dialect::Sqlite => self
                .reader
                .get_sqlite_connection_pool()
                .options()
                .get_max_connections(),
        }
    }

    /// Pool sizes for metrics: (connections, idle).
    pub fn pool_stats(&self) -> (u32, usize) {
        match self.dialect {
            Dialect::Postgres => {
                let p = self.reader.get_postgres_connection_pool();
                (p.size(), p.num_idle())
            }
            Dialect::Sqlite => {
                let p = self.reader.get_sqlite_connection_pool();
                (p.size(), p.num_idle())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        assert_eq!(sqlite_url("./trellis.db"), "sqlite://./trellis.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite:/tmp/x.db"),
            "sqlite:///tmp/x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:///tmp/x.db?mode=rw"),
            "sqlite:///tmp/x.db?mode=rwc"
        );
    }
}
