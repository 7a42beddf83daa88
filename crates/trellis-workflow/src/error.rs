//! What can go wrong in the engine.

use trellis_store::StoreError;

/// An engine error.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The store failed (database, validation of a write a step made).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// A stored document did not parse.
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A step could not do its work; the run fails with this message.
    #[error("{0}")]
    Step(String),
    /// Nothing by that id (a task, an approval, a run).
    #[error("{0} not found")]
    NotFound(String),
    /// The caller may not do this (decide someone else's approval).
    #[error("{0}")]
    Forbidden(String),
    /// The thing is no longer in a state that allows it (an approval already decided).
    #[error("{0}")]
    Conflict(String),
    /// Input the caller sent is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// Which part.
        field: String,
        /// Why.
        message: String,
    },
    /// The scheduler refused a job.
    #[error("scheduler: {0}")]
    Scheduler(String),
}

impl WorkflowError {
    /// A step failure.
    pub fn step(msg: impl Into<String>) -> Self {
        Self::Step(msg.into())
    }
}

/// Results of the engine.
pub type Result<T> = std::result::Result<T, WorkflowError>;
