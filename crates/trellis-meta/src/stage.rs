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

impl Form {
    /// What keeps a record from its states: a move its field's transitions do not allow
    /// (`transition`, on the field), a field a state requires left empty
    /// (`required_for_stage`, on that field). `before` is the stored record (`None` on
    /// create: any state may be the first), `after` the record as it will be stored.
    pub fn stage_errors(
        &self,
        before: Option<&Map<String, Value>>,
        after: &Map<String, Value>,
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for f in self.fields.iter().filter(|f| f.kind == FieldType::Select) {
            let Some(now) = after.get(&f.name).and_then(Value::as_str) else {
                continue;
            };
            let was = before.and_then(|b| b.get(&f.name)).and_then(Value::as_str);
            if before.is_some() && was == Some(now) {
                // Staying in a state is no entry; what it requires was checked on entry.
                continue;
            }
            if let (Some(was), Some(moves)) = (was, &f.transitions)
                && let Some(allowed) = moves.get(was)
                && !allowed.iter().any(|a| a == now)
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
                errs.push(FieldError::new(
                    f.name.clone(),
                    "transition",
                    format!(
                        "{} cannot move from {was} to {now}; from {was} it may move to {to}",
                        f.name
                    ),
                    format!(
                        "{} 不能从 {was} 变为 {now}；{was} 只能变为：{to_zh}",
                        f.name
                    ),
                ));
                continue;
            }
            let Some(opt) = f.options.iter().find(|o| o.value == now) else {
                continue;
            };
            for r in &opt.requires {
                if empty(after.get(r)) {
                    errs.push(FieldError::new(
                        r.clone(),
                        "required_for_stage",
                        format!("{r} is required for {} to be {now}", f.name),
                        format!("{} 为 {now} 时必须填写 {r}", f.name),
                    ));
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
        // Staying put re-checks nothing.
        let stay = rec(json!({"stage": "proposal", "amount": null}));
        assert!(f.stage_errors(Some(&stay), &stay).is_empty());
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
        // A record without a state yet, or a create, may start anywhere.
        assert!(f.stage_errors(Some(&rec(json!({}))), &won).is_empty());
        assert!(f.stage_errors(None, &won).is_empty());
    }
}
