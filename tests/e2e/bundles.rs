//! Bundles: the CRM and the recruiting app install idempotently and export exactly.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::TestApp;

/// Assemble a bundle folder the way `trellis bundle install` does.
pub fn read_bundle(dir: &str) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("bundle.json")).unwrap()).unwrap();
    for sub in ["forms", "roles", "rules", "workflows"] {
        let Ok(rd) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        files.sort();
        doc[sub] = Value::Array(
            files
                .iter()
                .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
                .collect(),
        );
    }
    doc
}

async fn export(app: &TestApp, name: &str) -> String {
    let r = app
        .client
        .get(app.url(&format!("/api/v1/bundles/{name}/export")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

#[tokio::test]
async fn the_crm_installs_idempotently_and_round_trips_byte_for_byte() {
    let app = TestApp::spawn().await;
    let crm = read_bundle("examples/crm");
    let (st, r) = app.post("/api/v1/bundles?dry_run=true", crm.clone()).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["applied"], false);
    let (_, forms) = app.get("/api/v1/forms").await;
    assert_eq!(
        forms["data"].as_array().unwrap().len(),
        0,
        "a dry run installs nothing"
    );
    let (st, r) = app.post("/api/v1/bundles", crm.clone()).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["forms"].as_array().unwrap().len(), 12);
    assert!(
        r["forms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "create")
    );
    assert_eq!(r["roles"].as_array().unwrap().len(), 7, "{r}");
    assert_eq!(r["rules"].as_array().unwrap().len(), 6, "{r}");
    assert_eq!(r["workflows"].as_array().unwrap().len(), 14, "{r}");
    let first = export(&app, "crm").await;
    let exported: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(exported["roles"].as_array().unwrap().len(), 7);
    assert_eq!(exported["rules"].as_array().unwrap().len(), 6);
    assert_eq!(exported["workflows"].as_array().unwrap().len(), 14);
    let (_, r) = app.post("/api/v1/bundles", crm.clone()).await;
    assert_eq!(r["changed"], false, "installing twice changes nothing: {r}");
    let (_, versions) = app.get("/api/v1/forms/lead/versions").await;
    assert_eq!(versions["data"].as_array().unwrap().len(), 1);

    let fresh = TestApp::spawn().await;
    let (st, _) = fresh
        .post("/api/v1/bundles", serde_json::from_str(&first).unwrap())
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        export(&fresh, "crm").await,
        first,
        "export → install → export is identical"
    );

    // An upgrade adds a field through a planned migration; a downgrade is refused.
    let mut v2 = crm.clone();
    v2["version"] = json!("1.5.0");
    let lead = v2["forms"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "lead")
        .unwrap();
    lead["fields"].as_array_mut().unwrap().push(
        json!({"name": "wechat", "type": "text", "label": {"en": "WeChat", "zh-CN": "微信"}}),
    );
    // The upgrade also hides the new field from reps.
    let rep = v2["roles"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["name"] == "sales_rep")
        .unwrap();
    rep["forms"]["lead"]["fields"]["wechat"] = json!("hidden");
    let (st, r) = app.post("/api/v1/bundles", v2).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let changed: Vec<&Value> = r["roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "unchanged")
        .collect();
    assert_eq!(
        changed,
        vec![&json!({"role": "sales_rep", "action": "update"})]
    );
    let (_, role) = app.get("/api/v1/roles/sales_rep").await;
    assert_eq!(role["forms"]["lead"]["fields"]["wechat"], "hidden");
    assert_eq!(role["bundle"], "crm");
    // A bundle's role filter must fit the forms.
    let mut bad = crm.clone();
    bad["version"] = json!("1.6.0");
    bad["roles"][0]["forms"] = json!({"lead": {"read": "all", "filter": {"ghost": 1}}});
    let (st, refused) = app.post("/api/v1/bundles", bad).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        refused["errors"][0]["field"],
        "roles[0].forms.lead.filter.ghost"
    );
    let lead = r["forms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["form"] == "lead")
        .unwrap();
    assert_eq!(lead["action"], "upgrade");
    assert_eq!(lead["plan"]["steps"][0]["op"], "add_field");
    let (st, _) = app.post("/api/v1/bundles", crm).await;
    assert_eq!(st, StatusCode::CONFLICT, "1.1.0 after 1.5.0 is a downgrade");
}

#[tokio::test]
async fn a_second_app_shows_the_engine_is_general() {
    let app = TestApp::spawn().await;
    let (st, r) = app
        .post("/api/v1/bundles", read_bundle("examples/recruiting"))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let job = app.create("job_opening", json!({"title": "Rust engineer", "department": app_first_option(&app, "job_opening", "department").await, "headcount": 2, "status": "open"})).await;
    let cand = app
        .create(
            "candidate",
            json!({"name": "Li Wei", "email": "li.wei@example.com"}),
        )
        .await;
    let appl = app
        .create(
            "application",
            json!({"candidate": cand["id"], "job": job["id"], "stage": "applied"}),
        )
        .await;
    assert!(appl["application_no"].as_str().unwrap().starts_with("APP-"));
}

async fn app_first_option(app: &TestApp, form: &str, field: &str) -> Value {
    let (_, def) = app.get(&format!("/api/v1/forms/{form}")).await;
    def["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == field)
        .unwrap()["options"][0]["value"]
        .clone()
}

#[tokio::test]
async fn demo_mode_starts_a_living_crm() {
    let app = TestApp::spawn_with(&["--demo"]).await;
    let (_, leads) = app.list("lead", &[("count", "true".into())]).await;
    assert!(leads["total"].as_u64().unwrap() >= 20, "{leads}");
    let (_, orders) = app
        .list(
            "order",
            &[("limit", "1".into()), ("expand", "customer".into())],
        )
        .await;
    assert!(orders["data"][0]["order_no"].is_string());
    assert!(
        orders["data"][0]["total"].as_f64().unwrap() > 0.0,
        "order totals are computed: {orders}"
    );
    assert!(orders["data"][0]["expand"]["customer"]["name"].is_string());
    let (_, teams) = app.get("/api/v1/teams").await;
    assert!(teams["data"].as_array().unwrap().len() >= 3);
    let rep = app
        .login("wangfang@demo.trellis.dev", "demo-pass-2026")
        .await;
    assert!(!rep.is_empty());
    // The CRM's rules score, grade and check leads.
    let lead = app
        .create(
            "lead",
            json!({"company": "苏州精工机械有限公司", "contact_name": "王工", "title": "采购总监",
                "phone": "138 1234 5678", "source": "website", "industry": "manufacturing",
                "employees": 1500, "downloaded_pricing": true, "page_visits": 7}),
        )
        .await;
    assert_eq!(
        (lead["score"].as_i64(), lead["grade"].as_str()),
        (Some(100), Some("hot"))
    );
    let (st, body) = app
        .post(
            "/api/v1/data/lead",
            json!({"company": "X", "contact_name": "Y", "source": "expo", "phone": "12-34"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "phone");
    assert_eq!(body["errors"][0]["code"], "rule");
    let path = format!("/api/v1/data/lead/{}", lead["id"].as_str().unwrap());
    let (_, cooled) = app
        .patch(
            &path,
            json!({"source": "expo", "downloaded_pricing": false}),
        )
        .await;
    assert_eq!(cooled["grade"], "warm", "{cooled}");
    // The demo normalizes city spellings.
    let ids = app.ids("lead", json!({"city": "北京市"}), "").await;
    assert!(ids.len() >= 2);
}
