//! Stage gates on the CRM: opportunities move only along their stages, and entering a
//! stage needs its fields.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, errors};

async fn patch(app: &TestApp, form: &str, id: &str, body: Value) -> (StatusCode, Value) {
    app.patch(&format!("/api/v1/data/{form}/{id}"), body).await
}

#[tokio::test]
async fn opportunities_move_through_their_stages_with_what_each_needs() {
    let app = TestApp::spawn_with(&["--demo"]).await;
    let customer = app.ids("customer", json!({}), "id").await[0].clone();
    let opp = app
        .create(
            "opportunity",
            json!({"name": "ERP 升级项目", "customer": customer, "stage": "needs"}),
        )
        .await;
    let id = opp["id"].as_str().unwrap().to_owned();
    // Entering proposal needs an amount: the error names the amount and the stage.
    let (st, body) = patch(&app, "opportunity", &id, json!({"stage": "proposal"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("amount".to_owned(), "required_for_stage".to_owned())]
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("proposal"),
        "{body}"
    );
    let (_, now) = app.get(&format!("/api/v1/data/opportunity/{id}")).await;
    assert_eq!(now["stage"], "needs", "nothing was written");
    let (st, body) = patch(
        &app,
        "opportunity",
        &id,
        json!({"stage": "proposal", "amount": 360000}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // A skipped or backward move the transitions do not list is refused with the ways on.
    let (st, body) = patch(&app, "opportunity", &id, json!({"stage": "initial"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("stage".to_owned(), "transition".to_owned())]
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .ends_with("needs, negotiation, won, lost"),
        "{body}"
    );
    // Clearing a field the stage needed is fine once there; won is final.
    let (st, body) = patch(&app, "opportunity", &id, json!({"stage": "won"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = patch(&app, "opportunity", &id, json!({"stage": "lost"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("final"),
        "{body}"
    );
    // Lost needs a reason, on create too, in both languages.
    let (st, body) = app
        .post(
            "/api/v1/data/opportunity",
            json!({"name": "Lost deal", "customer": customer, "stage": "lost"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("lost_reason".to_owned(), "required_for_stage".to_owned())]
    );
    let (st, body) = app
        .post(
            "/api/v1/data/opportunity",
            json!({"name": "Lost deal", "customer": customer, "stage": "lost",
                "lost_reason": "预算削减"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    // A converted lead is final; a lost one may be reopened.
    let converted = app.ids("lead", json!({"status": "converted"}), "id").await;
    let (st, body) = patch(&app, "lead", &converted[0], json!({"status": "new"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let lost = app.ids("lead", json!({"status": "lost"}), "id").await;
    let (st, body) = patch(&app, "lead", &lost[0], json!({"status": "contacted"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
}
