//! Definitions of forms, roles, rules, workflows and bundles, their checks, stage gates,
//! and the JSON Schema of a form's records.
//!
//! This crate does no I/O: it knows nothing of SQL connections or HTTP.

pub mod autonumber;
pub mod bundle;
pub mod check;
pub mod dedupe;
pub mod error;
pub mod form;
pub mod record;
pub mod report;
pub mod role;
pub mod rule;
pub mod stage;
pub mod text;
pub mod workflow;

pub use bundle::Bundle;
pub use error::{FieldError, MetaError};
pub use form::{Field, FieldType, Form, Label, OnDelete, SelectOption};
pub use record::{FieldValidator, RecordValidator};
pub use role::{Role, Scope};
pub use rule::{Rule, RuleKind};

/// System columns present on every record (fixed names).
pub const SYSTEM_COLUMNS: [&str; 6] = [
    "id",
    "version",
    "created_at",
    "updated_at",
    "created_by",
    "owner",
];

/// Names no field may take: the system columns and keys the API itself uses.
pub const RESERVED_NAMES: [&str; 8] = [
    "id",
    "version",
    "created_at",
    "updated_at",
    "created_by",
    "owner",
    "expand",
    "deleted_at",
];
