//! Stage gates on select fields: which states a record may move to, and which fields must
//! hold a value for it to enter a state. Checked on every create and update, after rules
//! and formulas, against the record as it will be stored.

use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::form::{FieldType, Form};

fn empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn needs(field: &str, state: &str, required: &str) -> FieldError {
    FieldError::new(
        required.to_owned(),
        "required_for_stage",
        format!("{required} is required for {field} to be {state}"),
        format!("{field} 为 {state} 时必须填写 {required}"),
    )
}

impl Form {
    /// What keeps a record from its states: a move its field's transitions do not allow
    /// (`transition`, on the field), a field a state requires left empty
    /// (`required_for_stage`, on that field). `before` is the stored record (`None` on
    /// create: any state may be the first), `after` the record as it will be stored. A
    /// state with listed moves cannot be cleared; staying in a state re-checks only the
    /// required fields this write empties.
    pub fn stage_errors(
        &self,
        before: Option<&Map<String, Value>>,
        after: &Map<String, Value>,
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for f in self.fields.iter().filter(|f| f.kind == FieldType::Select) {
            let now = after.get(&f.name).and_then(Value::as_str);
            let was = before.and_then(|b| b.get(&f.name)).and_then(Value::as_str);
            let requires = |state: Option<&str>| {
                state
                    .and_then(|s| f.options.iter().find(|o| o.value == s))
                    .map(|o| o.requires.as_slice())
                    .unwrap_or_default()
            };
            if let Some(b) = before
                && was == now
            {
                // Staying in a state: only what this write empties is checked again.
                for r in requires(now) {
                    if empty(after.get(r)) && !empty(b.get(r)) {
                        errs.push(needs(&f.name, now.unwrap_or_default(), r));
                    }
                }
                continue;
            }
            if let (Some(was), Some(moves)) = (was, &f.transitions)
                && let Some(allowed) = moves.get(was)
                && now.is_none_or(|n| !allowed.iter().any(|a| a == n))
            {
                let to = if allowed.is_empty() {
                    "nowhere: it is final".to_owned()
                } else {
                    allowed.join(", ")
                };
                let to_zh = if allowed.is_empty() {
                    "无法再变更（终态）".to_owned()
                } else {
                    allowed.join("、")
                };
                let name = &f.name;
                let (en, zh) = match now {
                    Some(n) => (
                        format!(
                            "{name} cannot move from {was} to {n}; from {was} it may move to {to}"
                        ),
                        format!("{name} 不能从 {was} 变为 {n}；{was} 只能变为：{to_zh}"),
                    ),
                    None => (
                        format!(
                            "{name} cannot be cleared from {was}; from {was} it may move to {to}"
                        ),
                        format!("{name} 为 {was} 时不能清空；{was} 只能变为：{to_zh}"),
                    ),
                };
                errs.push(FieldError::new(name.clone(), "transition", en, zh));
                continue;
            }
            for r in requires(now) {
                if empty(after.get(r)) {
                    errs.push(needs(&f.name, now.unwrap_or_default(), r));
                }
            }
        }
        errs
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn opportunity() -> Form {
        serde_json::from_value(json!({"name": "opportunity", "label": {"en": "Opportunity"}, "fields": [
            {"name": "amount", "type": "currency"},
            {"name": "lost_reason", "type": "text"},
            {"name": "stage", "type": "select", "options": [
                {"value": "initial"}, {"value": "proposal", "requires": ["amount"]},
                {"value": "won", "closed": true, "requires": ["amount"]},
                {"value": "lost", "closed": true, "requires": ["lost_reason"]}],
             "transitions": {"initial": ["proposal", "lost"], "proposal": ["initial", "won", "lost"],
                "won": [], "lost": ["initial"]}}]}))
        .unwrap()
    }

    fn rec(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn codes(errs: &[FieldError]) -> Vec<(&str, &str)> {
        errs.iter().map(|e| (e.field.as_str(), e.code)).collect()
    }

    #[test]
    fn entering_a_state_needs_its_fields() {
        let f = opportunity();
        let before = rec(json!({"stage": "initial", "amount": null}));
        let errs = f.stage_errors(
            Some(&before),
            &rec(json!({"stage": "proposal", "amount": null})),
        );
        assert_eq!(codes(&errs), vec![("amount", "required_for_stage")]);
        assert!(errs[0].message.contains("proposal"), "{}", errs[0].message);
        let ok = rec(json!({"stage": "proposal", "amount": 1200}));
        assert!(f.stage_errors(Some(&before), &ok).is_empty());
        // On create too, and blank text counts as empty.
        let errs = f.stage_errors(None, &rec(json!({"stage": "lost", "lost_reason": "  "})));
        assert_eq!(codes(&errs), vec![("lost_reason", "required_for_stage")]);
        // Staying put checks only what this write empties.
        let stay = rec(json!({"stage": "proposal", "amount": null}));
        assert!(f.stage_errors(Some(&stay), &stay).is_empty());
        let errs = f.stage_errors(Some(&ok), &stay);
        assert_eq!(codes(&errs), vec![("amount", "required_for_stage")]);
    }

    #[test]
    fn moves_follow_the_transitions() {
        let f = opportunity();
        let won = rec(json!({"stage": "won", "amount": 5}));
        let errs = f.stage_errors(Some(&won), &rec(json!({"stage": "initial", "amount": 5})));
        assert_eq!(codes(&errs), vec![("stage", "transition")]);
        assert!(errs[0].message.contains("final"), "{}", errs[0].message);
        let initial = rec(json!({"stage": "initial", "amount": 5}));
        let errs = f.stage_errors(Some(&initial), &won);
        assert_eq!(codes(&errs), vec![("stage", "transition")]);
        assert!(
            errs[0].message.ends_with("proposal, lost"),
            "{}",
            errs[0].message
        );
        // A final state cannot be cleared to escape it.
        let errs = f.stage_errors(Some(&won), &rec(json!({"stage": null, "amount": 5})));
        assert_eq!(codes(&errs), vec![("stage", "transition")]);
        assert!(errs[0].message.contains("cleared"), "{}", errs[0].message);
        // A record without a state yet, or a create, may start anywhere.
        assert!(f.stage_errors(Some(&rec(json!({}))), &won).is_empty());
        assert!(f.stage_errors(None, &won).is_empty());
    }
}
