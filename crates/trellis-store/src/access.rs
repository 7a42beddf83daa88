//! Permissions applied where records are read and written: row scopes compiled into the
//! SQL of every read, hidden fields left out of every answer and every filter, written
//! fields checked against their level.

use chrono::Utc;
use serde_json::{Map, Value};
use trellis_access::{Permissions, Rows};
use trellis_meta::role::{Action, FieldAccess};
use trellis_query::{Catalog, FieldInfo, Filter};

use crate::error::StoreError;
use crate::forms::Snapshot;

/// Most ids a role's scope may list in one `$in` (a team, a reporting line).
const SCOPE_MAX_IDS: usize = 100_000;

/// The rows of `form` the action reaches, as a filter (None: every row). Not granted at
/// all: 403.
pub fn rows(
    perms: &Permissions,
    snap: &Snapshot,
    form: &str,
    action: Action,
) -> Result<Option<Filter>, StoreError> {
    match perms.rows(form, action) {
        Rows::All => Ok(None),
        Rows::None => Err(StoreError::forbidden(
            "",
            "not_permitted",
            format!("you may not {} {form} records", action.as_str()),
        )),
        // Scopes list the ids of teams and reporting lines, which may be long.
        Rows::Filter(f) => Filter::parse_trusted(form, &f, snap, Utc::now(), SCOPE_MAX_IDS)
            .map(Some)
            .map_err(|e| {
                // A role filter that no longer fits its form (a field was removed): deny.
                tracing::warn!(form, error = %e, "a role filter does not parse; access denied");
                StoreError::forbidden(
                    "",
                    "role_filter_invalid",
                    format!("a role's filter on {form} no longer fits the form: {e}"),
                )
            }),
    }
}

/// May the field be seen? System columns always may.
pub fn visible(perms: &Permissions, form: &str, field: &str) -> bool {
    trellis_meta::SYSTEM_COLUMNS.contains(&field) || perms.field(form, field) != FieldAccess::Hidden
}

/// Remove hidden fields from a record (and from what it expands).
pub fn redact(perms: &Permissions, form: &str, rec: &mut Map<String, Value>) {
    rec.retain(|k, _| k == "expand" || visible(perms, form, k));
}

/// The catalog a caller's filters and sorts are checked against: hidden fields do not
/// exist, and relation paths see only the rows the caller may read.
pub struct Visible<'a> {
    /// All forms.
    pub snap: &'a Snapshot,
    /// The caller.
    pub perms: &'a Permissions,
}

impl Catalog for Visible<'_> {
    fn field(&self, form: &str, name: &str) -> Option<FieldInfo> {
        if !visible(self.perms, form, name) {
            return None;
        }
        self.snap.field(form, name)
    }

    fn table(&self, form: &str) -> Option<String> {
        if !self.perms.may(form, Action::Read) {
            return None;
        }
        self.snap.table(form)
    }

    fn row_scope(&self, form: &str) -> Option<Filter> {
        // `table` already refused forms that cannot be read; a broken role filter
        // matches nothing rather than everything (ids are never null).
        match rows(self.perms, self.snap, form, Action::Read) {
            Ok(f) => f,
            Err(_) => self.snap.table(form).map(|t| Filter::nothing(&t)),
        }
    }
}

/// Refuse values of fields the caller may not write. On create, only the fields the
/// client sent count (defaults may fill read-only fields); on update, only changes.
pub fn check_fields<'a>(
    perms: &Permissions,
    form: &str,
    fields: impl Iterator<Item = &'a String>,
    prefix: &str,
) -> Result<(), StoreError> {
    for f in fields {
        if trellis_meta::SYSTEM_COLUMNS.contains(&f.as_str()) {
            continue;
        }
        if perms.field(form, f) != FieldAccess::Write {
            return Err(StoreError::forbidden(
                format!("{prefix}{f}"),
                "read_only",
                format!("you may not change the field {f:?}"),
            ));
        }
    }
    Ok(())
}

/// Refuse an import the caller may not run: creating needs create, updating needs update.
pub fn check_may_import(
    perms: &Permissions,
    form: &str,
    mode: crate::imports::ImportMode,
) -> Result<(), StoreError> {
    use crate::imports::ImportMode;
    let needs: &[Action] = match mode {
        ImportMode::Insert => &[Action::Create],
        ImportMode::Update => &[Action::Update],
        ImportMode::Upsert => &[Action::Create, Action::Update],
    };
    for a in needs {
        if !perms.may(form, *a) {
            return Err(StoreError::forbidden(
                "",
                "not_permitted",
                format!("you may not {} {form} records", a.as_str()),
            ));
        }
    }
    Ok(())
}

/// Before validation: may the caller create records of the form, for the owner named in
/// the input (if any)? So a refusal comes before any complaint about the values.
pub fn check_may_create(
    perms: &Permissions,
    form: &str,
    input: &Map<String, Value>,
    prefix: &str,
) -> Result<(), StoreError> {
    if !perms.may(form, Action::Create) {
        return Err(StoreError::forbidden(
            "",
            "not_permitted",
            format!("you may not create {form} records"),
        ));
    }
    if let Some(o) = input.get("owner").and_then(Value::as_str)
        && !perms.may_own(form, Action::Create, o)
    {
        return Err(StoreError::forbidden(
            format!("{prefix}owner"),
            "owner_out_of_scope",
            format!("you may not create {form} records for this owner"),
        ));
    }
    check_fields(
        perms,
        form,
        input.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k),
        prefix,
    )
}

/// May a new record (its validated values, `owner` resolved) be created by the caller?
pub fn check_create(
    perms: &Permissions,
    snap: &Snapshot,
    form: &str,
    record: &Map<String, Value>,
    prefix: &str,
) -> Result<(), StoreError> {
    let owner = record
        .get("owner")
        .and_then(Value::as_str)
        .unwrap_or(perms.user());
    let filters = perms.create_filters(form, owner);
    if filters.is_empty() {
        return Err(if perms.may(form, Action::Create) {
            StoreError::forbidden(
                format!("{prefix}owner"),
                "owner_out_of_scope",
                format!("you may not create {form} records for this owner"),
            )
        } else {
            StoreError::forbidden(
                "",
                "not_permitted",
                format!("you may not create {form} records"),
            )
        });
    }
    // Any grant whose filter the record matches (or that has none) allows it.
    let mut with_owner = record.clone();
    with_owner.insert("owner".into(), Value::String(owner.to_owned()));
    let ok = filters.iter().any(|f| match f {
        None => true,
        Some(doc) => Filter::parse(form, doc, snap, Utc::now())
            .and_then(|flt| flt.matches(&with_owner))
            .unwrap_or(false),
    });
    if ok {
        Ok(())
    } else {
        Err(StoreError::forbidden(
            prefix.trim_end_matches('.'),
            "out_of_scope",
            format!("your roles do not let you create a {form} record with these values"),
        ))
    }
}
