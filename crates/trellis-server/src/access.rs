//! Checks of administrative access. Record access is resolved per caller into
//! `trellis_access::Permissions` and applied by the store on every read and write.

use crate::auth::Caller;
use crate::error::{ApiError, Code};

/// Only administrators (with a token that is neither read-only nor limited to forms) may
/// change definitions, users, teams, roles and bundles.
pub fn admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.perms().may_administer() {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::Forbidden,
            "only administrators may do this (with a token that is not read-only or limited to forms)",
        ))
    }
}

/// Administrators may read users, roles and the admin audit, also with a read-only token.
pub fn inspect(caller: &Caller) -> Result<(), ApiError> {
    if caller.perms().may_inspect() {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::Forbidden,
            "only administrators may see this",
        ))
    }
}

/// A read-only token writes nothing: no uploads, no tokens, no logout of itself.
pub fn writes(caller: &Caller) -> Result<(), ApiError> {
    if caller.perms().read_only() {
        Err(ApiError::new(Code::Forbidden, "this token is read-only"))
    } else {
        Ok(())
    }
}
