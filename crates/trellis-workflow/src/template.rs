//! Templates in workflow steps (titles, messages, e-mails, values): minijinja over the
//! record, the workflow's parameters, the trigger and what earlier steps decided.

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::error::{Result, WorkflowError};

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        // A misspelt variable is an error in the run log, not a silently empty e-mail.
        e.set_undefined_behavior(UndefinedBehavior::Strict);
        e.set_fuel(Some(50_000));
        e
    })
}

/// Render a text template.
pub fn render(what: &str, tpl: &str, ctx: &Value) -> Result<String> {
    if !tpl.contains("{{") && !tpl.contains("{%") {
        return Ok(tpl.to_owned());
    }
    env()
        .render_str(tpl, minijinja::value::Serde(ctx))
        .map_err(|e| WorkflowError::step(format!("{what}: the template does not render: {e:#}")))
}

/// A value: a string that is one `{{ expression }}` keeps the expression's type (a number
/// stays a number, null stays null); other strings render as text; objects and arrays are
/// rendered member by member; anything else is itself.
pub fn value(what: &str, v: &Value, ctx: &Value) -> Result<Value> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
                && !inner.contains("{{")
                && !inner.contains("}}")
            {
                let expr = env().compile_expression(inner.trim()).map_err(|e| {
                    WorkflowError::step(format!("{what}: the expression does not parse: {e:#}"))
                })?;
                let out = expr.eval(minijinja::value::Serde(ctx)).map_err(|e| {
                    WorkflowError::step(format!("{what}: the expression fails: {e:#}"))
                })?;
                if out.is_undefined() || out.is_none() {
                    return Ok(Value::Null);
                }
                return serde_json::to_value(&out)
                    .map_err(|e| WorkflowError::step(format!("{what}: {e}")));
            }
            render(what, s, ctx).map(Value::String)
        }
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, x) in m {
                out.insert(k.clone(), value(&format!("{what}.{k}"), x, ctx)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| value(&format!("{what}[{i}]"), x, ctx))
            .collect::<Result<Vec<_>>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_values_and_text() {
        let ctx = json!({"record": {"amount": 1200.5, "company": "华为", "none": null}});
        assert_eq!(
            value("v", &json!("{{ record.amount }}"), &ctx).ok(),
            Some(json!(1200.5))
        );
        assert_eq!(
            value("v", &json!("{{ record.none }}"), &ctx).ok(),
            Some(Value::Null)
        );
        assert_eq!(
            value("v", &json!("客户 {{ record.company }}"), &ctx).ok(),
            Some(json!("客户 华为"))
        );
        assert_eq!(
            value("v", &json!({"a": ["{{ record.amount * 2 }}"]}), &ctx).ok(),
            Some(json!({"a": [2401.0]}))
        );
    }

    #[test]
    fn a_misspelt_variable_fails_with_the_place() {
        let ctx = json!({"record": {}});
        let e = render("steps[1].subject", "Hi {{ recrod.name }}", &ctx)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("steps[1].subject: the template does not render"),
            "{e}"
        );
    }
}
