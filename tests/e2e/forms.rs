//! Form definitions and online schema change.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, errors};

fn product(fields: Value) -> Value {
    json!({"name": "product", "label": {"en": "Product", "zh-CN": "产品"}, "fields": fields})
}

#[tokio::test]
async fn a_populated_form_changes_five_ways_and_keeps_every_value() {
    let app = TestApp::spawn().await;
    app.form(product(json!([
        {"name": "name", "type": "text", "required": true},
        {"name": "sku", "type": "text"},
        {"name": "stock", "type": "integer"},
        {"name": "price", "type": "text"},
        {"name": "notes", "type": "textarea"}
    ])))
    .await;
    let mut originals = Vec::new();
    for i in 0..40 {
        let rec = json!({"name": format!("P{i}"), "sku": format!("SKU-{i}"), "stock": i * 3, "price": format!("{}.5", i + 1), "notes": if i % 4 == 0 { Value::Null } else { json!(format!("note {i}")) }});
        let created = app.create("product", rec.clone()).await;
        originals.push((created["id"].as_str().unwrap().to_owned(), rec));
    }
    let new_def = product(json!([
        {"name": "name", "type": "text", "required": true, "label": {"en": "Product name", "zh-CN": "产品名称"}},
        {"name": "sku", "type": "text", "unique": true},
        {"name": "stock", "type": "decimal"},
        {"name": "price", "type": "currency"},
        {"name": "category", "type": "select", "options": [{"value": "hw"}, {"value": "sw"}], "default": "hw"}
    ]));
    // 1 relabel, 2 add with default, 3 hide (notes), 4 retype integer → decimal, 5 retype text → currency, plus a unique index.
    let (st, plan) = app
        .put("/api/v1/forms/product?dry_run=true", new_def.clone())
        .await;
    assert_eq!(st, StatusCode::OK, "{plan}");
    assert_eq!(plan["applied"], false);
    let ops: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["op"].as_str().unwrap())
        .collect();
    for op in [
        "relabel",
        "add_field",
        "hide_field",
        "retype",
        "create_index",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    let (_, still) = app.get("/api/v1/forms/product").await;
    assert_eq!(
        still["fields"][2]["type"], "integer",
        "a dry run changes nothing"
    );

    let (st, plan) = app.put("/api/v1/forms/product", new_def.clone()).await;
    assert_eq!(st, StatusCode::OK, "{plan}");
    assert_eq!(plan["applied"], true);
    let (_, list) = app.list("product", &[("limit", "100".into())]).await;
    for (id, rec) in &originals {
        let row = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == json!(id))
            .unwrap();
        assert_eq!(row["name"], rec["name"]);
        assert_eq!(row["sku"], rec["sku"]);
        assert_eq!(
            row["stock"].as_f64().unwrap(),
            rec["stock"].as_f64().unwrap()
        );
        let price: f64 = rec["price"].as_str().unwrap().parse().unwrap();
        assert_eq!(row["price"].as_f64().unwrap(), price);
        assert_eq!(row["category"], "hw", "backfilled default");
        assert!(row.get("notes").is_none(), "hidden");
    }
    // A new field is in the OpenAPI document without a restart.
    let (_, doc) = app.get("/api/v1/openapi.json").await;
    assert!(doc["components"]["schemas"]["ProductRecord"]["properties"]["category"].is_object());
    assert!(
        doc["components"]["schemas"]["ProductRecord"]["properties"]
            .get("notes")
            .is_none()
    );

    // Bringing the hidden field back restores its data.
    let mut back = new_def.clone();
    back["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "notes", "type": "textarea"}));
    let (st, plan) = app.put("/api/v1/forms/product", back).await;
    assert_eq!(st, StatusCode::OK, "{plan}");
    let (_, list) = app.list("product", &[("limit", "100".into())]).await;
    for (id, rec) in &originals {
        let row = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == json!(id))
            .unwrap();
        assert_eq!(row["notes"], rec["notes"], "restored");
    }
    let (_, versions) = app.get("/api/v1/forms/product/versions").await;
    assert_eq!(
        versions["data"].as_array().unwrap().len(),
        3,
        "every published version is kept"
    );
}

#[tokio::test]
async fn a_hidden_relation_comes_back_with_its_index_and_values() {
    let app = TestApp::spawn().await;
    app.form(json!({"name": "customer", "label": {"en": "Customer"}, "fields": [{"name": "name", "type": "text"}]})).await;
    let with = json!({"name": "deal", "label": {"en": "Deal"}, "fields": [{"name": "title", "type": "text"}, {"name": "customer", "type": "relation", "target": "customer"}]});
    let without = json!({"name": "deal", "label": {"en": "Deal"}, "fields": [{"name": "title", "type": "text"}]});
    app.form(with.clone()).await;
    let c = app.create("customer", json!({"name": "Acme"})).await;
    let d = app
        .create("deal", json!({"title": "D", "customer": c["id"]}))
        .await;
    let (st, body) = app.put("/api/v1/forms/deal", without).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = app.put("/api/v1/forms/deal", with).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (_, got) = app
        .get(&format!("/api/v1/data/deal/{}", d["id"].as_str().unwrap()))
        .await;
    assert_eq!(got["customer"], c["id"]);
}

#[tokio::test]
async fn a_lossy_change_is_refused_with_the_rows_that_block_it() {
    let app = TestApp::spawn().await;
    app.form(product(json!([{"name": "name", "type": "text"}, {"name": "qty", "type": "text"}, {"name": "code", "type": "text"}]))).await;
    let ok = app
        .create("product", json!({"name": "a", "qty": "12", "code": "X"}))
        .await;
    let bad = app
        .create(
            "product",
            json!({"name": "b", "qty": "twelve", "code": "X"}),
        )
        .await;
    let (st, body) = app.put("/api/v1/forms/product", product(json!([{"name": "name", "type": "text"}, {"name": "qty", "type": "integer"}, {"name": "code", "type": "text"}]))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "qty");
    assert_eq!(body["errors"][0]["code"], "lossy_change");
    assert_eq!(body["errors"][0]["rows"][0]["id"], bad["id"]);
    assert_eq!(body["errors"][0]["rows"][0]["value"], "twelve");
    // Making a field unique over duplicates, or required over blanks, is refused too.
    let (st, body) = app.put("/api/v1/forms/product", product(json!([{"name": "name", "type": "text", "required": true}, {"name": "qty", "type": "text"}, {"name": "code", "type": "text", "unique": true}]))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("code".to_owned(), "values_violate".to_owned())]
    );
    let (_, rec) = app
        .get(&format!(
            "/api/v1/data/product/{}",
            ok["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rec["qty"], "12", "nothing changed");
    // Fix the blocking row; now it converts.
    app.patch(
        &format!("/api/v1/data/product/{}", bad["id"].as_str().unwrap()),
        json!({"qty": "7"}),
    )
    .await;
    let (st, body) = app.put("/api/v1/forms/product", product(json!([{"name": "name", "type": "text"}, {"name": "qty", "type": "integer"}, {"name": "code", "type": "text"}]))).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (_, rec) = app
        .get(&format!(
            "/api/v1/data/product/{}",
            bad["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rec["qty"], 7);
    let (_, cols) = app.get("/api/v1/forms/product/columns").await;
    assert!(
        cols["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["state"] == "retired" && c["field"] == "qty"),
        "the old column is kept: {cols}"
    );
}

#[tokio::test]
async fn definitions_are_checked_before_anything_is_written() {
    let app = TestApp::spawn().await;
    let (st, body) = app
        .post(
            "/api/v1/forms",
            json!({"name": "x", "label": {"en": "X"}, "fields": [
        {"name": "a", "type": "text"}, {"name": "a", "type": "text"},
        {"name": "owner", "type": "text"},
        {"name": "c", "type": "relation", "target": "ghost"},
        {"name": "s", "type": "select", "options": [{"value": "v"}, {"value": "v"}]}]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Vec<String> = errors(&body).into_iter().map(|e| e.0).collect();
    assert!(
        fields.iter().any(|f| f.starts_with("fields[2]")),
        "{fields:?}"
    );
    let (st, body) = app
        .post(
            "/api/v1/forms",
            json!({"name": "x", "label": {"en": "X"}, "fields": [
        {"name": "a", "type": "text"}, {"name": "a", "type": "text"},
        {"name": "c", "type": "relation", "target": "ghost"},
        {"name": "s", "type": "select", "options": [{"value": "v"}, {"value": "v"}]}]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let mut got = errors(&body);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("fields[1].name".to_owned(), "duplicate_name".to_owned()),
            ("fields[2].target".to_owned(), "unknown_form".to_owned()),
            (
                "fields[3].options[1].value".to_owned(),
                "duplicate_option".to_owned()
            ),
        ]
    );
    let (_, forms) = app.get("/api/v1/forms").await;
    assert_eq!(
        forms["data"].as_array().unwrap().len(),
        0,
        "nothing written"
    );
    let (st, _) = app.post("/api/v1/forms", json!({"name": "Robert'); DROP", "label": {"en": "X"}, "fields": [{"name": "a", "type": "text"}]})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // A form with records is only deleted with purge.
    app.form(json!({"name": "t", "label": {"en": "T"}, "fields": [{"name": "a", "type": "text"}]}))
        .await;
    app.create("t", json!({"a": "1"})).await;
    let (st, _) = app.delete("/api/v1/forms/t").await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = app.delete("/api/v1/forms/t?purge=true").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app.get("/api/v1/data/t").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
