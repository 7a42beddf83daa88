//! Workflow definitions over the API: checked against the forms, rules, roles and users,
//! versioned on every change.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, errors};

fn welcome() -> Value {
    json!({
        "name": "lead_hello", "label": {"en": "New lead", "zh-CN": "新线索"}, "form": "lead",
        "trigger": {"on": "created"},
        "condition": {"status": "new"},
        "params": {"first_contact": "24h"},
        "steps": [
            {"id": "todo", "type": "task", "title": "联系 {{ record.company }}", "assignee": "owner",
             "due": "$params.first_contact"},
            {"type": "notify", "to": "owner", "message": "New lead: {{ record.company }}"},
            {"type": "if", "condition": {"grade": "hot"}, "then": [
                {"type": "approval", "levels": [
                    {"approver": {"role": "sales_manager"}},
                    {"approver": {"user": "zhaojianguo@demo.trellis.dev"}, "when": {"budget": {"$gt": 500000}}}]}]}
        ]
    })
}

#[tokio::test]
async fn workflows_are_checked_and_every_change_is_a_version() {
    let app = TestApp::spawn_with(&["--demo"]).await;
    let (st, body) = app.post("/api/v1/workflows", welcome()).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 1);
    let (st, body) = app.post("/api/v1/workflows", welcome()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    // A change is the next version; the same definition again changes nothing.
    let mut changed = welcome();
    changed["params"]["first_contact"] = json!("12h");
    let (st, body) = app
        .put("/api/v1/workflows/lead_hello", changed.clone())
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    let (_, body) = app.put("/api/v1/workflows/lead_hello", changed).await;
    assert_eq!(body["version"], 2);
    let (_, versions) = app.get("/api/v1/workflows/lead_hello/versions").await;
    let v: Vec<i64> = versions["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["version"].as_i64().unwrap())
        .collect();
    assert_eq!(v, vec![2, 1]);
    assert_eq!(
        versions["data"][1]["definition"]["params"]["first_contact"],
        "24h"
    );
    // Mistakes name their place: a field, a filter, a user, a step type.
    for (bad, path, code) in [
        (
            json!({"type": "set", "values": {"nothing": 1}}),
            "steps[0].values.nothing",
            "unknown_field",
        ),
        (
            json!({"type": "wait", "until": {"nothing": 1}}),
            "steps[0].until.nothing",
            "unknown_field",
        ),
        (
            json!({"type": "task", "title": "x", "assignee": {"user": "ghost@nowhere.example"}}),
            "steps[0].assignee.user",
            "unknown_user",
        ),
        (
            json!({"type": "assign", "rule": "lead_score"}),
            "steps[0].rule",
            "wrong_kind",
        ),
    ] {
        let mut wf = welcome();
        wf["name"] = json!("bad");
        wf["steps"] = json!([bad]);
        let (st, body) = app.post("/api/v1/workflows", wf).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(errors(&body), vec![(path.to_owned(), code.to_owned())]);
    }
    let mut wf = welcome();
    wf["name"] = json!("bad");
    wf["steps"] = json!([{"type": "dance"}]);
    let (st, body) = app.post("/api/v1/workflows", wf).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, list) = app.get("/api/v1/workflows").await;
    assert!(
        !list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "bad"),
        "nothing half-stored"
    );
    // Deleted, its versions stay for the runs that use them.
    let (st, _) = app.delete("/api/v1/workflows/lead_hello").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app.get("/api/v1/workflows/lead_hello").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, versions) = app.get("/api/v1/workflows/lead_hello/versions").await;
    assert_eq!(versions["data"].as_array().unwrap().len(), 2);
    let (_, audit) = app.get("/api/v1/audit?action=workflow.").await;
    let mine: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "lead_hello")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        mine,
        vec!["workflow.delete", "workflow.update", "workflow.create"],
        "{audit}"
    );
}
