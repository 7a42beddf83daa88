//! The store's errors; the server maps each to one registered error code.

use serde_json::Value;
use trellis_meta::{FieldError, MetaError};
use trellis_query::filter::FilterError;

/// A row that stands in the way of a schema change or a delete.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BlockingRow {
    /// The record id.
    pub id: String,
    /// The value that blocks.
    pub value: Value,
    /// Why.
    pub reason: String,
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// No such form.
    #[error("no form named {0:?}")]
    UnknownForm(String),
    /// No such record (or not visible).
    #[error("no {form} record with id {id:?}")]
    RecordNotFound {
        /// The form.
        form: String,
        /// The id asked for.
        id: String,
    },
    /// Something else that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A definition failed its checks.
    #[error("the definition is invalid")]
    Definition(Vec<MetaError>),
    /// Record values failed validation.
    #[error("{} field(s) are invalid", .0.len())]
    Validation(Vec<FieldError>),
    /// The filter, sort or cursor is malformed.
    #[error("{0}")]
    Filter(#[from] FilterError),
    /// A unique value is taken.
    #[error("{field}: the value is already used by another record")]
    Unique {
        /// Field path.
        field: String,
    },
    /// A conflict with existing data or definitions.
    #[error("{message}")]
    Conflict {
        /// Field or definition path.
        field: String,
        /// Stable code.
        code: &'static str,
        /// Human message.
        message: String,
        /// Rows that block, if any.
        rows: Vec<BlockingRow>,
    },
    /// If-Match did not match the current version.
    #[error("the record has changed: version is {current}")]
    Stale {
        /// The current version.
        current: i64,
    },
    /// A schema change would lose data.
    #[error("the change would lose data in {} field(s)", .0.len())]
    Lossy(Vec<crate::plan::Blocker>),
    /// The caller may not do this (to this field, when named).
    #[error("{message}")]
    Forbidden {
        /// Field path, or empty.
        field: String,
        /// Stable code, e.g. `read_only`.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// Login failed.
    #[error("wrong e-mail or password")]
    BadCredentials,
    /// Too many failed logins: try again later.
    #[error("too many failed logins; try again in {retry_after} s")]
    Locked {
        /// Seconds until the next attempt is allowed.
        retry_after: u64,
    },
    /// The database could not take the write now (commit failed, writer gone).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The caller may not do this.
    pub fn forbidden(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Forbidden {
            field: field.into(),
            code,
            message: message.into(),
        }
    }

    /// A validation error on one field.
    pub fn field(
        field: impl Into<String>,
        code: &'static str,
        en: impl Into<String>,
        zh: impl Into<String>,
    ) -> Self {
        Self::Validation(vec![FieldError::new(field, code, en, zh)])
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(e.to_string())
    }
}
