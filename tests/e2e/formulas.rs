//! Formula fields: computed on every write, lines first, refused when they do not compile.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, errors};

fn order_form() -> serde_json::Value {
    json!({"name": "order", "label": {"en": "Order"}, "fields": [
        {"name": "lines", "type": "subtable", "fields": [
            {"name": "item", "type": "text"},
            {"name": "quantity", "type": "integer", "min": 1},
            {"name": "unit_price", "type": "currency"},
            {"name": "amount", "type": "formula", "result_type": "currency",
             "expression": "record.quantity * record.unit_price"}]},
        {"name": "discount_pct", "type": "decimal"},
        {"name": "per_head", "type": "formula", "result_type": "decimal",
         "expression": "let n = value_or(record.heads, 1);\n100.0 / n"},
        {"name": "heads", "type": "integer"},
        {"name": "total", "type": "formula", "result_type": "currency", "precision": 2,
         "expression": "let s = 0.0; for l in value_or(record.lines, []) { s += l.amount; } s * (1.0 - value_or(record.discount_pct, 0.0) / 100.0)"}]})
}

#[tokio::test]
async fn formulas_are_computed_on_create_and_follow_their_inputs() {
    let app = TestApp::spawn().await;
    app.form(order_form()).await;
    let o = app
        .create(
            "order",
            json!({"lines": [
            {"item": "螺丝刀", "quantity": 3, "unit_price": 19.9},
            {"item": "扳手", "quantity": 1, "unit_price": 45.0}]}),
        )
        .await;
    assert_eq!(o["lines"][0]["amount"], 59.7);
    assert_eq!(o["total"], 104.7);
    let path = format!("/api/v1/data/order/{}", o["id"].as_str().unwrap());
    let (st, o2) = app.patch(&path, json!({"discount_pct": 10})).await;
    assert_eq!(st, StatusCode::OK, "{o2}");
    assert_eq!(o2["total"], 94.23);
    let (_, got) = app.get(&path).await;
    assert_eq!(got["total"], 94.23, "stored, not only answered");
    let (st, o3) = app
        .patch(
            &path,
            json!({"lines": [{"item": "螺丝刀", "quantity": 10, "unit_price": 19.9}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{o3}");
    assert_eq!(o3["lines"][0]["amount"], 199.0);
    assert_eq!(o3["total"], 179.1);
    let (_, h) = app.get(&format!("{path}/history")).await;
    let last = h["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["changes"]["total"],
        json!({"before": 94.23, "after": 179.1})
    );
    // Nobody writes a formula field by hand.
    let (st, body) = app.patch(&path, json!({"total": 1})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("total".to_owned(), "read_only".to_owned())]
    );
    // A formula that fails names its field, the script line and the reason; nothing is written.
    let (st, body) = app.patch(&path, json!({"heads": 0})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("per_head".to_owned(), "formula".to_owned())]
    );
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("order.per_head") && msg.contains("not a number"),
        "{msg}"
    );
    let (_, after) = app.get(&path).await;
    assert_eq!(after["version"], o3["version"]);
}

#[tokio::test]
async fn a_formula_that_does_not_compile_is_refused_with_its_line() {
    let app = TestApp::spawn().await;
    let mut form = order_form();
    form["fields"][4]["expression"] = json!("let s = 0.0;\nfor l in record.lines { s += ; }\ns");
    let (st, body) = app.post("/api/v1/forms", form).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "fields[4].expression");
    assert_eq!(body["errors"][0]["code"], "rule_syntax");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{body}"
    );
    let (_, forms) = app.get("/api/v1/forms").await;
    assert_eq!(
        forms["data"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
}
