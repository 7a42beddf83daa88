//! Formula fields: each one's rhai expression compiled when its form is loaded, computed
//! on every create and update (lines of subtables first, so an order's total can add up
//! its lines' amounts), stored like any other value.

use serde_json::{Map, Value};
use trellis_meta::form::{Field, FieldType, Form};
use trellis_meta::{FieldError, MetaError};
use trellis_rules::{Compiled, RuleError};

use crate::error::StoreError;

/// The compiled formulas of one form.
#[derive(Debug, Clone, Default)]
pub struct Formulas {
    /// (field, script) at the top level, in definition order.
    top: Vec<(Field, Compiled)>,
    /// (subtable, line field, script).
    lines: Vec<(String, Field, Compiled)>,
}

/// Compile one formula; `name` is how errors name it (`order.lines.amount`), `at` where in
/// the definition it sits (`fields[4].fields[2]`).
fn compile(name: &str, at: &str, f: &Field) -> Result<Compiled, MetaError> {
    let script = f.expression.as_deref().unwrap_or_default();
    trellis_rules::shared()
        .compile(name, script)
        .map_err(|e| MetaError::new(format!("{at}.expression"), e.kind.code(), e.to_string()))
}

impl Formulas {
    /// Compile every formula of a form; a script that does not compile is refused with its
    /// line and column.
    pub fn new(form: &Form) -> Result<Self, Vec<MetaError>> {
        let mut out = Self::default();
        let mut errs = Vec::new();
        for (i, f) in form.fields.iter().enumerate() {
            if f.kind == FieldType::Formula {
                match compile(
                    &format!("{}.{}", form.name, f.name),
                    &format!("fields[{i}]"),
                    f,
                ) {
                    Ok(c) => out.top.push((f.clone(), c)),
                    Err(e) => errs.push(e),
                }
            }
            if f.kind == FieldType::Subtable {
                for (j, lf) in f.fields.iter().enumerate() {
                    if lf.kind != FieldType::Formula {
                        continue;
                    }
                    let name = format!("{}.{}.{}", form.name, f.name, lf.name);
                    match compile(&name, &format!("fields[{i}].fields[{j}]"), lf) {
                        Ok(c) => out.lines.push((f.name.clone(), lf.clone(), c)),
                        Err(e) => errs.push(e),
                    }
                }
            }
        }
        if errs.is_empty() { Ok(out) } else { Err(errs) }
    }

    /// The fields formulas write: top-level formula fields, and subtables whose lines have
    /// formulas.
    pub fn outputs(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.lines.iter().map(|(sub, _, _)| sub.as_str()).collect();
        v.dedup();
        v.extend(self.top.iter().map(|(f, _)| f.name.as_str()));
        v
    }

    /// No formulas at all?
    pub fn is_empty(&self) -> bool {
        self.top.is_empty() && self.lines.is_empty()
    }

    /// Compute every formula of `record` in place (`prefix` names a record of a batch).
    pub fn apply(&self, record: &mut Map<String, Value>, prefix: &str) -> Result<(), StoreError> {
        let engine = trellis_rules::shared();
        for (sub, lf, script) in &self.lines {
            let Some(Value::Array(lines)) = record.get_mut(sub) else {
                continue;
            };
            for (j, line) in lines.iter_mut().enumerate() {
                let Value::Object(m) = line else { continue };
                let v = engine
                    .run(script, m, None)
                    .map_err(|e| failed(&format!("{prefix}{sub}[{j}].{}", lf.name), &e))?;
                m.insert(lf.name.clone(), shape(lf, v.value));
            }
        }
        for (f, script) in &self.top {
            let v = engine
                .run(script, record, None)
                .map_err(|e| failed(&format!("{prefix}{}", f.name), &e))?;
            record.insert(f.name.clone(), shape(f, v.value));
        }
        Ok(())
    }
}

/// The value as the field stores it: whole numbers for integers, rounded to the field's
/// precision for decimals and currencies.
fn shape(f: &Field, v: Value) -> Value {
    let Some(x) = v.as_f64() else { return v };
    match f.storage_type() {
        FieldType::Integer => Value::from(x.round() as i64),
        FieldType::Decimal | FieldType::Currency => {
            let p = f
                .precision
                .unwrap_or(if f.storage_type() == FieldType::Currency {
                    2
                } else {
                    6
                });
            let m = 10f64.powi(i32::try_from(p.min(12)).unwrap_or(6));
            serde_json::Number::from_f64((x * m).round() / m)
                .map(Value::Number)
                .unwrap_or(v)
        }
        _ => v,
    }
}

fn failed(field: &str, e: &RuleError) -> StoreError {
    StoreError::Validation(vec![FieldError::new(
        field,
        "formula",
        format!("the formula failed: {e}"),
        format!("公式计算失败：{e}"),
    )])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Form {
        serde_json::from_value(json!({"name": "order", "label": {"en": "Order"}, "fields": [
            {"name": "lines", "type": "subtable", "fields": [
                {"name": "quantity", "type": "integer"},
                {"name": "unit_price", "type": "currency"},
                {"name": "amount", "type": "formula", "result_type": "currency",
                 "expression": "record.quantity * record.unit_price"}]},
            {"name": "discount_pct", "type": "decimal"},
            {"name": "total", "type": "formula", "result_type": "currency", "precision": 2,
             "expression": "let s = 0.0; for l in record.lines { s += l.amount; } s * (1.0 - value_or(record.discount_pct, 0.0) / 100.0)"}]}))
        .unwrap()
    }

    #[test]
    fn lines_first_then_the_total() {
        let f = Formulas::new(&order()).unwrap();
        let mut r = json!({"lines": [{"quantity": 3, "unit_price": 10.5}, {"quantity": 1, "unit_price": 0.333}],
            "discount_pct": 10.0}).as_object().unwrap().clone();
        f.apply(&mut r, "").unwrap();
        assert_eq!(r["lines"][0]["amount"], json!(31.5));
        assert_eq!(r["total"], json!(28.65));
    }

    #[test]
    fn errors_name_the_field_and_the_place_in_the_script() {
        let mut bad = order();
        bad.fields[2].expression = Some("let x = ;".into());
        let errs = Formulas::new(&bad).unwrap_err();
        assert_eq!(errs[0].path, "fields[2].expression");
        assert!(errs[0].message.contains("line 1"), "{}", errs[0].message);
        let mut zero = order();
        zero.fields[2].expression = Some("1\n/ 0".into());
        let f = Formulas::new(&zero).unwrap();
        let mut r = Map::new();
        let StoreError::Validation(e) = f.apply(&mut r, "records[2].").unwrap_err() else {
            panic!("a validation error")
        };
        assert_eq!(
            (e[0].field.as_str(), e[0].code),
            ("records[2].total", "formula")
        );
        assert!(e[0].message.contains("line 2"), "{}", e[0].message);
    }
}
