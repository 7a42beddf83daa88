//! Errors of definitions and of record values, each naming its JSON path.

use serde::Serialize;

/// One problem in a definition, located by its JSON path (`fields[2].options[0].value`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{path}: {message}")]
pub struct MetaError {
    /// JSON path inside the definition.
    pub path: String,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human message in English.
    pub message: String,
}

impl MetaError {
    /// Build an error at `path`.
    pub fn new(path: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            code,
            message: message.into(),
        }
    }
}

/// One problem with a record value, naming the field path (`lines[0].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Field path inside the record.
    pub field: String,
    /// Stable machine-readable code (`required`, `format`, `max_length`, …).
    pub code: &'static str,
    /// Human message in English.
    pub message: String,
    /// The same message in Chinese.
    #[serde(skip)]
    pub message_zh: String,
}

impl FieldError {
    /// Build an error with English and Chinese messages.
    pub fn new(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
        message_zh: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
            message_zh: message_zh.into(),
        }
    }
}
