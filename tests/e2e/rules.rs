//! Rules: defined over the API, compiled when saved, run on every write.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, errors, lead_form};

fn rule(name: &str, kind: &str, script: &str, extra: Value) -> Value {
    let mut r = json!({"name": name, "label": {"en": name}, "form": "lead", "kind": kind, "script": script});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

#[tokio::test]
async fn rules_score_validate_and_route_records_as_they_are_written() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    // A script that does not compile is refused with its line.
    let (st, body) = app
        .post(
            "/api/v1/rules",
            rule("bad", "score", "let s = 1;\ns +", json!({"field": "score"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("script".to_owned(), "rule_syntax".to_owned())]
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{body}"
    );
    let (st, body) = app
        .post(
            "/api/v1/rules",
            rule("bad", "score", "1", json!({"field": "city"})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a score needs a number field: {body}"
    );
    // Scoring, on create and when the source changes.
    let score = "print(\"scoring\");\nlet s = if record.source == \"website\" { 60 } else { 10 };\ns + value_or(record.employees, 0) / 100";
    let (st, r) = app
        .post(
            "/api/v1/rules",
            rule(
                "lead_score",
                "score",
                score,
                json!({"field": "score", "watch": ["source", "employees"]}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let lead = app
        .create(
            "lead",
            json!({"company": "Acme", "source": "website", "employees": 1200, "score": 1}),
        )
        .await;
    assert_eq!(lead["score"], 72, "the rule wins over what was sent");
    let path = format!("/api/v1/data/lead/{}", lead["id"].as_str().unwrap());
    let (_, l) = app.patch(&path, json!({"source": "expo"})).await;
    assert_eq!(l["score"], 22);
    // Validation, field by field.
    let (st, _) = app
        .post("/api/v1/rules", rule("no_spam", "validate",
            "if value_or(record.email, \"\").ends_with(\"@spam.test\") { reject(\"email\", \"垃圾邮件地址\"); }", json!({}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, body) = app
        .post(
            "/api/v1/data/lead",
            json!({"company": "Spam", "email": "x@spam.test"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(errors(&body), vec![("email".to_owned(), "rule".to_owned())]);
    assert_eq!(body["errors"][0]["message"], "垃圾邮件地址");
    // Routing sets the owner of new records.
    let (_, u) = app
        .post(
            "/api/v1/users",
            json!({"email": "east@x.com", "password": "pass-word-1"}),
        )
        .await;
    let east = u["id"].as_str().unwrap().to_owned();
    let (st, _) = app
        .post(
            "/api/v1/rules",
            rule(
                "route",
                "route",
                &format!("if record.region == \"east\" {{ assign(\"{east}\"); }}"),
                json!({}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let routed = app
        .create("lead", json!({"company": "E", "region": "east"}))
        .await;
    assert_eq!(routed["owner"], json!(east));
    let kept = app
        .create("lead", json!({"company": "N", "region": "north"}))
        .await;
    assert_ne!(kept["owner"], json!(east));
    // The test endpoint runs a rule on a sample and writes nothing.
    let (st, t) = app
        .post(
            "/api/v1/rules/lead_score/test",
            json!({"record": {"source": "website", "employees": 300}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["result"], 63);
    assert_eq!(t["log"], json!(["scoring"]));
    let (_, list) = app.list("lead", &[("count", "true".into())]).await;
    assert_eq!(list["total"], 3);
    // A rule cannot store what a person could not: values are checked like any other.
    let (st, _) = app
        .post(
            "/api/v1/rules",
            rule(
                "bad_grade",
                "grade",
                "\"nowhere\"",
                json!({"field": "source"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, body) = app
        .post(
            "/api/v1/data/lead",
            json!({"company": "Z", "email": "z@ok.test"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "source");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("set by a rule"),
        "{body}"
    );
    let (st, _) = app.delete("/api/v1/rules/bad_grade").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // Deleting a rule stops it.
    let (st, _) = app.delete("/api/v1/rules/no_spam").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    app.create("lead", json!({"company": "Spam", "email": "y@spam.test"}))
        .await;
    let (_, rules) = app.get("/api/v1/rules").await;
    assert_eq!(rules["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn failing_rules_reject_or_are_recorded_and_nothing_hangs() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let (st, _) = app
        .post(
            "/api/v1/rules",
            rule("forever", "score", "loop { }", json!({"field": "score"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, body) = app.post("/api/v1/data/lead", json!({"company": "A"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("score".to_owned(), "rule_too_many_operations".to_owned())]
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("forever")
    );
    let (_, list) = app.list("lead", &[("count", "true".into())]).await;
    assert_eq!(list["total"], 0, "nothing half-written");
    // The same failure, kept: the write goes through and the error is recorded.
    let (st, _) = app
        .put(
            "/api/v1/rules/forever",
            rule(
                "forever",
                "score",
                "let x = 1;\nx / 0",
                json!({"field": "score", "on_error": "record"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let lead = app.create("lead", json!({"company": "B"})).await;
    assert_eq!(lead["score"], Value::Null);
    let (_, audit) = app.get("/api/v1/audit?action=rule.error").await;
    let e = &audit["data"][0];
    assert_eq!(e["target"], "forever");
    assert_eq!(e["detail"]["line"], 2);
    let (st, t) = app
        .post("/api/v1/rules/forever/test", json!({"record": {}}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["error"]["kind"], "rule_runtime");
    assert_eq!(t["error"]["line"], 2);
}
