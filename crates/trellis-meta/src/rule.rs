//! Rule definitions: a rhai script over the records of one form, what it does with its
//! result and when it runs.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::schema_errors;
use crate::error::MetaError;
use crate::form::{FieldType, Form, Label};

/// The JSON Schema of a rule definition, as shipped in `schemas/`.
pub const RULE_SCHEMA: &str = include_str!("../../../schemas/rule.schema.json");

/// What a rule does with its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// A number stored in `field`.
    Score,
    /// A value (usually a select option) stored in `field`.
    Grade,
    /// Any value stored in `field`.
    Formula,
    /// `reject(field, message)` refuses the write.
    Validate,
    /// `assign(user)` sets the owner of a new record (or the user field named by `field`).
    Route,
    /// True or false, for whoever asks; changes nothing.
    Condition,
}

impl RuleKind {
    /// Does the rule store its value in `field`?
    pub fn sets_field(self) -> bool {
        matches!(self, Self::Score | Self::Grade | Self::Formula)
    }
}

/// When a rule runs by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// On create.
    Create,
    /// On update.
    Update,
}

/// What a failing script does to the write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse it.
    #[default]
    Reject,
    /// Keep it and record the error.
    Record,
}

fn both_triggers() -> Vec<Trigger> {
    vec![Trigger::Create, Trigger::Update]
}

fn is_both(t: &[Trigger]) -> bool {
    t == both_triggers().as_slice()
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_reject(e: &OnError) -> bool {
    *e == OnError::Reject
}

/// A rule definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Machine name.
    pub name: String,
    /// Display name per language.
    pub label: Label,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// The form.
    pub form: String,
    /// What it does with its result.
    pub kind: RuleKind,
    /// Where score, grade and formula rules store their value; the user field a route rule
    /// sets (default: the owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The rhai script.
    pub script: String,
    /// When it runs by itself.
    #[serde(default = "both_triggers", skip_serializing_if = "is_both")]
    pub on: Vec<Trigger>,
    /// On update, only when one of these changes (empty: any change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
    /// What a failure does.
    #[serde(default, skip_serializing_if = "is_reject")]
    pub on_error: OnError,
    /// Order among the form's rules.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub order: i64,
    /// Does it run?
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
}

impl Rule {
    /// Does the rule run on this write? `changed` lists the fields an update changes.
    pub fn runs_on(&self, create: bool, changed: &[&str]) -> bool {
        if !self.active {
            return false;
        }
        if create {
            return self.on.contains(&Trigger::Create);
        }
        self.on.contains(&Trigger::Update)
            && (self.watch.is_empty() || self.watch.iter().any(|w| changed.contains(&w.as_str())))
    }
}

/// Check a rule's shape and its form and field; `form_of` finds a form by name. The script
/// is compiled by the caller (the rule engine).
pub fn check_rule_at(
    doc: &Value,
    form_of: &dyn Fn(&str) -> Option<Form>,
    prefix: &str,
) -> Result<Rule, Vec<MetaError>> {
    static CELL: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    let errors = schema_errors(RULE_SCHEMA, &CELL, doc, prefix);
    if !errors.is_empty() {
        return Err(errors);
    }
    let rule: Rule = serde_json::from_value(doc.clone())
        .map_err(|e| vec![MetaError::new(prefix, "schema", e.to_string())])?;
    let at = |p: &str| {
        if prefix.is_empty() {
            p.to_owned()
        } else {
            format!("{prefix}.{p}")
        }
    };
    let Some(form) = form_of(&rule.form) else {
        return Err(vec![MetaError::new(
            at("form"),
            "unknown_form",
            format!("no form named {:?}", rule.form),
        )]);
    };
    let mut errs = Vec::new();
    if rule.kind == RuleKind::Route {
        // Routing sets the owner, or the user field it names (a ticket's assignee).
        if let Some(name) = &rule.field
            && name != "owner"
            && form.field(name).is_none_or(|f| f.kind != FieldType::User)
        {
            errs.push(MetaError::new(
                at("field"),
                "not_allowed",
                format!("a route rule sets the owner or a user field; {name:?} is neither"),
            ));
        }
    } else {
        check_field(&rule, &form, &at, &mut errs);
    }
    for (i, w) in rule.watch.iter().enumerate() {
        if form.field(w).is_none() && !crate::SYSTEM_COLUMNS.contains(&w.as_str()) {
            errs.push(MetaError::new(
                at(&format!("watch[{i}]")),
                "unknown_field",
                format!("{} has no field {w:?}", form.name),
            ));
        }
    }
    if errs.is_empty() { Ok(rule) } else { Err(errs) }
}

/// The field a score, grade or formula rule sets must exist and take its value.
fn check_field(rule: &Rule, form: &Form, at: &dyn Fn(&str) -> String, errs: &mut Vec<MetaError>) {
    match (&rule.field, rule.kind.sets_field()) {
        (None, true) => errs.push(MetaError::new(
            at("field"),
            "required",
            "a score, grade or formula rule names the field it sets",
        )),
        (Some(_), false) => errs.push(MetaError::new(
            at("field"),
            "not_allowed",
            "only score, grade and formula rules set a field",
        )),
        (Some(name), true) => match form.field(name) {
            None => errs.push(MetaError::new(
                at("field"),
                "unknown_field",
                format!("{} has no field {name:?}", form.name),
            )),
            Some(f) if f.is_read_only() || f.kind == FieldType::Subtable => {
                errs.push(MetaError::new(
                    at("field"),
                    "not_allowed",
                    format!("{name:?} is computed or holds lines; a rule cannot set it"),
                ))
            }
            Some(f) if rule.kind == RuleKind::Score && !f.kind.is_numeric() => {
                errs.push(MetaError::new(
                    at("field"),
                    "not_allowed",
                    format!(
                        "a score needs a number field; {name:?} is {}",
                        f.kind.as_str()
                    ),
                ))
            }
            Some(_) => {}
        },
        (None, false) => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lead() -> Form {
        serde_json::from_value(json!({"name": "lead", "label": {"en": "Lead"}, "fields": [
            {"name": "score", "type": "integer"}, {"name": "grade", "type": "text"},
            {"name": "source", "type": "text"}]}))
        .unwrap()
    }

    fn form_of(n: &str) -> Option<Form> {
        (n == "lead").then(lead)
    }

    #[test]
    fn defaults_and_round_trip() {
        let doc = json!({"name": "lead_score", "label": {"en": "Score"}, "form": "lead",
            "kind": "score", "field": "score", "script": "1"});
        let r = check_rule_at(&doc, &form_of, "").unwrap();
        assert_eq!(r.on, vec![Trigger::Create, Trigger::Update]);
        assert!(r.active && r.on_error == OnError::Reject);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            doc,
            "defaults are not written out"
        );
        assert!(r.runs_on(true, &[]) && r.runs_on(false, &["x"]));
        let w = Rule {
            watch: vec!["source".into()],
            ..r
        };
        assert!(w.runs_on(false, &["source"]) && !w.runs_on(false, &["grade"]));
    }

    #[test]
    fn fields_must_fit_the_kind() {
        let bad = |v: Value| check_rule_at(&v, &form_of, "").unwrap_err()[0].path.clone();
        let base = json!({"name": "r", "label": {"en": "R"}, "form": "lead", "script": "1"});
        let with = |k: Value| {
            let mut d = base.clone();
            for (a, b) in k.as_object().unwrap() {
                d[a] = b.clone();
            }
            d
        };
        assert_eq!(bad(with(json!({"kind": "score"}))), "field");
        assert_eq!(
            bad(with(json!({"kind": "score", "field": "grade"}))),
            "field"
        );
        assert_eq!(
            bad(with(json!({"kind": "validate", "field": "grade"}))),
            "field"
        );
        assert_eq!(
            bad(with(json!({"kind": "grade", "field": "nope"}))),
            "field"
        );
        assert_eq!(
            bad(with(json!({"kind": "validate", "watch": ["nope"]}))),
            "watch[0]"
        );
        assert_eq!(
            bad(with(json!({"kind": "validate", "form": "ghost"}))),
            "form"
        );
        assert_eq!(bad(with(json!({"kind": "magic"}))), "kind");
    }
}
