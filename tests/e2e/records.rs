//! The generated record API: CRUD, concurrency, history, batch, pagination, relations.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestApp, errors, lead_form};

#[tokio::test]
async fn create_get_update_delete_with_etags_and_history() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let rec = app.create("lead", json!({"company": "  Acme  ", "email": "A@Acme.com", "city": "beijing", "budget": 1200, "tags": ["vip"]})).await;
    let id = rec["id"].as_str().unwrap();
    assert_eq!(rec["company"], "Acme", "trimmed");
    assert_eq!(
        rec["email"], "a@acme.com",
        "e-mails are stored in lower case"
    );
    assert_eq!(rec["city"], "北京市", "normalized");
    assert_eq!(rec["version"], 1);
    assert_eq!(rec["owner"], rec["created_by"]);
    for k in [
        "id",
        "version",
        "created_at",
        "updated_at",
        "created_by",
        "owner",
    ] {
        assert!(rec.get(k).is_some(), "system column {k}");
    }

    let resp = app
        .client
        .get(app.url(&format!("/api/v1/data/lead/{id}")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let got: Value = resp.json().await.unwrap();
    assert_eq!(got, rec, "a read returns exactly what the create returned");

    // Update with the right version, then a stale one.
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/data/lead/{id}")))
        .bearer_auth(&app.token)
        .header("If-Match", "\"1\"")
        .json(&json!({"budget": 1500.5, "city": "京"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/data/lead/{id}")))
        .bearer_auth(&app.token)
        .header("If-Match", "\"1\"")
        .json(&json!({"budget": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let (_, now) = app.get(&format!("/api/v1/data/lead/{id}")).await;
    assert_eq!(now["budget"], 1500.5, "the stale write changed nothing");

    let (st, h) = app.get(&format!("/api/v1/data/lead/{id}/history")).await;
    assert_eq!(st, StatusCode::OK);
    let entries = h["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "create");
    assert_eq!(entries[1]["action"], "update");
    assert_eq!(
        entries[1]["changes"]["budget"],
        json!({"before": 1200.0, "after": 1500.5})
    );
    assert_eq!(
        entries[1]["changes"].as_object().unwrap().len(),
        1,
        "city normalized to the same value is no change"
    );

    let (st, _) = app.delete(&format!("/api/v1/data/lead/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = app.get(&format!("/api/v1/data/lead/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    let (_, h) = app.get(&format!("/api/v1/data/lead/{id}/history")).await;
    assert_eq!(
        h["data"].as_array().unwrap().last().unwrap()["action"],
        "delete"
    );
}

#[tokio::test]
async fn concurrent_creates_of_one_unique_value_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let c = app.client.clone();
        let url = app.url("/api/v1/data/lead");
        let t = app.token.clone();
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .bearer_auth(t)
                .json(&json!({"company": format!("C{i}"), "email": "same@x.com"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::CREATED).count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::CONFLICT).count(),
        11,
        "{codes:?}"
    );
    let (_, body) = app
        .post(
            "/api/v1/data/lead",
            json!({"company": "D", "email": "SAME@x.com"}),
        )
        .await;
    assert_eq!(
        errors(&body),
        vec![("email".to_owned(), "unique".to_owned())]
    );
}

#[tokio::test]
async fn autonumbers_are_gap_free_and_unique_under_concurrency() {
    let app = TestApp::spawn().await;
    app.form(
        json!({"name": "customer", "label": {"en": "Customer"}, "fields": [
        {"name": "customer_no", "type": "autonumber", "format": "C-{YYYY}-{seq:5}"},
        {"name": "name", "type": "text", "required": true, "unique": true}]}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let c = app.client.clone();
        let url = app.url("/api/v1/data/customer");
        let t = app.token.clone();
        // Every third create fails (duplicate name) and must not consume a number.
        let name = if i % 3 == 2 {
            "dup".to_owned()
        } else {
            format!("n{i}")
        };
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .bearer_auth(t)
                .json(&json!({"name": name}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        let (st, body) = t.await.unwrap();
        if st == StatusCode::CREATED {
            numbers.push(body["customer_no"].as_str().unwrap().to_owned());
        }
    }
    let year = chrono_year();
    numbers.sort();
    let want: Vec<String> = (1..=numbers.len())
        .map(|n| format!("C-{year}-{n:05}"))
        .collect();
    assert_eq!(numbers, want, "gap-free and unique");
    let (_, body) = app
        .post(
            "/api/v1/data/customer",
            json!({"name": "x", "customer_no": "C-1"}),
        )
        .await;
    assert_eq!(
        errors(&body),
        vec![("customer_no".to_owned(), "read_only".to_owned())]
    );
}

fn chrono_year() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Days since 1970 → civil year (good enough away from New Year's Eve).
    (1970 + (secs as f64 / 86_400.0 / 365.2425) as u64).to_string()
}

#[tokio::test]
async fn batch_is_all_or_nothing_and_names_the_failing_record() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let (st, body) = app.post("/api/v1/data/lead/batch", json!({"records": [
        {"company": "A", "email": "a@x.com"}, {"company": "B", "score": 101}, {"email": "c@x.com"}]})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let errs = errors(&body);
    assert!(
        errs.contains(&("records[1].score".into(), "max".into())),
        "{errs:?}"
    );
    assert!(
        errs.contains(&("records[2].company".into(), "required".into())),
        "{errs:?}"
    );
    let (st, body) = app.post("/api/v1/data/lead/batch", json!({"records": [{"company": "A", "email": "a@x.com"}, {"company": "B", "email": "a@x.com"}]})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        errors(&body),
        vec![("records[1].email".to_owned(), "unique".to_owned())]
    );
    let (_, list) = app.list("lead", &[("count", "true".into())]).await;
    assert_eq!(list["total"], 0, "nothing was written");
    let records: Vec<Value> = (0..700)
        .map(|i| json!({"company": format!("Co {i}"), "score": i % 101}))
        .collect();
    let (st, body) = app
        .post("/api/v1/data/lead/batch", json!({"records": records}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(body["data"].as_array().unwrap().len(), 700);
    let (_, list) = app
        .list("lead", &[("count", "true".into()), ("limit", "1".into())])
        .await;
    assert_eq!(list["total"], 700);
}

#[tokio::test]
async fn cursor_pages_stay_stable_while_rows_are_inserted() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let records: Vec<Value> = (0..95).map(|i| json!({"company": format!("Co {i:03}"), "score": if i % 10 == 0 { Value::Null } else { json!(i % 7) }})).collect();
    app.post("/api/v1/data/lead/batch", json!({"records": records}))
        .await;
    for sort in ["-score", "score", "-score,company", "company", ""] {
        let all = app.ids("lead", json!({}), sort).await;
        assert!(all.len() >= 95);
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut page = 0;
        loop {
            let mut p = vec![("limit", "10".to_owned()), ("sort", sort.to_owned())];
            if let Some(c) = &cursor {
                p.push(("cursor", c.clone()));
            }
            let (st, body) = app.list("lead", &p).await;
            assert_eq!(st, StatusCode::OK, "{body}");
            seen.extend(
                body["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned()),
            );
            // Rows inserted mid-walk must not shift or repeat what was already seen.
            app.create(
                "lead",
                json!({"company": format!("late {sort} {page}"), "score": 3}),
            )
            .await;
            page += 1;
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let uniq: HashSet<&String> = seen.iter().collect();
        assert_eq!(uniq.len(), seen.len(), "no row twice with sort {sort:?}");
        let original: Vec<&String> = seen.iter().filter(|id| all.contains(id)).collect();
        assert_eq!(
            original,
            all.iter().collect::<Vec<_>>(),
            "every original row once, in order, with sort {sort:?}"
        );
    }
}

#[tokio::test]
async fn fields_expand_and_count() {
    let app = TestApp::spawn().await;
    app.form(json!({"name": "customer", "label": {"en": "Customer"}, "fields": [{"name": "name", "type": "text"}, {"name": "industry", "type": "text"}]})).await;
    app.form(json!({"name": "deal", "label": {"en": "Deal"}, "fields": [{"name": "title", "type": "text"}, {"name": "customer", "type": "relation", "target": "customer"}, {"name": "amount", "type": "currency"}]})).await;
    let c = app
        .create(
            "customer",
            json!({"name": "Acme", "industry": "manufacturing"}),
        )
        .await;
    app.create(
        "deal",
        json!({"title": "D1", "customer": c["id"], "amount": 10}),
    )
    .await;
    app.create("deal", json!({"title": "D2", "amount": 20}))
        .await;
    let (st, body) = app
        .list(
            "deal",
            &[
                ("fields", "title".into()),
                ("expand", "customer".into()),
                ("count", "true".into()),
                ("sort", "title".into()),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 2);
    let d1 = &body["data"][0];
    assert_eq!(d1["title"], "D1");
    assert!(
        d1.get("amount").is_none(),
        "fields limits the columns: {d1}"
    );
    assert_eq!(d1["expand"]["customer"]["name"], "Acme");
    assert_eq!(body["data"][1]["expand"]["customer"], Value::Null);
    // One record with `fields`: the ETag is still the version, and expand still works.
    let d1_id = body["data"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .client
        .get(app.url(&format!(
            "/api/v1/data/deal/{d1_id}?fields=title&expand=customer"
        )))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "\"1\"");
    let one: Value = r.json().await.unwrap();
    assert_eq!(one["expand"]["customer"]["name"], "Acme", "{one}");
    assert!(
        one.get("amount").is_none() && one.get("customer").is_none(),
        "{one}"
    );
    let r = app
        .client
        .get(app.url(&format!("/api/v1/data/deal/{d1_id}?fields=title")))
        .bearer_auth(&app.token)
        .header("If-None-Match", "\"0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a wrong version is not a match");
    let (st, body) = app.list("deal", &[("expand", "title".into())]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(errors(&body)[0].0, "expand[0]");
    let (st, body) = app.list("deal", &[("fields", "title,nope".into())]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(&body)[0],
        ("fields[1]".to_owned(), "unknown_field".to_owned())
    );
    // A relation path in a filter reads through the relation.
    let ids = app
        .ids("deal", json!({"customer.industry": "manufacturing"}), "")
        .await;
    assert_eq!(ids.len(), 1);
    // A relation must point at an existing record.
    let (st, body) = app
        .post(
            "/api/v1/data/deal",
            json!({"title": "bad", "customer": "nope"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&body),
        vec![("customer".to_owned(), "not_found".to_owned())]
    );
}

#[tokio::test]
async fn on_delete_policies_restrict_set_null_and_cascade() {
    let app = TestApp::spawn().await;
    app.form(json!({"name": "customer", "label": {"en": "Customer"}, "fields": [{"name": "name", "type": "text"}]})).await;
    app.form(json!({"name": "contact", "label": {"en": "Contact"}, "fields": [{"name": "name", "type": "text"}, {"name": "customer", "type": "relation", "target": "customer", "on_delete": "cascade"}]})).await;
    app.form(json!({"name": "note", "label": {"en": "Note"}, "fields": [{"name": "text", "type": "text"}, {"name": "contact", "type": "relation", "target": "contact", "on_delete": "set_null"}]})).await;
    app.form(json!({"name": "invoice", "label": {"en": "Invoice"}, "fields": [{"name": "no", "type": "text"}, {"name": "customer", "type": "relation", "target": "customer"}]})).await;
    let c = app.create("customer", json!({"name": "Acme"})).await;
    let k = app
        .create("contact", json!({"name": "Li", "customer": c["id"]}))
        .await;
    let n = app
        .create("note", json!({"text": "hi", "contact": k["id"]}))
        .await;
    let inv = app
        .create("invoice", json!({"no": "1", "customer": c["id"]}))
        .await;
    let cid = c["id"].as_str().unwrap();
    let (st, body) = app.delete(&format!("/api/v1/data/customer/{cid}")).await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "restricted by the invoice: {body}"
    );
    assert_eq!(body["errors"][0]["code"], "restricted");
    assert_eq!(body["errors"][0]["rows"][0]["id"], inv["id"]);
    app.delete(&format!(
        "/api/v1/data/invoice/{}",
        inv["id"].as_str().unwrap()
    ))
    .await;
    let (st, _) = app.delete(&format!("/api/v1/data/customer/{cid}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app
        .get(&format!(
            "/api/v1/data/contact/{}",
            k["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "cascaded");
    let (_, note) = app
        .get(&format!("/api/v1/data/note/{}", n["id"].as_str().unwrap()))
        .await;
    assert_eq!(note["contact"], Value::Null, "set null");
    assert_eq!(note["version"], 2);
    let (_, h) = app
        .get(&format!(
            "/api/v1/data/note/{}/history",
            n["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(h["data"][1]["changes"]["contact"]["after"], Value::Null);
}

#[tokio::test]
async fn filter_language_over_http() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let mk = |c: &str, score: Value, region: &str, tags: Value, met: &str| json!({"company": c, "score": score, "region": region, "tags": tags, "met_on": met});
    let recs = vec![
        mk("Alpha Ltd", json!(90), "east", json!(["vip"]), "2026-01-05"),
        mk(
            "beta 50% off",
            json!(60),
            "east",
            json!(["new", "vip"]),
            "2026-02-10",
        ),
        mk("Gamma_Co", json!(40), "north", json!([]), "2025-12-31"),
        mk("Delta", Value::Null, "south", json!(["cold"]), "2026-03-01"),
    ];
    app.post("/api/v1/data/lead/batch", json!({"records": recs}))
        .await;
    // Compared as sets: text collation may differ between databases.
    let names = |ids: Vec<String>, all: &Value| -> Vec<String> {
        let mut v: Vec<String> = ids
            .iter()
            .map(|id| {
                all["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["id"] == json!(id))
                    .unwrap()["company"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        v.sort();
        v
    };
    let (_, all) = app.list("lead", &[("limit", "100".into())]).await;
    let q = |f: Value| {
        let app = &app;
        async move { app.ids("lead", f, "company").await }
    };
    assert_eq!(
        names(
            q(json!({"region": "east", "score": {"$gte": 60}})).await,
            &all
        ),
        ["Alpha Ltd", "beta 50% off"]
    );
    assert_eq!(
        names(q(json!({"score": {"$ne": 60}})).await, &all),
        ["Alpha Ltd", "Delta", "Gamma_Co"],
        "$ne includes empty values"
    );
    assert_eq!(
        names(q(json!({"score": {"$null": true}})).await, &all),
        ["Delta"]
    );
    assert_eq!(
        names(
            q(json!({"$or": [{"region": "north"}, {"score": {"$gt": 80}}]})).await,
            &all
        ),
        ["Alpha Ltd", "Gamma_Co"]
    );
    assert_eq!(
        names(q(json!({"$not": {"region": "east"}})).await, &all),
        ["Delta", "Gamma_Co"]
    );
    assert_eq!(
        names(q(json!({"company": {"$contains": "50%"}})).await, &all),
        ["beta 50% off"],
        "% is literal"
    );
    assert_eq!(
        names(q(json!({"company": {"$contains": "_"}})).await, &all),
        ["Gamma_Co"],
        "_ is literal"
    );
    assert_eq!(
        names(q(json!({"company": {"$icontains": "ALPHA"}})).await, &all),
        ["Alpha Ltd"]
    );
    assert_eq!(
        names(q(json!({"company": {"$contains": "ALPHA"}})).await, &all),
        Vec::<String>::new(),
        "$contains is case-sensitive"
    );
    assert_eq!(
        names(q(json!({"company": {"$startswith": "Ga"}})).await, &all),
        ["Gamma_Co"]
    );
    assert_eq!(
        names(q(json!({"tags": "vip"})).await, &all),
        ["Alpha Ltd", "beta 50% off"]
    );
    assert_eq!(
        names(q(json!({"tags": {"$in": ["cold", "new"]}})).await, &all),
        ["Delta", "beta 50% off"]
    );
    assert_eq!(
        names(
            q(json!({"region": {"$in": ["north", "south"]}})).await,
            &all
        ),
        ["Delta", "Gamma_Co"]
    );
    assert_eq!(
        names(q(json!({"met_on": {"$lt": "2026-01-01"}})).await, &all),
        ["Gamma_Co"]
    );
    assert_eq!(
        names(
            q(json!({"created_at": {"$gte": "$now-1h"}, "score": {"$lte": 40}})).await,
            &all
        ),
        ["Gamma_Co"]
    );
    assert_eq!(q(json!({"created_at": {"$lt": "$now-1d"}})).await.len(), 0);
    assert_eq!(
        names(
            q(json!({"company": "x'; DROP TABLE rec_lead; --"})).await,
            &all
        ),
        Vec::<String>::new()
    );
    let (_, again) = app.list("lead", &[("count", "true".into())]).await;
    assert_eq!(again["total"], 4, "the table is still there");

    for (filter, path, code) in [
        (json!({"nope": 1}), "filter.nope", "unknown_field"),
        (
            json!({"score": {"$regex": "x"}}),
            "filter.score.$regex",
            "unknown_operator",
        ),
        (
            json!({"score": {"$gt": "ten"}}),
            "filter.score.$gt",
            "invalid_value",
        ),
        (
            json!({"$or": [{"region": "east"}, {"ghost.name": 1}]}),
            "filter.$or[1].ghost.name",
            "unknown_field",
        ),
    ] {
        let (st, body) = app.list("lead", &[("filter", filter.to_string())]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{filter}: {body}");
        assert_eq!(
            errors(&body),
            vec![(path.to_owned(), code.to_owned())],
            "{filter}"
        );
        assert!(
            !body["errors"][0]["message_zh"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{body}"
        );
    }
    let mut deep = json!({"region": "east"});
    for _ in 0..40 {
        deep = json!({"$not": deep});
    }
    let (st, body) = app.list("lead", &[("filter", deep.to_string())]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["code"], "too_deep");
    let (st, body) = app.list("lead", &[("filter", "{not json".into())]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(errors(&body)[0].0, "filter");
    let (st, body) = app
        .list("lead", &[("sort", "score;drop table x".into())])
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(errors(&body)[0].0, "sort");
    let (st, _) = app.list("lead", &[("cursor", "garbage".into())]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = app.list("lead", &[("limit", "5000".into())]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer_and_changes_nothing() {
    let app = TestApp::spawn_with(&["--max-body-bytes", "1000000"]).await;
    app.form(lead_form()).await;
    let send = |body: Vec<u8>| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url("/api/v1/data/lead"))
                .bearer_auth(&app.token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (st, ct, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, ct, body) = send(b"{\"company\": ".to_vec()).await;
    assert_eq!(
        (st, ct.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json"),
        "{body}"
    );
    assert_eq!(body["type"], "https://trellis.dev/errors/malformed_json");
    assert_eq!(
        body["title_zh"], "JSON 格式错误",
        "problems speak Chinese too"
    );
    let (st, _, body) = send(b"{\"company\": \"\xff\xfe\"}".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("UTF-8"), "{body}");
    let (st, _, _) = send(b"[1,2]".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, body) = send(
        json!({"company": "x".repeat(900_000)})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("company".to_owned(), "max_length".to_owned())]
    );
    let (st, _, body) = send(
        json!({"company": "x".repeat(10 << 20)})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (st, _, body) = send(json!({"company": "A", "employees": "12", "active": "yes", "met_on": "2026-02-30", "ghost": 1, "source": "tv"}).to_string().into_bytes()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let mut errs = errors(&body);
    errs.sort();
    assert_eq!(
        errs,
        vec![
            ("active".to_owned(), "type".to_owned()),
            ("employees".to_owned(), "type".to_owned()),
            ("ghost".to_owned(), "unknown_field".to_owned()),
            ("met_on".to_owned(), "format".to_owned()),
            ("source".to_owned(), "option".to_owned()),
        ]
    );
    let (st, _, body) = send(
        json!({"company": "Robert'); DROP TABLE rec_lead;--", "city": "' OR 1=1 --"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "SQL-looking text is just text: {body}"
    );
    assert_eq!(body["company"], "Robert'); DROP TABLE rec_lead;--");
    let (st, body) = app.get("/api/v1/data/nosuchform").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["type"], "https://trellis.dev/errors/unknown_form");
    let (st, _) = app.get("/api/v1/data/lead/not-an-id").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = app
        .call(
            Method::PATCH,
            "/api/v1/data/lead/not-an-id",
            Some(json!({"company": "x"})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, list) = app.list("lead", &[("count", "true".into())]).await;
    assert_eq!(list["total"], 1, "only the valid create was stored");
}

#[tokio::test]
async fn attachments_are_uploaded_checked_and_downloaded() {
    let app = TestApp::spawn().await;
    app.form(
        json!({"name": "contract", "label": {"en": "Contract"}, "fields": [
        {"name": "title", "type": "text"},
        {"name": "scan", "type": "attachment", "accept": [".pdf", "image/png"], "max_size": 1000},
        {"name": "extras", "type": "attachment", "multiple": true}]}),
    )
    .await;
    let upload = |name: &str, ct: &str, bytes: Vec<u8>| {
        let app = &app;
        let url = app.url(&format!("/api/v1/files?name={name}"));
        let ct = ct.to_owned();
        async move {
            let r = app
                .client
                .post(url)
                .bearer_auth(&app.token)
                .header("content-type", ct)
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()
        }
    };
    let pdf = upload("合同.pdf", "application/pdf", b"%PDF-1.4 tiny".to_vec()).await;
    let exe = upload("setup.exe", "application/x-msdownload", b"MZ".to_vec()).await;
    let big = upload("big.pdf", "application/pdf", vec![b'x'; 2000]).await;
    let rec = app.create("contract", json!({"title": "A", "scan": {"id": pdf["id"], "name": "forged.exe", "size": 1}, "extras": [{"id": exe["id"]}, {"id": big["id"]}]})).await;
    assert_eq!(
        rec["scan"]["name"], "合同.pdf",
        "the stored metadata wins over what the client sent"
    );
    assert_eq!(rec["scan"]["size"], 13);
    assert_eq!(rec["extras"].as_array().unwrap().len(), 2);
    for (scan, code) in [
        (json!({"id": exe["id"]}), "file_type"),
        (json!({"id": big["id"]}), "max_size"),
        (json!({"id": "nope"}), "not_found"),
    ] {
        let (st, body) = app
            .post("/api/v1/data/contract", json!({"title": "B", "scan": scan}))
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(errors(&body), vec![("scan".to_owned(), code.to_owned())]);
    }
    let r = app
        .client
        .get(app.url(&format!("/api/v1/files/{}", pdf["id"].as_str().unwrap())))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"%PDF-1.4 tiny");
    let (st, _) = app
        .call_as(
            None,
            Method::GET,
            &format!("/api/v1/files/{}", pdf["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn owners_must_be_users() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let (st, body) = app
        .post(
            "/api/v1/data/lead",
            json!({"company": "A", "owner": "nobody"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&body),
        vec![("owner".to_owned(), "not_found".to_owned())]
    );
    let (_, u) = app
        .post(
            "/api/v1/users",
            json!({"email": "rep@x.com", "password": "rep-pass-123"}),
        )
        .await;
    let rec = app
        .create("lead", json!({"company": "A", "owner": u["id"]}))
        .await;
    assert_eq!(rec["owner"], u["id"]);
    let (st, _) = app
        .patch(
            &format!("/api/v1/data/lead/{}", rec["id"].as_str().unwrap()),
            json!({"owner": "ghost"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn subtable_lines_are_validated_and_their_relations_checked() {
    let app = TestApp::spawn().await;
    app.form(json!({"name": "product", "label": {"en": "Product"}, "fields": [{"name": "name", "type": "text"}]})).await;
    app.form(
        json!({"name": "order", "label": {"en": "Order"}, "fields": [
        {"name": "lines", "type": "subtable", "fields": [
            {"name": "product", "type": "relation", "target": "product", "required": true},
            {"name": "quantity", "type": "integer", "min": 1}]}]}),
    )
    .await;
    let p = app.create("product", json!({"name": "Widget"})).await;
    let o = app
        .create(
            "order",
            json!({"lines": [{"product": p["id"], "quantity": 2}]}),
        )
        .await;
    assert_eq!(o["lines"][0]["quantity"], 2);
    let (st, body) = app.post("/api/v1/data/order", json!({"lines": [{"product": p["id"], "quantity": 1}, {"product": "ghost", "quantity": 0}]})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&body),
        vec![("lines[1].quantity".to_owned(), "min".to_owned())]
    );
    let (st, body) = app.post("/api/v1/data/order", json!({"lines": [{"product": p["id"], "quantity": 1}, {"product": "ghost", "quantity": 3}]})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&body),
        vec![("lines[1].product".to_owned(), "not_found".to_owned())]
    );
    // A product used in order lines cannot be deleted (restrict is the default policy).
    let (st, body) = app
        .delete(&format!(
            "/api/v1/data/product/{}",
            p["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["errors"][0]["field"], "order.lines[].product");
    assert_eq!(body["errors"][0]["rows"][0]["id"], o["id"]);
}

#[tokio::test]
async fn relations_in_lines_follow_their_delete_policy() {
    let app = TestApp::spawn().await;
    app.form(json!({"name": "product", "label": {"en": "Product"}, "fields": [{"name": "name", "type": "text"}]})).await;
    app.form(
        json!({"name": "quote", "label": {"en": "Quote"}, "fields": [
        {"name": "lines", "type": "subtable", "fields": [
            {"name": "product", "type": "relation", "target": "product", "on_delete": "set_null"},
            {"name": "bundle", "type": "relation", "target": "product", "on_delete": "cascade"},
            {"name": "qty", "type": "integer"}]}]}),
    )
    .await;
    let a = app.create("product", json!({"name": "A"})).await;
    let b = app.create("product", json!({"name": "B"})).await;
    let q = app.create("quote", json!({"lines": [{"product": a["id"], "qty": 1}, {"product": b["id"], "bundle": a["id"], "qty": 2}, {"product": b["id"], "qty": 3}]})).await;
    let (st, body) = app
        .delete(&format!(
            "/api/v1/data/product/{}",
            a["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (_, got) = app
        .get(&format!("/api/v1/data/quote/{}", q["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        got["lines"],
        json!([{"product": null, "qty": 1}, {"product": b["id"], "qty": 3}]),
        "set null in one line, the cascading line dropped"
    );
    assert_eq!(got["version"], 3, "one change per relation policy applied");
    let (_, h) = app
        .get(&format!(
            "/api/v1/data/quote/{}/history",
            q["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(h["data"][1]["action"], "update");
}
