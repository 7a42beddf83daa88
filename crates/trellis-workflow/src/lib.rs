//! The workflow engine. Record changes reach it through the outbox the store writes in
//! each change's transaction; it starts runs, takes their steps one transaction at a time,
//! keeps timers, approvals and tasks as rows, and sends e-mails and webhooks from an outbox
//! of its own, each under a key the receiver sees. Any number of processes may share a
//! PostgreSQL database: work is claimed with `FOR UPDATE SKIP LOCKED` and leases.

mod consume;
mod cron;
mod defs;
mod dispatch;
pub mod error;
pub mod inbox;
mod metrics;
mod people;
mod run;
mod sql;
mod state;
mod template;

use std::sync::Arc;
use std::time::Duration;

pub use error::{Result, WorkflowError};
pub use metrics::Metrics;
use trellis_store::Store;

/// How deep workflows may set each other off: a run started by a change that a run made
/// has depth 1, and so on. Events deeper than this start nothing; the cut-off is logged as
/// a failed run.
pub const MAX_DEPTH: u32 = 8;

/// Where e-mail goes.
#[derive(Debug, Clone)]
pub struct Smtp {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Use STARTTLS.
    pub starttls: bool,
    /// User name, if the server wants one.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// The sender.
    pub from: String,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often to look for due work when nothing rings.
    pub poll: Duration,
    /// How long a claim on a run or message holds before another process may take it.
    pub lease: Duration,
    /// The first webhook retry waits this long; each next one twice as long.
    pub retry_base: Duration,
    /// E-mail, if configured; without it e-mail messages wait.
    pub smtp: Option<Smtp>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(60),
            retry_base: Duration::from_secs(1),
            smtp: None,
        }
    }
}

pub(crate) struct Inner {
    pub store: Store,
    pub opts: Options,
    pub defs: defs::Defs,
    pub metrics: Metrics,
    pub http: reqwest::Client,
    pub mailer: Option<dispatch::Mailer>,
    pub cron: tokio::sync::Mutex<cron::Cron>,
    /// Rung when steps may have queued messages.
    pub outbox: tokio::sync::Notify,
}

/// A handle on the engine of this process.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Build the engine (nothing runs until [`Engine::start`]).
    pub async fn new(store: Store, opts: Options) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("trellis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WorkflowError::step(format!("HTTP client: {e}")))?;
        let mailer = opts.smtp.as_ref().map(dispatch::Mailer::new).transpose()?;
        let inner = Arc::new(Inner {
            store,
            opts,
            defs: defs::Defs::default(),
            metrics: Metrics::new().map_err(|e| WorkflowError::step(e.to_string()))?,
            http,
            mailer,
            cron: tokio::sync::Mutex::new(cron::Cron::default()),
            outbox: tokio::sync::Notify::new(),
        });
        inner.defs.refresh(&inner.store).await?;
        Ok(Self { inner })
    }

    /// Start the work loops (events and runs; outgoing messages, apart so a slow receiver
    /// holds up nothing else) and the cron jobs.
    pub async fn start(&self) -> Result<()> {
        if self.inner.store.dialect() == trellis_store::Dialect::Sqlite {
            // One process per SQLite file: whatever is claimed was claimed by a process that
            // is gone, so it need not wait for its lease to run out.
            run::unclaim_all(&self.inner).await?;
        }
        cron::sync(&self.inner).await;
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let worked = match pump(&inner).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "workflow engine round failed");
                        0
                    }
                };
                if worked > 0 {
                    inner.outbox.notify_one();
                } else {
                    tokio::select! {
                        _ = inner.store.db.watch.wait() => {}
                        _ = tokio::time::sleep(inner.opts.poll) => {}
                    }
                }
            }
        });
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let sent = match dispatch::due(&inner).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "sending workflow messages failed");
                        0
                    }
                };
                if sent == 0 {
                    tokio::select! {
                        _ = inner.outbox.notified() => {}
                        _ = tokio::time::sleep(inner.opts.poll) => {}
                    }
                }
            }
        });
        Ok(())
    }

    /// Reload the workflow definitions if they changed (after a change here or, on a
    /// timer, elsewhere).
    pub async fn reload(&self) -> Result<()> {
        self.inner.defs.refresh(&self.inner.store).await?;
        // The event consumer may have taken the change in first: the jobs follow the
        // definitions whoever loaded them (a diff in memory).
        cron::sync(&self.inner).await;
        self.inner.store.db.watch.ring();
        Ok(())
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The store it works on.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

/// One round: new events, then due runs. Answers how much was done. Runs go on even when
/// the events cannot be handled this round.
async fn pump(inner: &Arc<Inner>) -> Result<usize> {
    let events = consume::events(inner).await;
    let runs = run::due(inner).await?;
    Ok(events? + runs)
}
