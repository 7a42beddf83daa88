//! The CRM's routing rules on the demo data: leads land with the right team and are
//! spread evenly; tickets go by type, priority and customer level.

use std::collections::HashMap;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, errors};

/// The demo, with user ids by the name part of their e-mail.
async fn demo() -> (TestApp, HashMap<String, String>) {
    let app = TestApp::spawn_with(&["--demo"]).await;
    let ids = app.user_ids().await;
    (app, ids)
}

/// Open leads (not converted or lost) each of these users owns.
async fn open_leads(app: &TestApp, ids: &HashMap<String, String>, who: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for w in who {
        let filter = json!({"owner": ids[*w], "status": {"$nin": ["converted", "lost"]}});
        let (st, body) = app
            .list(
                "lead",
                &[
                    ("filter", filter.to_string()),
                    ("count", "true".into()),
                    ("limit", "1".into()),
                ],
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        out.push(body["total"].as_i64().unwrap());
    }
    out
}

#[tokio::test]
async fn crm_leads_are_scored_graded_and_routed_on_a_first_start() {
    let (app, ids) = demo().await;
    // A website consultation from a large manufacturer: hot, and with the specialist.
    let zh = app
        .create(
            "lead",
            json!({"company": "江苏恒力重工机械有限公司", "contact_name": "王建华", "title": "采购总监",
                "phone": "13812345678", "source": "consult", "industry": "manufacturing",
                "region": "north", "city": "北京", "employees": 3200, "budget": 800000,
                "downloaded_pricing": true, "page_visits": 7}),
        )
        .await;
    assert_eq!(zh["grade"], "hot", "{zh}");
    assert_eq!(zh["owner"], json!(ids["sunhao"]), "{zh}");
    let en = app
        .create(
            "lead",
            json!({"company": "Pearl River Precision Manufacturing Co., Ltd.", "contact_name": "Grace Lin",
                "title": "Head of Procurement", "email": "grace.lin@prpm.example", "source": "consult",
                "industry": "manufacturing", "region": "south", "employees": 1500,
                "downloaded_pricing": true, "page_visits": 5}),
        )
        .await;
    assert_eq!(en["grade"], "hot", "{en}");
    assert_eq!(en["owner"], json!(ids["sunhao"]), "{en}");
    // East-region leads go to the Shanghai team (its members, not its manager), even
    // manufacturers.
    let shanghai = [ids["wangfang"].clone(), ids["zhangmin"].clone()];
    for (company, industry) in [
        ("上海云帆信息科技有限公司", "it"),
        ("Ningbo Harbour Machinery Ltd", "manufacturing"),
    ] {
        let l = app
            .create(
                "lead",
                json!({"company": company, "contact_name": "陈先生", "phone": "021-61234567", "source": "expo",
                    "industry": industry, "region": "east"}),
            )
            .await;
        assert!(
            shanghai.contains(&l["owner"].as_str().unwrap().to_owned()),
            "{company} went to {}",
            l["owner"]
        );
    }
    // An owner given at creation stands.
    let mine = app
        .create(
            "lead",
            json!({"company": "Own Pick Ltd", "contact_name": "Tom", "source": "expo", "email": "a@own.example", "region": "east",
                "owner": ids["wanglei"]}),
        )
        .await;
    assert_eq!(mine["owner"], json!(ids["wanglei"]));
    // A test run shows the route and takes no turn: asked twice, it answers the same.
    let sample = json!({"record": {"region": "north", "industry": "it"}});
    let (st, first) = app
        .post("/api/v1/rules/lead_route/test", sample.clone())
        .await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let log = first["log"][0].as_str().unwrap();
    assert!(
        log.starts_with("line 10: ") && log.contains("north / it -> team north"),
        "{first}"
    );
    let (_, second) = app.post("/api/v1/rules/lead_route/test", sample).await;
    assert_eq!(first["assigned"], second["assigned"]);
    assert!(
        first["assigned"]
            .as_str()
            .unwrap()
            .ends_with("@demo.trellis.dev")
    );
}

#[tokio::test]
async fn workload_balancing_spreads_concurrent_leads_evenly_across_a_team() {
    let (app, ids) = demo().await;
    let north = ["liuyang", "wanglei"];
    let before = open_leads(&app, &ids, &north).await;
    let manager_before = open_leads(&app, &ids, &["liqiang"]).await[0];
    // 100 leads, 10 at a time, as a website form or an import would send them.
    for batch in 0..10 {
        let creates = (0..10).map(|i| {
            let n = batch * 10 + i;
            let lead = if n % 2 == 0 {
                json!({"company": format!("北方软件{n}有限公司"), "contact_name": "李经理", "phone": format!("1390000{n:04}"),
                    "source": "website", "industry": "it", "region": "north"})
            } else {
                json!({"company": format!("Northern Logistics {n} Ltd"), "contact_name": "Ann Lee", "email": format!("ops{n}@nl.example"),
                    "source": "search", "industry": "logistics", "region": "central"})
            };
            app.post("/api/v1/data/lead", lead)
        });
        for (st, body) in join_all(creates).await {
            assert_eq!(st, StatusCode::CREATED, "{body}");
        }
    }
    let after = open_leads(&app, &ids, &north).await;
    let added: i64 = after.iter().sum::<i64>() - before.iter().sum::<i64>();
    assert_eq!(
        added, 100,
        "every lead went to a north rep: {before:?} → {after:?}"
    );
    let (lo, hi) = (after.iter().min().unwrap(), after.iter().max().unwrap());
    assert!(
        hi - lo <= 1,
        "open leads per rep after balancing: {before:?} → {after:?}"
    );
    assert_eq!(
        open_leads(&app, &ids, &["liqiang"]).await[0],
        manager_before,
        "the team's manager leads it and gets no leads"
    );
    // Closing leads frees a rep: the next lead goes to them.
    let theirs = app
        .ids(
            "lead",
            json!({"owner": ids["wanglei"], "status": {"$nin": ["converted", "lost"]}}),
            "id",
        )
        .await;
    for id in theirs.iter().take(3) {
        let (st, body) = app
            .patch(
                &format!("/api/v1/data/lead/{id}"),
                json!({"status": "lost", "lost_reason": "budget"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    let next = app
        .create(
            "lead",
            json!({"company": "Freed Capacity Ltd", "contact_name": "Bo", "source": "ads", "email": "x@fc.example", "region": "north", "industry": "it"}),
        )
        .await;
    assert_eq!(next["owner"], json!(ids["wanglei"]));
    // A rep who leaves is no longer a member to route to, however light their load.
    let (st, body) = app
        .patch(
            &format!("/api/v1/users/{}", ids["wanglei"]),
            json!({"active": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let after_leave = app
        .create(
            "lead",
            json!({"company": "After Leave Ltd", "contact_name": "Cy", "source": "ads",
                "email": "c@al.example", "region": "north", "industry": "it"}),
        )
        .await;
    assert_eq!(after_leave["owner"], json!(ids["liuyang"]));
}

#[tokio::test]
async fn tickets_are_dispatched_by_type_priority_and_customer_level() {
    let (app, ids) = demo().await;
    let vip = app
        .create(
            "customer",
            json!({"name": "华东重型装备集团有限公司", "type": "company", "level": "a", "region": "east"}),
        )
        .await;
    let plain = app
        .create(
            "customer",
            json!({"name": "Small Shop Ltd", "type": "company", "level": "c", "region": "south"}),
        )
        .await;
    let ticket = |customer: &Value, kind: &str, priority: &str| {
        json!({"subject": format!("{kind} / {priority}"), "customer": customer["id"],
            "channel": "phone", "type": kind, "priority": priority, "description": "…"})
    };
    // The service lead takes an A customer's high-priority ticket, complaints and urgent
    // tickets; the agent takes the rest.
    for (c, kind, priority, who) in [
        (&vip, "fault", "high", "zhouli"),
        (&plain, "complaint", "low", "zhouli"),
        (&plain, "fault", "urgent", "zhouli"),
        (&plain, "fault", "high", "xuming"),
        (&vip, "inquiry", "normal", "xuming"),
    ] {
        let t = app.create("ticket", ticket(c, kind, priority)).await;
        assert_eq!(
            t["assignee"],
            json!(ids[who]),
            "{kind}/{priority} for level {}",
            c["level"]
        );
    }
}

#[tokio::test]
async fn a_route_rule_that_cannot_route_names_the_rule_and_line() {
    let (app, ids) = demo().await;
    let rule = |on_error: &str| {
        json!({"name": "bad_route", "label": {"en": "Bad route"}, "form": "lead", "kind": "route",
            "on": ["create"], "order": 40, "on_error": on_error,
            "script": "let t = \"nowhere\";\nassign(round_robin(t));"})
    };
    let (st, body) = app.post("/api/v1/rules", rule("reject")).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, body) = app
        .post(
            "/api/v1/data/lead",
            json!({"company": "Lost Ltd", "contact_name": "L", "source": "ads", "email": "l@lost.example", "region": "north"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("owner".to_owned(), "rule_runtime".to_owned())]
    );
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("bad_route") && msg.contains("line 2") && msg.contains("no team named"),
        "{msg}"
    );
    let (_, count) = app
        .list(
            "lead",
            &[
                ("filter", json!({"company": "Lost Ltd"}).to_string()),
                ("count", "true".into()),
            ],
        )
        .await;
    assert_eq!(count["total"], 0, "nothing half-written");
    // Kept and recorded instead: the lead is written with the earlier rule's routing.
    let (st, body) = app.put("/api/v1/rules/bad_route", rule("record")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let kept = app
        .create(
            "lead",
            json!({"company": "Kept Ltd", "contact_name": "K", "source": "ads", "email": "k@kept.example", "region": "north", "industry": "it"}),
        )
        .await;
    assert!(
        [ids["liuyang"].clone(), ids["wanglei"].clone()]
            .contains(&kept["owner"].as_str().unwrap().to_owned())
    );
    let (_, audit) = app
        .get("/api/v1/audit?action=rule.error&target=bad_route")
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    // assign() of someone who is not an active user is refused the same way.
    let (st, _) = app
        .put(
            "/api/v1/rules/bad_route",
            json!({"name": "bad_route", "label": {"en": "Bad route"}, "form": "lead", "kind": "route",
                "on": ["create"], "order": 40, "script": "assign(\"ghost@nowhere.example\")"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = app
        .post(
            "/api/v1/data/lead",
            json!({"company": "Ghost Ltd", "contact_name": "G", "source": "ads", "email": "g@ghost.example"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no active user"),
        "{body}"
    );
}

#[tokio::test]
async fn round_robin_takes_turns_fairly_and_a_failed_create_gives_its_turn_back() {
    let (app, ids) = demo().await;
    app.form(
        json!({"name": "visit", "label": {"en": "Visit"}, "fields": [
        {"name": "title", "type": "text", "required": true, "unique": true}]}),
    )
    .await;
    let (st, body) = app
        .post(
            "/api/v1/rules",
            json!({"name": "visit_turns", "label": {"en": "Visit turns"}, "form": "visit",
                "kind": "route", "on": ["create"], "script": "assign(round_robin(\"north\"))"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    // Ten at once: five each (the north reps, by e-mail: liuyang, then wanglei).
    let creates =
        (0..10).map(|i| app.post("/api/v1/data/visit", json!({"title": format!("v{i}")})));
    let mut per: HashMap<String, usize> = HashMap::new();
    for (st, body) in join_all(creates).await {
        assert_eq!(st, StatusCode::CREATED, "{body}");
        *per.entry(body["owner"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per.get(&ids["liuyang"]), Some(&5), "{per:?}");
    assert_eq!(per.get(&ids["wanglei"]), Some(&5), "{per:?}");
    // Turn 10 goes to liuyang; a create that fails after routing gives its turn back, so
    // the next one goes to wanglei, not to liuyang again.
    let a = app.create("visit", json!({"title": "a"})).await;
    assert_eq!(a["owner"], json!(ids["liuyang"]));
    let (st, body) = app.post("/api/v1/data/visit", json!({"title": "a"})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let b = app.create("visit", json!({"title": "b"})).await;
    assert_eq!(b["owner"], json!(ids["wanglei"]));
}
