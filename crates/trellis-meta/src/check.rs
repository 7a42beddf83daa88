//! Checks a definition against its JSON Schema, then semantically, before anything is written.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde_json::Value;

use crate::RESERVED_NAMES;
use crate::autonumber;
use crate::dedupe;
use crate::error::MetaError;
use crate::form::{Field, FieldType, Form, OnDelete};
use crate::record::validate_field_value;

/// The JSON Schema of a form definition, as shipped in `schemas/`.
pub const FORM_SCHEMA: &str = include_str!("../../../schemas/form.schema.json");
/// The JSON Schema of a bundle, as shipped in `schemas/`.
pub const BUNDLE_SCHEMA: &str = include_str!("../../../schemas/bundle.schema.json");

/// Most fields one form may have.
pub const MAX_FIELDS: usize = 500;

fn compiled(
    src: &'static str,
    cell: &'static OnceLock<Option<jsonschema::Validator>>,
) -> Option<&'static jsonschema::Validator> {
    cell.get_or_init(|| {
        let schema: Value = serde_json::from_str(src).ok()?;
        jsonschema::validator_for(&schema).ok()
    })
    .as_ref()
}

/// Validate `doc` against a shipped schema, naming each error's JSON path.
pub(crate) fn schema_errors(
    src: &'static str,
    cell: &'static OnceLock<Option<jsonschema::Validator>>,
    doc: &Value,
    prefix: &str,
) -> Vec<MetaError> {
    let Some(v) = compiled(src, cell) else {
        return vec![MetaError::new(
            prefix,
            "schema_unavailable",
            "the shipped JSON Schema does not compile",
        )];
    };
    v.iter_errors(doc)
        .take(50)
        .map(|e| {
            let path = join_path(prefix, &pointer_to_path(&e.instance_path().to_string()));
            MetaError::new(path, "schema", e.to_string())
        })
        .collect()
}

/// Turn a JSON pointer (`/fields/2/name`) into a path (`fields[2].name`).
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Check a form definition. `form_exists` answers whether a relation target exists
/// (the form itself counts, for self-relations).
pub fn check_form(doc: &Value, form_exists: &dyn Fn(&str) -> bool) -> Result<Form, Vec<MetaError>> {
    check_form_at(doc, form_exists, "")
}

/// Check a form definition whose errors are reported under `prefix` (`forms[3]`).
pub fn check_form_at(
    doc: &Value,
    form_exists: &dyn Fn(&str) -> bool,
    prefix: &str,
) -> Result<Form, Vec<MetaError>> {
    static CELL: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    let errors = schema_errors(FORM_SCHEMA, &CELL, doc, prefix);
    if !errors.is_empty() {
        return Err(errors);
    }
    let form: Form = serde_json::from_value(doc.clone())
        .map_err(|e| vec![MetaError::new(prefix, "schema", e.to_string())])?;
    let errors = semantic(&form, form_exists, prefix);
    if errors.is_empty() {
        Ok(form)
    } else {
        Err(errors)
    }
}

/// Check a bundle document's shape against the bundle schema.
pub fn check_bundle_shape(doc: &Value) -> Vec<MetaError> {
    static CELL: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    schema_errors(BUNDLE_SCHEMA, &CELL, doc, "")
}

/// A machine name: `^[a-z][a-z0-9_]{0,62}$`.
pub(crate) fn name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The semantic checks a schema cannot express.
pub fn semantic(form: &Form, form_exists: &dyn Fn(&str) -> bool, prefix: &str) -> Vec<MetaError> {
    let mut errs = Vec::new();
    let at = |p: &str| join_path(prefix, p);
    if !name_ok(&form.name) {
        errs.push(MetaError::new(
            at("name"),
            "invalid_name",
            "a name matches ^[a-z][a-z0-9_]{0,62}$",
        ));
    }
    if form.fields.len() > MAX_FIELDS {
        errs.push(MetaError::new(
            at("fields"),
            "too_many_fields",
            format!("a form has at most {MAX_FIELDS} fields"),
        ));
    }
    if let Some(t) = &form.title_field
        && form.field(t).is_none()
    {
        errs.push(MetaError::new(
            at("title_field"),
            "unknown_field",
            format!("no field named {t:?}"),
        ));
    }
    check_fields(&form.fields, form_exists, &at("fields"), false, &mut errs);
    check_stages(form, &at("fields"), &mut errs);
    errs.extend(dedupe::check_at(form, &at("duplicates")));
    errs
}

/// Stage gates: on top-level select fields only, naming the field's options and the
/// form's fields.
fn check_stages(form: &Form, base: &str, errs: &mut Vec<MetaError>) {
    for (i, f) in form.fields.iter().enumerate() {
        let p = format!("{base}[{i}]");
        let select = f.kind == FieldType::Select;
        if let Some(moves) = &f.transitions {
            if !select {
                errs.push(MetaError::new(
                    format!("{p}.transitions"),
                    "not_allowed",
                    "only a select field has transitions",
                ));
            }
            let known = |v: &str| f.options.iter().any(|o| o.value == v);
            for (from, to) in moves {
                if !known(from) {
                    errs.push(MetaError::new(
                        format!("{p}.transitions.{from}"),
                        "unknown_option",
                        format!("{from:?} is not an option of this field"),
                    ));
                }
                for (j, t) in to.iter().enumerate() {
                    if !known(t) {
                        errs.push(MetaError::new(
                            format!("{p}.transitions.{from}[{j}]"),
                            "unknown_option",
                            format!("{t:?} is not an option of this field"),
                        ));
                    }
                }
            }
        }
        for (j, o) in f.options.iter().enumerate() {
            for (k, r) in o.requires.iter().enumerate() {
                let at = format!("{p}.options[{j}].requires[{k}]");
                if !select {
                    errs.push(MetaError::new(
                        at,
                        "not_allowed",
                        "only the states of a select field require fields",
                    ));
                } else if r == &f.name || form.field(r).is_none() {
                    errs.push(MetaError::new(
                        at,
                        "unknown_field",
                        format!("{r:?} is not another field of this form"),
                    ));
                }
            }
        }
        // Lines have no stages.
        for (j, line) in f.fields.iter().enumerate() {
            if line.transitions.is_some() || line.options.iter().any(|o| !o.requires.is_empty()) {
                errs.push(MetaError::new(
                    format!("{p}.fields[{j}]"),
                    "not_allowed",
                    "a subtable line's select field has no transitions or required fields",
                ));
            }
        }
    }
}

fn check_fields(
    fields: &[Field],
    form_exists: &dyn Fn(&str) -> bool,
    base: &str,
    nested: bool,
    errs: &mut Vec<MetaError>,
) {
    let mut seen = HashSet::new();
    for (i, f) in fields.iter().enumerate() {
        let p = format!("{base}[{i}]");
        let err = |errs: &mut Vec<MetaError>, key: &str, code: &'static str, msg: String| {
            errs.push(MetaError::new(format!("{p}.{key}"), code, msg));
        };
        if !name_ok(&f.name) {
            err(
                errs,
                "name",
                "invalid_name",
                "a name matches ^[a-z][a-z0-9_]{0,62}$".into(),
            );
        }
        if RESERVED_NAMES.contains(&f.name.as_str()) {
            err(
                errs,
                "name",
                "reserved_name",
                format!("{:?} is reserved for the system", f.name),
            );
        }
        if !seen.insert(f.name.as_str()) {
            err(
                errs,
                "name",
                "duplicate_name",
                format!("the field name {:?} is used twice", f.name),
            );
        }
        let k = f.kind;
        let st = f.storage_type();
        if nested && matches!(k, FieldType::Subtable | FieldType::Attachment) {
            err(
                errs,
                "type",
                "not_in_subtable",
                format!("a subtable line cannot hold a {} field", k.as_str()),
            );
        }
        match k {
            FieldType::Select | FieldType::Multiselect => {
                if f.options.is_empty() {
                    err(
                        errs,
                        "options",
                        "required",
                        "a select field needs options".into(),
                    );
                }
                let mut vals = HashSet::new();
                for (j, o) in f.options.iter().enumerate() {
                    if !vals.insert(o.value.as_str()) {
                        errs.push(MetaError::new(
                            format!("{p}.options[{j}].value"),
                            "duplicate_option",
                            format!("the option {:?} is listed twice", o.value),
                        ));
                    }
                    if o.closed && k == FieldType::Multiselect {
                        errs.push(MetaError::new(
                            format!("{p}.options[{j}].closed"),
                            "not_allowed",
                            "only the options of a select field can be end states",
                        ));
                    }
                }
                if let Some(map) = &f.normalize {
                    for (from, to) in map {
                        if !vals.contains(to.as_str()) {
                            errs.push(MetaError::new(
                                format!("{p}.normalize.{from}"),
                                "unknown_option",
                                format!("{to:?} is not an option of this field"),
                            ));
                        }
                    }
                }
            }
            _ if !f.options.is_empty() => err(
                errs,
                "options",
                "not_allowed",
                "only select fields have options".into(),
            ),
            _ => {}
        }
        if k == FieldType::Relation {
            match &f.target {
                None => err(
                    errs,
                    "target",
                    "required",
                    "a relation needs a target form".into(),
                ),
                Some(t) if !form_exists(t) => err(
                    errs,
                    "target",
                    "unknown_form",
                    format!("no form named {t:?}"),
                ),
                Some(_) => {}
            }
            if f.required && f.on_delete_policy() == OnDelete::SetNull {
                err(
                    errs,
                    "on_delete",
                    "conflict",
                    "a required relation cannot be cleared on delete".into(),
                );
            }
        } else {
            if f.target.is_some() {
                err(
                    errs,
                    "target",
                    "not_allowed",
                    "only relation fields have a target".into(),
                );
            }
            if f.on_delete.is_some() {
                err(
                    errs,
                    "on_delete",
                    "not_allowed",
                    "only relation fields have on_delete".into(),
                );
            }
        }
        if k == FieldType::Autonumber {
            match f.format.as_deref().map(autonumber::Format::parse) {
                None => err(
                    errs,
                    "format",
                    "required",
                    "an autonumber needs a format".into(),
                ),
                Some(Err(e)) => err(errs, "format", "invalid_format", e),
                Some(Ok(_)) => {}
            }
        } else if f.format.is_some() {
            err(
                errs,
                "format",
                "not_allowed",
                "only autonumber fields have a format".into(),
            );
        }
        if let Some(pat) = &f.pattern {
            if !st.is_textual() {
                err(
                    errs,
                    "pattern",
                    "not_allowed",
                    "a pattern applies to text fields".into(),
                );
            } else if let Err(e) = regex::Regex::new(pat) {
                err(
                    errs,
                    "pattern",
                    "invalid_pattern",
                    format!("not a valid regular expression: {e}"),
                );
            }
        }
        if (f.min.is_some() || f.max.is_some()) && !st.is_numeric() {
            err(
                errs,
                "min",
                "not_allowed",
                "min and max apply to number fields".into(),
            );
        }
        if let (Some(a), Some(b)) = (
            f.min.as_ref().and_then(|n| n.as_f64()),
            f.max.as_ref().and_then(|n| n.as_f64()),
        ) && a > b
        {
            err(
                errs,
                "min",
                "min_above_max",
                format!("min {a} is above max {b}"),
            );
        }
        if f.max_length.is_some()
            && !(st.is_textual() || matches!(st, FieldType::Relation | FieldType::User))
        {
            err(
                errs,
                "max_length",
                "not_allowed",
                "max_length applies to text fields".into(),
            );
        }
        if f.unique
            && matches!(
                st,
                FieldType::Multiselect
                    | FieldType::Subtable
                    | FieldType::Attachment
                    | FieldType::Json
                    | FieldType::Boolean
            )
        {
            err(
                errs,
                "unique",
                "not_allowed",
                format!("a {} field cannot be unique", k.as_str()),
            );
        }
        if k == FieldType::Subtable {
            if f.fields.is_empty() {
                err(errs, "fields", "required", "a subtable needs fields".into());
            }
            if f.unique || f.indexed {
                err(
                    errs,
                    "indexed",
                    "not_allowed",
                    "a subtable cannot be indexed".into(),
                );
            }
            check_fields(&f.fields, form_exists, &format!("{p}.fields"), true, errs);
        } else if !f.fields.is_empty() {
            err(
                errs,
                "fields",
                "not_allowed",
                "only subtables have fields".into(),
            );
        }
        if k == FieldType::Formula {
            if f.expression.as_deref().is_none_or(|e| e.trim().is_empty()) {
                err(
                    errs,
                    "expression",
                    "required",
                    "a formula needs an expression".into(),
                );
            }
            match f.result_type {
                None => err(
                    errs,
                    "result_type",
                    "required",
                    "a formula needs a result_type".into(),
                ),
                Some(t)
                    if !matches!(
                        t,
                        FieldType::Integer
                            | FieldType::Decimal
                            | FieldType::Currency
                            | FieldType::Text
                            | FieldType::Boolean
                            | FieldType::Date
                    ) =>
                {
                    err(
                        errs,
                        "result_type",
                        "invalid",
                        format!("a formula cannot produce a {}", t.as_str()),
                    );
                }
                Some(_) => {}
            }
        }
        if let Some(d) = &f.default {
            if f.is_read_only() {
                err(
                    errs,
                    "default",
                    "not_allowed",
                    "a computed field has no default".into(),
                );
            } else if !(matches!(k, FieldType::Date | FieldType::Datetime)
                && matches!(d.as_str(), Some("$today" | "$now")))
                && let Err(e) = validate_field_value(f, d)
            {
                err(errs, "default", "invalid_default", e.message);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(doc: Value) -> Result<Form, Vec<MetaError>> {
        check_form(&doc, &|n| n == "customer")
    }

    #[test]
    fn accepts_a_valid_form() {
        let f = check(
            json!({"name":"lead","label":{"en":"Lead","zh-CN":"线索"},"fields":[
            {"name":"company","type":"text","required":true,"label":{"en":"Company"}},
            {"name":"source","type":"select","options":[{"value":"website"},{"value":"expo"}]},
            {"name":"customer","type":"relation","target":"customer"},
            {"name":"no","type":"autonumber","format":"L-{seq:4}"}]}),
        )
        .unwrap();
        assert_eq!(f.fields.len(), 4);
    }

    #[test]
    fn the_bundle_schema_defines_forms_as_the_form_schema_does() {
        // The bundle schema carries a copy (one file validates a whole bundle offline).
        let form: Value = serde_json::from_str(FORM_SCHEMA).unwrap();
        let bundle: Value = serde_json::from_str(BUNDLE_SCHEMA).unwrap();
        for (k, v) in form["$defs"].as_object().unwrap() {
            assert_eq!(&bundle["$defs"][k], v, "$defs.{k}");
        }
        for k in ["type", "additionalProperties", "required", "properties"] {
            assert_eq!(bundle["$defs"]["form"][k], form[k], "{k}");
        }
    }

    #[test]
    fn stage_gates_name_options_and_fields_of_the_form() {
        let errs = check(json!({"name":"deal","label":{"en":"Deal"},"fields":[
            {"name":"amount","type":"currency"},
            {"name":"stage","type":"select","options":[
                {"value":"open"},{"value":"won","requires":["amount","nothing","stage"]}],
             "transitions":{"open":["won","gone"],"ghost":[]}}]}))
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "fields[1].transitions.ghost",
                "fields[1].transitions.open[1]",
                "fields[1].options[1].requires[1]",
                "fields[1].options[1].requires[2]",
            ]
        );
    }

    #[test]
    fn end_states_belong_to_select_fields() {
        let f = check(json!({"name":"ticket","label":{"en":"Ticket"},"fields":[
            {"name":"status","type":"select","options":[
                {"value":"new"},{"value":"resolved","closed":true},{"value":"closed","closed":true}]},
            {"name":"tags","type":"multiselect","options":[{"value":"a"}]}]}))
        .unwrap();
        let states = f.closed_states();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].0.name, "status");
        assert_eq!(states[0].1, vec!["resolved", "closed"]);
        let errs = check(json!({"name":"ticket","label":{"en":"Ticket"},"fields":[
            {"name":"tags","type":"multiselect","options":[{"value":"a","closed":true}]}]}))
        .unwrap_err();
        assert_eq!(errs[0].path, "fields[0].options[0].closed");
    }

    #[test]
    fn names_the_path_of_each_semantic_error() {
        let errs = check(json!({"name":"lead","label":{"en":"Lead"},"fields":[
            {"name":"company","type":"text"},
            {"name":"company","type":"text"},
            {"name":"owner_x","type":"text"},
            {"name":"source","type":"select","options":[{"value":"a"},{"value":"a"}]},
            {"name":"cust","type":"relation","target":"nothing"},
            {"name":"n","type":"integer","min":5,"max":1},
            {"name":"p","type":"text","pattern":"(["}]}))
        .unwrap_err();
        let paths: Vec<(&str, &str)> = errs.iter().map(|e| (e.path.as_str(), e.code)).collect();
        assert!(
            paths.contains(&("fields[1].name", "duplicate_name")),
            "{paths:?}"
        );
        assert!(
            paths.contains(&("fields[3].options[1].value", "duplicate_option")),
            "{paths:?}"
        );
        assert!(
            paths.contains(&("fields[4].target", "unknown_form")),
            "{paths:?}"
        );
        assert!(
            paths.contains(&("fields[5].min", "min_above_max")),
            "{paths:?}"
        );
        assert!(
            paths.contains(&("fields[6].pattern", "invalid_pattern")),
            "{paths:?}"
        );
    }

    #[test]
    fn reserved_names_are_refused() {
        let errs = check(
            json!({"name":"lead","label":{"en":"Lead"},"fields":[{"name":"owner","type":"text"}]}),
        )
        .unwrap_err();
        assert!(errs.iter().any(|e| e.path == "fields[0].name"), "{errs:?}");
        let form: Form = serde_json::from_value(
            json!({"name":"lead","fields":[{"name":"version","type":"text"}]}),
        )
        .unwrap();
        let errs = semantic(&form, &|_| true, "");
        assert_eq!(errs[0].code, "reserved_name");
    }

    #[test]
    fn schema_errors_name_the_json_path() {
        let errs =
            check(json!({"name":"lead","fields":[{"name":"a","type":"nonsense"}]})).unwrap_err();
        assert!(
            errs.iter().any(|e| e.path.starts_with("fields[0]")),
            "{errs:?}"
        );
        let errs = check(json!({"name":"Bad Name","fields":[]})).unwrap_err();
        assert!(errs.iter().any(|e| e.path == "name"), "{errs:?}");
    }

    #[test]
    fn pointer_becomes_path() {
        assert_eq!(
            pointer_to_path("/fields/2/options/0/value"),
            "fields[2].options[0].value"
        );
        assert_eq!(pointer_to_path(""), "");
    }
}
