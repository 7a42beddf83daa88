//! The CRM's workflows end to end: each one driven through the record API on the demo,
//! with e-mail delivered to a local SMTP sink and webhooks to a local receiver.
//! Durations come from workflow parameters, set to seconds here.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::harness::{TestApp, on_postgres};
use crate::sinks::{HookReceiver, SmtpSink};

const DEMO_PASSWORD: &str = "demo-pass-2026";

/// The demo CRM, its e-mail going to `smtp`, polling fast and retrying webhooks quickly.
async fn crm(smtp: &SmtpSink) -> (TestApp, HashMap<String, String>) {
    let app = TestApp::spawn_with(&fast(smtp)).await;
    let ids = app.user_ids().await;
    (app, ids)
}

fn fast(smtp: &SmtpSink) -> Vec<&'static str> {
    let port: &'static str = Box::leak(smtp.port.to_string().into_boxed_str());
    vec![
        "--demo",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        port,
        "--workflow-poll-ms",
        "50",
        "--webhook-retry-base-ms",
        "200",
        // A killed server's claims run out quickly.
        "--workflow-lease-secs",
        "5",
    ]
}

/// Change some parameters of a workflow (a new version).
async fn params(app: &TestApp, wf: &str, p: Value) {
    let (st, mut doc) = app.get(&format!("/api/v1/workflows/{wf}")).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    for (k, v) in p.as_object().unwrap() {
        doc["params"][k] = v.clone();
    }
    put_workflow(app, doc).await;
}

async fn put_workflow(app: &TestApp, mut doc: Value) {
    let m = doc.as_object_mut().unwrap();
    m.remove("version");
    m.remove("bundle");
    let name = doc["name"].as_str().unwrap().to_owned();
    let (st, body) = app.put(&format!("/api/v1/workflows/{name}"), doc).await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

/// Poll until `f` answers something, or fail after `secs`.
async fn eventually<T, F, Fut>(what: &str, secs: u64, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs of a workflow on a record.
async fn runs(app: &TestApp, wf: &str, record: &str) -> Vec<Value> {
    let (st, body) = app
        .get(&format!("/api/v1/workflows/{wf}/runs?record={record}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// The one run of a workflow on a record, once it has ended with `status`.
async fn ended(app: &TestApp, wf: &str, record: &str, status: &str) -> Value {
    eventually(&format!("{wf} to end {status}"), 20, || async {
        let rs = runs(app, wf, record).await;
        if let Some(r) = rs.iter().find(|r| r["status"] == "failed")
            && status != "failed"
        {
            let id = r["id"].as_str().unwrap();
            let (_, detail) = app.get(&format!("/api/v1/runs/{id}")).await;
            panic!("{wf} failed: {detail}");
        }
        rs.into_iter().find(|r| r["status"] == status)
    })
    .await
}

/// Tasks of a user (any status) about a record.
async fn tasks(app: &TestApp, user: &str, record: &str) -> Vec<Value> {
    let (st, body) = app
        .get(&format!(
            "/api/v1/tasks?assignee={user}&record={record}&status=any"
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

async fn login(app: &TestApp, name: &str) -> String {
    app.login(&format!("{name}@demo.trellis.dev"), DEMO_PASSWORD)
        .await
}

async fn notices(app: &TestApp, token: &str) -> Value {
    let (st, body) = app
        .call_as(Some(token), Method::GET, "/api/v1/notifications", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn patch(app: &TestApp, form: &str, rid: &str, body: Value) -> Value {
    let (st, out) = app.patch(&format!("/api/v1/data/{form}/{rid}"), body).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    out
}

async fn first(app: &TestApp, form: &str) -> String {
    let (st, body) = app.list(form, &[("limit", "1".into())]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    id(&body["data"][0])
}

fn warm_lead(company: &str, email: &str) -> Value {
    // website 30 + it 15 + 200 staff 15 = 60: warm.
    json!({"company": company, "contact_name": "张伟", "email": email, "source": "website",
           "industry": "it", "region": "north", "employees": 300})
}

#[tokio::test]
async fn a_new_lead_gets_a_first_contact_task_a_notice_and_a_welcome_email() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let lead = app
        .create(
            "lead",
            warm_lead("北京星辰科技有限公司", "zhangwei@xingchen.example"),
        )
        .await;
    let owner = lead["owner"].as_str().unwrap().to_owned();
    assert!(owner == ids["wanglei"] || owner == ids["liuyang"], "{lead}");
    let run = ended(&app, "lead_welcome", &id(&lead), "done").await;

    let t = tasks(&app, &owner, &id(&lead)).await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(
        t[0]["title"]
            .as_str()
            .unwrap()
            .contains("北京星辰科技有限公司")
    );
    let due = chrono::DateTime::parse_from_rfc3339(t[0]["due_at"].as_str().unwrap()).unwrap();
    let hours = (due.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.0..=24.1).contains(&hours), "due in {hours} h");

    let name = if owner == ids["wanglei"] {
        "wanglei"
    } else {
        "liuyang"
    };
    let token = login(&app, name).await;
    let n = notices(&app, &token).await;
    assert!(n["unread"].as_i64().unwrap() >= 1, "{n}");
    assert!(
        n["data"][0]["message"]
            .as_str()
            .unwrap()
            .contains("北京星辰科技有限公司")
    );
    // The owner sees the task as theirs.
    let (_, mine) = app
        .call_as(Some(&token), Method::GET, "/api/v1/tasks", None)
        .await;
    assert!(
        mine["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["record_id"] == lead["id"])
    );

    // A warm lead is nurtured too: the welcome is the one that thanks.
    let thanks = || {
        smtp.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.contains("zhangwei@xingchen.example")))
            .filter(|m| {
                m.header("Subject")
                    .unwrap_or_default()
                    .contains("Thank you")
            })
            .collect::<Vec<_>>()
    };
    let welcome = eventually("the welcome e-mail", 10, || async {
        let v = thanks();
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(welcome.len(), 1);
    assert!(welcome[0].header("Subject").unwrap().contains("张伟"));
    assert!(welcome[0].body().contains("Dear 张伟"));
    // The message's key is its Message-ID, as the run log shows.
    let (_, detail) = app.get(&format!("/api/v1/runs/{}", id(&run))).await;
    let step = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "email")
        .unwrap();
    let key = step["detail"]["message"].as_str().unwrap();
    assert_eq!(
        welcome[0].header("Message-ID").unwrap(),
        format!("<{key}@trellis>")
    );
}

#[tokio::test]
async fn a_lead_still_new_after_the_delay_is_escalated_and_one_taken_up_is_not() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    params(&app, "lead_escalation", json!({"escalate_after": "2s"})).await;
    let mut a = warm_lead("天津远航物流", "a@yuanhang.example");
    a["owner"] = json!(ids["wanglei"]);
    let a = app.create("lead", a).await;
    let mut b = warm_lead("天津海港集团", "b@haigang.example");
    b["owner"] = json!(ids["wanglei"]);
    let b = app.create("lead", b).await;
    patch(&app, "lead", &id(&b), json!({"status": "contacted"})).await;

    ended(&app, "lead_escalation", &id(&a), "done").await;
    ended(&app, "lead_escalation", &id(&b), "skipped").await;
    let t = tasks(&app, &ids["liqiang"], &id(&a)).await;
    assert_eq!(t.len(), 1, "the rep's manager gets one task: {t:?}");
    assert!(t[0]["title"].as_str().unwrap().contains("天津远航物流"));
    assert!(tasks(&app, &ids["liqiang"], &id(&b)).await.is_empty());
    let director = login(&app, "zhaojianguo").await;
    let n = notices(&app, &director).await;
    assert!(
        n["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["message"].as_str().unwrap().contains("天津远航物流")),
        "{n}"
    );
}

#[tokio::test]
async fn a_warm_lead_is_nurtured_until_it_is_taken_up() {
    let smtp = SmtpSink::start().await;
    let (app, _) = crm(&smtp).await;
    params(
        &app,
        "lead_nurture",
        json!({"first_gap": "1s", "second_gap": "1s"}),
    )
    .await;
    let keep = app
        .create("lead", warm_lead("石家庄云图", "keep@yuntu.example"))
        .await;
    assert_eq!(keep["grade"], "warm");
    let taken = app
        .create("lead", warm_lead("保定新材", "taken@xincai.example"))
        .await;
    // Taken up once the first e-mail is out: the run is waiting, and stops.
    eventually("the first nurture e-mail", 10, || async {
        smtp.mails()
            .iter()
            .any(|m| {
                m.to.iter().any(|t| t.contains("taken@xincai.example"))
                    && m.header("Subject")
                        .unwrap_or_default()
                        .contains("Case studies")
            })
            .then_some(())
    })
    .await;
    patch(&app, "lead", &id(&taken), json!({"status": "contacted"})).await;
    ended(&app, "lead_nurture", &id(&keep), "done").await;
    ended(&app, "lead_nurture", &id(&taken), "stopped").await;
    let nurture = |to: &str| {
        smtp.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.contains(to)))
            .filter(|m| {
                !m.header("Subject")
                    .unwrap_or_default()
                    .contains("Thank you")
            })
            .map(|m| m.header("Subject").unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let kept = eventually("three nurture e-mails", 10, || async {
        let v = nurture("keep@yuntu.example");
        (v.len() == 3).then_some(v)
    })
    .await;
    assert!(
        kept[0].contains("Case studies") && kept[1].contains("demo") && kept[2].contains("offer"),
        "{kept:?}"
    );
    assert_eq!(nurture("taken@xincai.example").len(), 1);
}

#[tokio::test]
async fn a_converted_lead_becomes_a_customer_a_contact_and_an_opportunity() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let mut l = warm_lead("廊坊智造有限公司", "ceo@zhizao.example");
    l["owner"] = json!(ids["liuyang"]);
    l["budget"] = json!(380000);
    let lead = app.create("lead", l).await;
    patch(&app, "lead", &id(&lead), json!({"status": "converted"})).await;
    ended(&app, "lead_conversion", &id(&lead), "done").await;
    let (_, c) = app
        .list(
            "customer",
            &[("filter", json!({"name": "廊坊智造有限公司"}).to_string())],
        )
        .await;
    let customer = &c["data"][0];
    assert_eq!(customer["owner"], json!(ids["liuyang"]));
    assert_eq!(customer["industry"], "it");
    let (_, k) = app
        .list(
            "contact",
            &[("filter", json!({"customer": id(customer)}).to_string())],
        )
        .await;
    assert_eq!(k["data"].as_array().unwrap().len(), 1);
    assert_eq!(k["data"][0]["email"], "ceo@zhizao.example");
    let (_, o) = app
        .list(
            "opportunity",
            &[("filter", json!({"lead": id(&lead)}).to_string())],
        )
        .await;
    let opp = &o["data"][0];
    assert_eq!(opp["customer"], customer["id"]);
    assert_eq!(opp["contact"], k["data"][0]["id"]);
    assert_eq!(opp["amount"], json!(380000.0));
    assert_eq!(opp["owner"], json!(ids["liuyang"]));
}

#[tokio::test]
async fn a_won_opportunity_gets_its_close_date_and_an_order_draft() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let customer = app
        .create(
            "customer",
            json!({"name": "唐山钢构", "owner": ids["wanglei"]}),
        )
        .await;
    let opp = app
        .create(
            "opportunity",
            json!({"name": "唐山钢构 ERP", "customer": id(&customer), "stage": "proposal",
                   "amount": 250000, "owner": ids["wanglei"]}),
        )
        .await;
    patch(&app, "opportunity", &id(&opp), json!({"stage": "won"})).await;
    ended(&app, "opportunity_won", &id(&opp), "done").await;
    let (_, now) = app
        .get(&format!("/api/v1/data/opportunity/{}", id(&opp)))
        .await;
    assert_eq!(
        now["closed_at"],
        json!(chrono::Utc::now().date_naive().to_string())
    );
    assert_eq!(now["probability"], 100);
    let (_, orders) = app
        .list(
            "order",
            &[("filter", json!({"opportunity": id(&opp)}).to_string())],
        )
        .await;
    let order = &orders["data"][0];
    assert_eq!(order["status"], "pending_approval");
    assert_eq!(order["customer"], customer["id"]);
    assert_eq!(order["owner"], json!(ids["wanglei"]));
    let t = tasks(&app, &ids["wanglei"], &id(&opp)).await;
    assert!(
        t[0]["description"]
            .as_str()
            .unwrap()
            .contains(order["order_no"].as_str().unwrap())
    );
    // A draft without lines cannot go on to payment: the stage gate says why.
    let (st, body) = app
        .patch(
            &format!("/api/v1/data/order/{}", id(order)),
            json!({"status": "pending_payment"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "lines");
}

async fn order(app: &TestApp, ids: &HashMap<String, String>, discount: f64) -> Value {
    let customer = first(app, "customer").await;
    let product = first(app, "product").await;
    app.create(
        "order",
        json!({"customer": customer, "owner": ids["wanglei"], "discount_pct": discount,
               "lines": [{"product": product, "quantity": 10, "unit_price": 1000}]}),
    )
    .await
}

async fn pending_for(app: &TestApp, token: &str, order: &str) -> Value {
    eventually("an approval request", 20, || async {
        let (st, body) = app
            .call_as(Some(token), Method::GET, "/api/v1/approvals", None)
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["record_id"] == order)
            .cloned()
    })
    .await
}

async fn decide(app: &TestApp, token: &str, approval: &Value, body: Value) -> (StatusCode, Value) {
    app.call_as(
        Some(token),
        Method::POST,
        &format!("/api/v1/approvals/{}/decision", id(approval)),
        Some(body),
    )
    .await
}

async fn status_becomes(app: &TestApp, rid: &str, status: &str) {
    eventually(&format!("order {status}"), 20, || async {
        let (_, o) = app.get(&format!("/api/v1/data/order/{rid}")).await;
        (o["status"] == status).then_some(())
    })
    .await
}

#[tokio::test]
async fn discounts_go_to_the_manager_then_the_director_and_a_rejection_goes_back_to_the_rep() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let rep = login(&app, "wanglei").await;
    let manager = login(&app, "liqiang").await;
    let director = login(&app, "zhaojianguo").await;

    // 15 %: the rep's manager alone.
    let small = order(&app, &ids, 15.0).await;
    let ask = pending_for(&app, &manager, &id(&small)).await;
    assert_eq!(
        (ask["level"].as_i64(), ask["levels"].as_i64()),
        (Some(1), Some(1))
    );
    let (st, _) = decide(&app, &rep, &ask, json!({"decision": "approve"})).await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a rep cannot approve their own discount"
    );
    let (st, body) = decide(&app, &manager, &ask, json!({"decision": "reject"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "comment");
    let (st, body) = decide(
        &app,
        &manager,
        &ask,
        json!({"decision": "approve", "comment": "ok"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, _) = decide(&app, &manager, &ask, json!({"decision": "approve"})).await;
    assert_eq!(st, StatusCode::CONFLICT, "decided once");
    status_becomes(&app, &id(&small), "pending_payment").await;

    // Approved: finance gets a task (as a role), the warehouse a notice.
    ended(&app, "order_approved", &id(&small), "done").await;
    let finance = login(&app, "zhengxiuying").await;
    let (_, ft) = app
        .call_as(Some(&finance), Method::GET, "/api/v1/tasks", None)
        .await;
    let task = ft["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["record_id"] == small["id"])
        .cloned()
        .expect("a finance task");
    assert_eq!(task["role"], "finance");
    let warehouse = login(&app, "hejun").await;
    assert!(notices(&app, &warehouse).await["unread"].as_i64().unwrap() >= 1);
    let (st, done) = app
        .call_as(
            Some(&finance),
            Method::POST,
            &format!("/api/v1/tasks/{}/complete", id(&task)),
            Some(json!({"comment": "开票完成"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "done");

    // The rep follows the order's progress.
    patch(
        &app,
        "order",
        &id(&small),
        json!({"status": "pending_shipment"}),
    )
    .await;
    eventually("a progress notice", 20, || async {
        let n = notices(&app, &rep).await;
        n["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| {
                x["message"]
                    .as_str()
                    .unwrap()
                    .contains("pending_payment → pending_shipment")
            })
            .then_some(())
    })
    .await;

    // 25 %: the manager, then the director, who rejects.
    let big = order(&app, &ids, 25.0).await;
    let first_level = pending_for(&app, &manager, &id(&big)).await;
    assert_eq!(first_level["levels"], 2);
    decide(&app, &manager, &first_level, json!({"decision": "approve"})).await;
    let second = pending_for(&app, &director, &id(&big)).await;
    assert_eq!(second["level"], 2);
    let (st, _) = decide(&app, &manager, &second, json!({"decision": "approve"})).await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "the second level is the director's"
    );
    let (st, body) = decide(
        &app,
        &director,
        &second,
        json!({"decision": "reject", "comment": "折扣过高，请控制在 10% 以内"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    ended(&app, "order_discount_approval", &id(&big), "done").await;
    let t = tasks(&app, &ids["wanglei"], &id(&big)).await;
    assert!(
        t.iter()
            .any(|x| x["description"] == "折扣过高，请控制在 10% 以内"),
        "{t:?}"
    );
    let n = notices(&app, &rep).await;
    assert!(
        n["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["message"].as_str().unwrap().contains("折扣过高"))
    );
    let (_, o) = app.get(&format!("/api/v1/data/order/{}", id(&big))).await;
    assert_eq!(o["status"], "pending_approval", "back with the rep");

    // The rep lowers the discount: asked again, and under 10 % nobody needs to approve.
    patch(&app, "order", &id(&big), json!({"discount_pct": 8})).await;
    status_becomes(&app, &id(&big), "pending_payment").await;
}

fn sign(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_completed_order_goes_to_the_erp_signed_and_retried_and_gets_a_visit_a_week_later() {
    let smtp = SmtpSink::start().await;
    let erp = HookReceiver::start(2).await;
    let (app, ids) = crm(&smtp).await;
    params(
        &app,
        "order_erp_sync",
        json!({"erp_url": erp.url("/erp/orders"), "erp_secret": "s3cret"}),
    )
    .await;
    params(&app, "order_satisfaction", json!({"visit_after": "2s"})).await;
    let o = order(&app, &ids, 0.0).await;
    status_becomes(&app, &id(&o), "pending_payment").await;
    for s in ["pending_shipment", "shipped", "completed"] {
        patch(&app, "order", &id(&o), json!({"status": s})).await;
    }
    let hits = erp.wait_for_ok(Duration::from_secs(20)).await;
    let statuses: Vec<u16> = hits.iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    let key = hits[0].header("Idempotency-Key").unwrap();
    for h in &hits {
        assert_eq!(h.path, "/erp/orders");
        assert_eq!(
            h.header("Idempotency-Key").unwrap(),
            key,
            "one key on every attempt"
        );
        assert_eq!(
            h.header("X-Trellis-Signature").unwrap(),
            sign("s3cret", &h.body)
        );
    }
    // Backoff: 200 ms, then 400 ms.
    assert!(hits[1].at - hits[0].at >= Duration::from_millis(180));
    assert!(hits[2].at - hits[1].at >= Duration::from_millis(380));
    let body: Value = serde_json::from_str(&hits[2].body).unwrap();
    assert_eq!(body["event"], "order.completed");
    assert_eq!(body["order_no"], o["order_no"]);
    assert_eq!(body["total"], json!(10000.0));
    assert_eq!(body["lines"][0]["quantity"], 10);

    // The receiver has answered; the sender marks the message sent a moment later.
    let m = eventually("the message marked sent", 10, || async {
        let (_, msgs) = app.get("/api/v1/messages?status=sent").await;
        msgs["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == json!(key))
            .cloned()
    })
    .await;
    assert_eq!(m["attempts"], 3);
    assert_eq!(m["payload"]["secret"], "***", "the secret is not shown");
    // The run's log tells what became of the call.
    let run = ended(&app, "order_erp_sync", &id(&o), "done").await;
    let (_, detail) = app.get(&format!("/api/v1/runs/{}", id(&run))).await;
    let outbox: Vec<&str> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["path"] == "outbox")
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(outbox, vec!["retrying", "retrying", "sent"], "{detail}");
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("trellis_workflow_message_retries_total{kind=\"webhook\"} 2"),
        "{metrics}"
    );

    ended(&app, "order_satisfaction", &id(&o), "done").await;
    let t = tasks(&app, &ids["wanglei"], &id(&o)).await;
    assert!(
        t.iter()
            .any(|x| x["title"].as_str().unwrap().contains("Satisfaction visit")),
        "{t:?} {:?}",
        runs(&app, "order_satisfaction", &id(&o)).await
    );
}

#[tokio::test]
async fn a_webhook_that_never_answers_is_a_dead_letter_that_can_be_replayed() {
    let smtp = SmtpSink::start().await;
    let hang = HookReceiver::start_hanging().await;
    let (app, _) = crm(&smtp).await;
    let (st, body) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "ping", "label": {"en": "Ping"}, "form": "customer",
                   "trigger": {"on": "manual"},
                   "steps": [{"type": "webhook", "url": hang.url("/ping"), "timeout": "1s", "retries": 1}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let customer = first(&app, "customer").await;
    let (st, run) = app
        .post(
            "/api/v1/workflows/ping/start",
            json!({"record_id": customer}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{run}");
    let dead = eventually("a dead letter", 20, || async {
        let (_, m) = app.get("/api/v1/messages?status=dead").await;
        m["data"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(dead["attempts"], 2);
    let (_, log) = app.get(&format!("/api/v1/runs/{}", id(&run))).await;
    let last = log["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["status"].as_str(), last["kind"].as_str()),
        (Some("dead"), Some("webhook")),
        "{log}"
    );
    assert!(
        last["error"].as_str().unwrap().contains("no answer"),
        "{last}"
    );
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1000 ms"),
        "{dead}"
    );
    assert_eq!(hang.hits().len(), 2);
    let (st, _) = app
        .post(&format!("/api/v1/messages/{}/replay", id(&dead)), json!({}))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app
        .post(&format!("/api/v1/messages/{}/replay", id(&dead)), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "only a dead letter is replayed");
    eventually("the replay to die again", 20, || async {
        (hang.hits().len() == 4).then_some(())
    })
    .await;
    assert!(
        hang.hits()
            .iter()
            .all(|h| h.header("Idempotency-Key") == Some(id(&dead)))
    );
}

#[tokio::test]
async fn tickets_tell_their_assignee_and_a_closed_one_asks_for_a_rating() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let customer = app.create("customer", json!({"name": "雄安数据港"})).await;
    let contact = app
        .create(
            "contact",
            json!({"customer": id(&customer), "name": "刘洋", "email": "liu@xiongan.example"}),
        )
        .await;
    let ticket = app
        .create(
            "ticket",
            json!({"subject": "报表导出失败", "customer": id(&customer), "contact": id(&contact),
                   "channel": "email", "type": "fault", "description": "导出 Excel 时报错"}),
        )
        .await;
    let assignee = ticket["assignee"].as_str().unwrap().to_owned();
    assert_eq!(assignee, ids["xuming"], "the dispatch rule picks the agent");
    ended(&app, "ticket_created", &id(&ticket), "done").await;
    assert_eq!(tasks(&app, &assignee, &id(&ticket)).await.len(), 1);
    let agent = login(&app, "xuming").await;
    assert!(
        notices(&app, &agent).await["data"][0]["message"]
            .as_str()
            .unwrap()
            .contains("报表导出失败")
    );
    patch(&app, "ticket", &id(&ticket), json!({"status": "closed"})).await;
    ended(&app, "ticket_survey", &id(&ticket), "done").await;
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    let survey = mails
        .iter()
        .find(|m| m.to.iter().any(|t| t.contains("liu@xiongan.example")))
        .expect("a survey e-mail");
    assert!(survey.body().contains("刘洋"));
    assert!(
        survey
            .header("Subject")
            .unwrap()
            .contains(ticket["ticket_no"].as_str().unwrap())
    );
}

#[tokio::test]
async fn contracts_get_a_renewal_task_before_they_end_and_a_moved_end_date_moves_it() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let customer = first(&app, "customer").await;
    let today = chrono::Utc::now().date_naive();
    let day = |n: i64| (today + chrono::Duration::days(n)).to_string();
    let contract = |end: String, status: &str| {
        json!({"title": "年度服务", "customer": customer, "start_date": day(-300), "end_date": end,
               "value": 120000, "status": status, "owner": ids["wanglei"]})
    };
    // Inside the 30 days: at once.
    let soon = app.create("contract", contract(day(10), "active")).await;
    ended(&app, "contract_renewal", &id(&soon), "done").await;
    let t = tasks(&app, &ids["wanglei"], &id(&soon)).await;
    assert!(
        t[0]["title"]
            .as_str()
            .unwrap()
            .contains(soon["contract_no"].as_str().unwrap())
    );
    // Two months out: a timer 30 days before the end.
    let later = app.create("contract", contract(day(60), "active")).await;
    let timer = eventually("a renewal timer", 20, || async {
        runs(&app, "contract_renewal", &id(&later))
            .await
            .into_iter()
            .find(|r| r["status"] == "waiting")
    })
    .await;
    assert_eq!(timer["waiting_for"], "trigger");
    assert_eq!(
        timer["wake_at"],
        json!(format!("{}T00:00:00.000000Z", day(30)))
    );
    // The end moves closer: the timer moves with it, here to now.
    patch(&app, "contract", &id(&later), json!({"end_date": day(20)})).await;
    ended(&app, "contract_renewal", &id(&later), "done").await;
    assert!(
        runs(&app, "contract_renewal", &id(&later))
            .await
            .iter()
            .any(|r| r["status"] == "cancelled")
    );
    // A draft does not qualify when the time comes.
    let draft = app.create("contract", contract(day(5), "draft")).await;
    ended(&app, "contract_renewal", &id(&draft), "skipped").await;
}

#[tokio::test]
async fn the_birthday_schedule_greets_only_todays_birthdays_once_per_firing() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let customer = first(&app, "customer").await;
    let today = chrono::Utc::now().date_naive();
    let bday = format!("1988-{}", &today.to_string()[5..]);
    let other = if &today.to_string()[5..] == "01-01" {
        "1990-02-02"
    } else {
        "1990-01-01"
    };
    let yes = app
        .create("contact", json!({"customer": customer, "name": "寿星", "birthday": bday, "owner": ids["wanglei"]}))
        .await;
    let no = app
        .create("contact", json!({"customer": customer, "name": "平常", "birthday": other, "owner": ids["wanglei"]}))
        .await;
    let (_, mut wf) = app.get("/api/v1/workflows/contact_birthday").await;
    wf["trigger"]["cron"] = json!("*/2 * * * * *");
    put_workflow(&app, wf.clone()).await;
    eventually("a greeting task", 20, || async {
        (!tasks(&app, &ids["wanglei"], &id(&yes)).await.is_empty()).then_some(())
    })
    .await;
    wf["active"] = json!(false);
    put_workflow(&app, wf).await;
    assert!(tasks(&app, &ids["wanglei"], &id(&no)).await.is_empty());
    let rs = runs(&app, "contact_birthday", &id(&yes)).await;
    let mut firings: Vec<&str> = rs
        .iter()
        .map(|r| r["trigger"]["at"].as_str().unwrap())
        .collect();
    let n = firings.len();
    firings.sort();
    firings.dedup();
    assert_eq!(firings.len(), n, "one run per firing");
}

#[tokio::test]
async fn a_failed_step_is_logged_and_its_run_can_be_retried() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let (st, body) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "ask_manager", "label": {"en": "Ask the manager"}, "form": "lead",
                   "trigger": {"on": "manual", "label": {"en": "Ask my manager"}},
                   "steps": [{"type": "task", "title": "Look at {{ record.company }}", "assignee": "owner_manager"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    // The director has no manager: the step fails, with the reason in the log.
    let mut l = warm_lead("沧州机械", "x@cangzhou.example");
    l["owner"] = json!(ids["zhaojianguo"]);
    let lead = app.create("lead", l).await;
    // A rep may start it only on a lead they can change.
    let other = login(&app, "wangfang").await;
    let (st, _) = app
        .call_as(
            Some(&other),
            Method::POST,
            "/api/v1/workflows/ask_manager/start",
            Some(json!({"record_id": id(&lead)})),
        )
        .await;
    assert!(
        st == StatusCode::NOT_FOUND || st == StatusCode::FORBIDDEN,
        "{st}"
    );
    let (st, run) = app
        .post(
            "/api/v1/workflows/ask_manager/start",
            json!({"record_id": id(&lead)}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{run}");
    let failed = ended(&app, "ask_manager", &id(&lead), "failed").await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("has no active manager"),
        "{failed}"
    );
    let (_, detail) = app.get(&format!("/api/v1/runs/{}", id(&failed))).await;
    let step = detail["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (step["path"].as_str(), step["status"].as_str()),
        (Some("steps[0]"), Some("failed"))
    );
    patch(&app, "lead", &id(&lead), json!({"owner": ids["wanglei"]})).await;
    let (st, _) = app
        .post(&format!("/api/v1/runs/{}/retry", id(&failed)), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    ended(&app, "ask_manager", &id(&lead), "done").await;
    assert_eq!(tasks(&app, &ids["liqiang"], &id(&lead)).await.len(), 1);
    let (st, _) = app
        .post(&format!("/api/v1/runs/{}/retry", id(&failed)), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "only a failed run is retried");
}

#[tokio::test]
async fn workflows_that_set_each_other_off_are_cut_off_at_the_documented_depth() {
    let smtp = SmtpSink::start().await;
    let (app, _) = crm(&smtp).await;
    for (name, watch, set) in [
        ("ping", "page_visits", "employees"),
        ("pong", "employees", "page_visits"),
    ] {
        let (st, body) = app
            .post(
                "/api/v1/workflows",
                json!({"name": name, "label": {"en": name}, "form": "lead",
                       "trigger": {"on": "updated", "fields": [watch]},
                       "steps": [{"type": "set", "values": {set: format!("{{{{ (record.{set} or 0) + 1 }}}}")}}]}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }
    let lead = app
        .create("lead", warm_lead("循环测试", "loop@example.com"))
        .await;
    patch(&app, "lead", &id(&lead), json!({"page_visits": 1})).await;
    let cut = eventually("the cut-off", 30, || async {
        let mut all = runs(&app, "ping", &id(&lead)).await;
        all.extend(runs(&app, "pong", &id(&lead)).await);
        all.into_iter().find(|r| r["status"] == "cut_off")
    })
    .await;
    assert!(
        cut["error"].as_str().unwrap().contains("more than 8 times"),
        "{cut}"
    );
    assert_eq!(cut["depth"], 9);
    let (st, _) = app
        .post(&format!("/api/v1/runs/{}/retry", id(&cut)), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "a cut-off run is not retried");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut all = runs(&app, "ping", &id(&lead)).await;
    all.extend(runs(&app, "pong", &id(&lead)).await);
    assert_eq!(all.len(), 10, "runs at depths 0 to 8, then the cut-off");
}

#[tokio::test]
async fn a_server_killed_mid_flight_loses_no_run_and_repeats_no_effect() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    params(&app, "lead_escalation", json!({"escalate_after": "2s"})).await;
    let mut leads = Vec::new();
    for i in 0..8 {
        let mut l = warm_lead(&format!("宕机测试 {i}"), &format!("k{i}@kill.example"));
        l["owner"] = json!(ids["wanglei"]);
        leads.push(id(&app.create("lead", l).await));
    }
    let extra = fast(&smtp);
    let app = app.kill_and_restart(&extra).await;
    for l in &leads {
        ended(&app, "lead_welcome", l, "done").await;
        ended(&app, "lead_escalation", l, "done").await;
        assert_eq!(runs(&app, "lead_welcome", l).await.len(), 1);
        assert_eq!(
            tasks(&app, &ids["wanglei"], l).await.len(),
            1,
            "one first-contact task"
        );
        assert_eq!(
            tasks(&app, &ids["liqiang"], l).await.len(),
            1,
            "one escalation"
        );
    }
    // Every lead got its welcome, and anything sent again after the kill carried the same
    // key (Message-ID), which is what lets a receiver drop the repeat.
    let welcomes = || {
        let mut by_lead: HashMap<String, Vec<String>> = HashMap::new();
        for m in smtp.mails().iter().filter(|m| {
            m.header("Subject")
                .unwrap_or_default()
                .contains("Thank you")
        }) {
            if let Some(to) = m.to.iter().find(|t| t.contains("@kill.example")) {
                by_lead
                    .entry(to.clone())
                    .or_default()
                    .push(m.header("Message-ID").unwrap());
            }
        }
        by_lead
    };
    let by_lead = eventually("eight welcome e-mails", 30, || async {
        let b = welcomes();
        (b.len() == 8).then_some(b)
    })
    .await;
    assert_eq!(by_lead.len(), 8, "{by_lead:?}");
    for keys in by_lead.values() {
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    }
}

#[tokio::test]
async fn two_servers_on_one_database_do_every_piece_of_work_once() {
    if !on_postgres() {
        // SQLite runs one process.
        return;
    }
    let smtp = SmtpSink::start().await;
    let erp = HookReceiver::start(0).await;
    let (a, ids) = crm(&smtp).await;
    params(&a, "lead_escalation", json!({"escalate_after": "2s"})).await;
    params(
        &a,
        "order_erp_sync",
        json!({"erp_url": erp.url("/erp"), "erp_secret": "k"}),
    )
    .await;
    let extra = fast(&smtp);
    let extra: Vec<&str> = extra.into_iter().filter(|x| *x != "--demo").collect();
    let b = a.another(&extra).await;
    let mut leads = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { &a } else { &b };
        let mut l = warm_lead(&format!("双机 {i}"), &format!("d{i}@two.example"));
        l["owner"] = json!(ids["wanglei"]);
        leads.push(id(&app.create("lead", l).await));
    }
    let mut orders = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        let o = order(app, &ids, 0.0).await;
        status_becomes(app, &id(&o), "pending_payment").await;
        for s in ["pending_shipment", "shipped", "completed"] {
            patch(app, "order", &id(&o), json!({"status": s})).await;
        }
        orders.push(o);
    }
    for l in &leads {
        ended(&a, "lead_escalation", l, "done").await;
        assert_eq!(runs(&a, "lead_welcome", l).await.len(), 1);
        assert_eq!(tasks(&a, &ids["wanglei"], l).await.len(), 1);
        assert_eq!(
            tasks(&a, &ids["liqiang"], l).await.len(),
            1,
            "each timer fired once"
        );
    }
    let welcomes = || {
        smtp.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.contains("@two.example")))
            .filter(|m| {
                m.header("Subject")
                    .unwrap_or_default()
                    .contains("Thank you")
            })
            .map(|m| m.header("Message-ID").unwrap_or_default())
            .collect::<Vec<_>>()
    };
    eventually("twenty welcome e-mails", 30, || async {
        (welcomes().len() >= 20).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut keys = welcomes();
    assert_eq!(keys.len(), 20, "each e-mail sent once: {keys:?}");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 20, "under keys of their own");
    eventually("six ERP calls", 20, || async {
        (erp.hits().len() >= 6).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits = erp.hits();
    assert_eq!(hits.len(), 6, "each webhook sent once");
    let mut keys: Vec<String> = hits
        .iter()
        .map(|h| h.header("Idempotency-Key").unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 6);
    drop(b);
}

#[tokio::test]
async fn an_approval_can_climb_the_reporting_line() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let (st, body) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "qualify", "label": {"en": "Qualify"}, "form": "lead",
                   "trigger": {"on": "manual"},
                   "steps": [{"type": "approval",
                              "levels": [{"approver": {"manager": 1}}, {"approver": {"manager": 2}}],
                              "on_approve": [{"type": "set", "values": {"status": "qualified"}}]}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let mut l = warm_lead("邯郸钢铁", "x@handan.example");
    l["owner"] = json!(ids["wanglei"]);
    let lead = app.create("lead", l).await;
    let (st, _) = app
        .post(
            "/api/v1/workflows/qualify/start",
            json!({"record_id": id(&lead)}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let manager = login(&app, "liqiang").await;
    let director = login(&app, "zhaojianguo").await;
    let first = pending_for(&app, &manager, &id(&lead)).await;
    let (st, _) = decide(&app, &manager, &first, json!({"decision": "approve"})).await;
    assert_eq!(st, StatusCode::OK);
    let second = pending_for(&app, &director, &id(&lead)).await;
    assert_eq!(second["approvers"], json!([ids["zhaojianguo"]]));
    decide(&app, &director, &second, json!({"decision": "approve"})).await;
    ended(&app, "qualify", &id(&lead), "done").await;
    let (_, now) = app.get(&format!("/api/v1/data/lead/{}", id(&lead))).await;
    assert_eq!(now["status"], "qualified");
}

#[tokio::test]
async fn an_integration_starts_a_webhook_workflow_with_its_payload() {
    let smtp = SmtpSink::start().await;
    let (app, ids) = crm(&smtp).await;
    let (st, body) = app
        .post(
            "/api/v1/workflows",
            json!({"name": "erp_paid", "label": {"en": "ERP says paid"}, "form": "order",
                   "trigger": {"on": "webhook"},
                   "steps": [{"type": "notify", "to": {"role": "finance"},
                              "message": "ERP: invoice {{ trigger.payload.invoice }} paid {{ trigger.payload.amount }}"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    // A rep's token may not start it; the integration (an administrator's token) may.
    let rep = login(&app, "wanglei").await;
    let (st, _) = app
        .call_as(
            Some(&rep),
            Method::POST,
            "/api/v1/workflows/erp_paid/start",
            Some(json!({"payload": {"invoice": "INV-1"}})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, run) = app
        .post(
            "/api/v1/workflows/erp_paid/start",
            json!({"payload": {"invoice": "INV-2026-001", "amount": 12800}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{run}");
    assert_eq!(run["trigger"]["event"], "webhook");
    let finance = login(&app, "zhengxiuying").await;
    eventually("the finance notice", 20, || async {
        notices(&app, &finance).await["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["message"] == "ERP: invoice INV-2026-001 paid 12800")
            .then_some(())
    })
    .await;
    // Record triggers are not started by hand.
    let (st, _) = app
        .post(
            "/api/v1/workflows/lead_welcome/start",
            json!({"record_id": ids["wanglei"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
}
