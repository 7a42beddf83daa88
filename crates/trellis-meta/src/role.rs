//! Roles: what their holders may do with the records of each form, on which rows and
//! with which fields.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::schema_errors;
use crate::error::MetaError;
use crate::form::Label;

/// The JSON Schema of a role definition, as shipped in `schemas/`.
pub const ROLE_SCHEMA: &str = include_str!("../../../schemas/role.schema.json");

/// The form key that applies to every form a role does not name.
pub const ANY_FORM: &str = "*";
/// The field key that sets the default level of a grant's fields.
pub const ANY_FIELD: &str = "*";

/// A role definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// Machine name.
    pub name: String,
    /// Display name per language.
    pub label: Label,
    /// What the role is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// Holders are administrators.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// Grants per form (`*`: every other form).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forms: BTreeMap<String, Grant>,
}

/// Which rows an action reaches, by the owner of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The owner is the user.
    Own,
    /// The owner is in one of the user's teams (or a team the user manages).
    Team,
    /// The owner is the user or anyone below them in the reporting line.
    Subordinates,
    /// Every row.
    All,
}

impl Scope {
    /// The name used in definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Own => "own",
            Self::Team => "team",
            Self::Subordinates => "subordinates",
            Self::All => "all",
        }
    }
}

/// What may be done with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldAccess {
    /// Never shown, never written.
    Hidden,
    /// Shown, not written.
    Read,
    /// Shown and written.
    Write,
}

impl FieldAccess {
    /// The name used in definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hidden => "hidden",
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// One of the four record actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create.
    Create,
    /// Get, list, count, expand, history, export.
    Read,
    /// Update.
    Update,
    /// Delete.
    Delete,
}

impl Action {
    /// Every action, in the order definitions list them.
    pub const ALL: [Action; 4] = [Self::Create, Self::Read, Self::Update, Self::Delete];

    /// The name used in definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// A role's permissions on one form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// Create, within this scope of owners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<Scope>,
    /// Read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Scope>,
    /// Update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Scope>,
    /// Delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<Scope>,
    /// Only rows that also match this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// Per field (`*`: the default).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldAccess>,
}

impl Grant {
    /// The scope of an action, if granted.
    pub fn scope(&self, action: Action) -> Option<Scope> {
        match action {
            Action::Create => self.create,
            Action::Read => self.read,
            Action::Update => self.update,
            Action::Delete => self.delete,
        }
    }

    /// The level of a field under this grant.
    pub fn field(&self, name: &str) -> FieldAccess {
        if let Some(a) = self.fields.get(name).or_else(|| self.fields.get(ANY_FIELD)) {
            return *a;
        }
        if self.create.is_some() || self.update.is_some() {
            FieldAccess::Write
        } else {
            FieldAccess::Read
        }
    }

    /// Does the grant allow anything at all?
    pub fn any(&self) -> bool {
        Action::ALL.iter().any(|a| self.scope(*a).is_some())
    }
}

impl Role {
    /// The grant that applies to `form`: its own, else the `*` one.
    pub fn grant(&self, form: &str) -> Option<&Grant> {
        self.forms.get(form).or_else(|| self.forms.get(ANY_FORM))
    }
}

/// True when the filter reads through a relation (`"customer.industry"`), at any depth.
pub fn uses_relation_path(filter: &Value) -> bool {
    match filter {
        Value::Object(m) => m.iter().any(|(k, v)| {
            (!k.starts_with('$') && k.contains('.'))
                || (k.starts_with('$') && uses_relation_path(v))
        }),
        Value::Array(a) => a.iter().any(uses_relation_path),
        _ => false,
    }
}

/// Check a role definition. `fields_of` lists the fields of a form, or None when the form
/// does not exist. Filters are checked against the forms by the caller (they need a catalog).
pub fn check_role_at(
    doc: &Value,
    fields_of: &dyn Fn(&str) -> Option<Vec<String>>,
    prefix: &str,
) -> Result<Role, Vec<MetaError>> {
    static CELL: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    let errors = schema_errors(ROLE_SCHEMA, &CELL, doc, prefix);
    if !errors.is_empty() {
        return Err(errors);
    }
    let role: Role = serde_json::from_value(doc.clone())
        .map_err(|e| vec![MetaError::new(prefix, "schema", e.to_string())])?;
    let at = |p: String| {
        if prefix.is_empty() {
            p
        } else {
            format!("{prefix}.{p}")
        }
    };
    let mut errs = Vec::new();
    for (form, grant) in &role.forms {
        let base = format!("forms.{form}");
        let known = if form == ANY_FORM {
            None
        } else {
            match fields_of(form) {
                Some(f) => Some(f),
                None => {
                    errs.push(MetaError::new(
                        at(base.clone()),
                        "unknown_form",
                        format!("no form named {form:?}"),
                    ));
                    continue;
                }
            }
        };
        if form == ANY_FORM && grant.fields.keys().any(|k| k != ANY_FIELD) {
            errs.push(MetaError::new(
                at(format!("{base}.fields")),
                "not_allowed",
                "the \"*\" grant applies to many forms: only \"*\" may set its fields",
            ));
        }
        if let Some(known) = &known {
            for name in grant.fields.keys().filter(|k| *k != ANY_FIELD) {
                if !known.iter().any(|k| k == name) {
                    errs.push(MetaError::new(
                        at(format!("{base}.fields.{name}")),
                        "unknown_field",
                        format!("the form {form:?} has no field {name:?}"),
                    ));
                }
            }
        }
        if grant.create.is_some()
            && let Some(f) = &grant.filter
            && uses_relation_path(f)
        {
            errs.push(MetaError::new(
                at(format!("{base}.filter")),
                "not_allowed",
                "a grant that creates checks its filter on the new record, so it may not read through relations",
            ));
        }
    }
    if errs.is_empty() { Ok(role) } else { Err(errs) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(form: &str) -> Option<Vec<String>> {
        (form == "lead").then(|| vec!["company".to_owned(), "score".to_owned()])
    }

    #[test]
    fn a_role_parses_and_its_defaults_follow_the_actions() {
        let r = check_role_at(
            &json!({"name": "rep", "label": {"en": "Rep"}, "forms": {
                "lead": {"read": "own", "update": "own", "fields": {"score": "read"}},
                "*": {"read": "all"}}}),
            &fields,
            "",
        )
        .unwrap();
        let g = r.grant("lead").unwrap();
        assert_eq!(g.scope(Action::Read), Some(Scope::Own));
        assert_eq!(g.scope(Action::Delete), None);
        assert_eq!(g.field("score"), FieldAccess::Read);
        assert_eq!(g.field("company"), FieldAccess::Write);
        assert_eq!(r.grant("order").unwrap().field("x"), FieldAccess::Read);
    }

    #[test]
    fn unknown_forms_fields_and_scopes_are_named() {
        let errs = check_role_at(
            &json!({"name": "rep", "label": {"en": "Rep"}, "forms": {
                "ghost": {"read": "own"},
                "lead": {"read": "own", "fields": {"nope": "read"}}}}),
            &fields,
            "roles[0]",
        )
        .unwrap_err();
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["roles[0].forms.ghost", "roles[0].forms.lead.fields.nope"]
        );
        let errs = check_role_at(
            &json!({"name": "rep", "label": {"en": "Rep"}, "forms": {"lead": {"read": "mine"}}}),
            &fields,
            "",
        )
        .unwrap_err();
        assert_eq!(errs[0].path, "forms.lead.read");
    }

    #[test]
    fn create_filters_may_not_read_through_relations() {
        assert!(uses_relation_path(
            &json!({"$or": [{"status": "x"}, {"customer.level": "A"}]})
        ));
        assert!(!uses_relation_path(&json!({"status": {"$in": ["a.b"]}})));
        let errs = check_role_at(
            &json!({"name": "rep", "label": {"en": "Rep"}, "forms": {
                "lead": {"create": "own", "filter": {"interest.name": "x"}}}}),
            &fields,
            "",
        )
        .unwrap_err();
        assert_eq!(errs[0].code, "not_allowed");
    }
}
