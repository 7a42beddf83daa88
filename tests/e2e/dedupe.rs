//! Duplicate rules (blocked and warned creates, the scan, rules changed on a form with
//! data), merges, and the export → import → export round trip.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, errors, urlencode};

async fn accounts(app: &TestApp) {
    app.form(json!({"name": "acct", "label": {"en": "Account"}, "title_field": "name", "fields": [
        {"name": "name", "type": "text", "required": true},
        {"name": "phone", "type": "phone"},
        {"name": "city", "type": "text"},
        {"name": "email", "type": "email", "unique": true}],
        "duplicates": [
            {"name": "same_company", "fields": [{"field": "name", "match": "company"}], "on_create": "block", "on_import": "merge"},
            {"name": "same_phone", "fields": [{"field": "phone"}], "on_create": "warn", "on_import": "flag"}]}))
    .await;
    app.form(json!({"name": "deal", "label": {"en": "Deal"}, "fields": [
        {"name": "title", "type": "text"},
        {"name": "acct", "type": "relation", "target": "acct"}]}))
        .await;
}

/// POST a record; answers status, body and the duplicates header.
async fn create(app: &TestApp, form: &str, rec: Value) -> (StatusCode, Value, Option<String>) {
    let r = app
        .client
        .post(app.url(&format!("/api/v1/data/{form}")))
        .bearer_auth(&app.token)
        .json(&rec)
        .send()
        .await
        .unwrap();
    let st = r.status();
    let dupes = r
        .headers()
        .get("trellis-duplicates")
        .map(|v| v.to_str().unwrap().to_owned());
    (st, r.json().await.unwrap_or(Value::Null), dupes)
}

#[tokio::test]
async fn duplicate_rules_block_warn_scan_and_merge() {
    let app = TestApp::spawn().await;
    accounts(&app).await;
    let (st, a, d) = create(
        &app,
        "acct",
        json!({"name": "华信科技有限公司", "phone": "13800138000"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(d, None, "nothing to match yet");
    let a_id = a["id"].as_str().unwrap().to_owned();
    // The same company in another spelling is refused, naming the field and the record.
    for spelling in ["华信科技", "华信科技股份有限公司", " 华信科技 （有限公司）"]
    {
        let (st, body, _) = create(&app, "acct", json!({"name": spelling})).await;
        assert_eq!(st, StatusCode::CONFLICT, "{spelling}: {body}");
        assert_eq!(errors(&body), vec![("name".into(), "duplicate".into())]);
        assert_eq!(body["errors"][0]["rows"][0]["id"], json!(a_id));
    }
    let (st, _, _) = create(&app, "acct", json!({"name": "华信软件"})).await;
    assert_eq!(st, StatusCode::CREATED, "another company");
    // The same phone in another format is let through with a warning.
    let (st, b, d) = create(
        &app,
        "acct",
        json!({"name": "ＡＢＣ Tech Co., Ltd.", "phone": "+86 138-0013-8000", "city": "上海"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(d, Some(format!("same_phone={a_id}")));
    let b_id = b["id"].as_str().unwrap().to_owned();
    let (st, body, _) = create(&app, "acct", json!({"name": "abc tech inc."})).await;
    assert_eq!(st, StatusCode::CONFLICT, "ABC in other words: {body}");

    // The scan finds the pair.
    let (st, scan) = app.get("/api/v1/data/acct/duplicates").await;
    assert_eq!(st, StatusCode::OK, "{scan}");
    assert_eq!(
        scan["data"],
        json!([{"rule": "same_phone", "key": "8613800138000", "ids": [a_id, b_id]}])
    );
    let (st, body) = app.get("/api/v1/data/acct/duplicates?rule=nope").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Deals of the duplicate follow it into the survivor.
    let mut deals = Vec::new();
    for t in ["d1", "d2"] {
        let d = app.create("deal", json!({"title": t, "acct": b_id})).await;
        deals.push(d["id"].as_str().unwrap().to_owned());
    }
    let (st, body) = app
        .post(
            "/api/v1/data/acct/merge",
            json!({"survivor": a_id, "merged": b_id, "take": {"phone": "merged"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["repointed"], json!({"deal.acct": 2}));
    let rec = &body["record"];
    assert_eq!(
        rec["name"],
        json!("华信科技有限公司"),
        "the survivor's own name"
    );
    assert_eq!(
        rec["phone"],
        json!("+86 138-0013-8000"),
        "taken from the merged"
    );
    assert_eq!(
        rec["city"],
        json!("上海"),
        "an empty field filled from the merged"
    );
    assert_eq!(rec["version"], json!(2));
    let (st, _) = app.get(&format!("/api/v1/data/acct/{b_id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "the merged record is gone");
    for d in &deals {
        let (_, deal) = app.get(&format!("/api/v1/data/deal/{d}")).await;
        assert_eq!(deal["acct"], json!(a_id));
        assert_eq!(deal["version"], json!(2));
    }
    // Both histories under the survivor; the merge is one entry.
    let (st, h) = app.get(&format!("/api/v1/data/acct/{a_id}/history")).await;
    assert_eq!(st, StatusCode::OK, "{h}");
    let entries = h["data"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["record_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("create", a_id.as_str()),
            ("create", b_id.as_str()),
            ("merge", a_id.as_str())
        ]
    );
    let merge = &entries[2]["changes"];
    assert_eq!(merge["merged_from"]["after"]["id"], json!(b_id));
    assert_eq!(
        merge["merged_from"]["after"]["values"]["name"],
        json!("ＡＢＣ Tech Co., Ltd.")
    );
    assert_eq!(merge["city"], json!({"before": null, "after": "上海"}));
    let (_, scan) = app.get("/api/v1/data/acct/duplicates").await;
    assert_eq!(scan["data"], json!([]), "nothing left to merge");

    // Bad merges.
    let (st, body) = app
        .post(
            "/api/v1/data/acct/merge",
            json!({"survivor": a_id, "merged": a_id}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (st, body) = app
        .post(
            "/api/v1/data/acct/merge",
            json!({"survivor": a_id, "merged": b_id}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "already merged: {body}");
    let (st, body) = app
        .post(
            "/api/v1/data/acct/merge",
            json!({"survivor": a_id, "merged": "x", "take": {"nope": "merged"}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(errors(&body)[0].0, "take.nope");
}

/// PUT a form back with one change made to its definition.
async fn change_form(
    app: &TestApp,
    name: &str,
    change: impl FnOnce(&mut Value),
) -> (StatusCode, Value) {
    let (_, mut def) = app.get(&format!("/api/v1/forms/{name}")).await;
    change(&mut def);
    for k in ["version", "bundle", "updated_at", "created_at"] {
        if let Some(o) = def.as_object_mut() {
            o.remove(k);
        }
    }
    app.put(&format!("/api/v1/forms/{name}"), def).await
}

#[tokio::test]
async fn a_new_rule_finds_the_duplicates_already_there() {
    let app = TestApp::spawn().await;
    app.form(
        json!({"name": "person", "label": {"en": "Person"}, "fields": [
        {"name": "name", "type": "text"},
        {"name": "email", "type": "email"}]}),
    )
    .await;
    let mut ids = Vec::new();
    for (n, e) in [
        ("Li", "li@example.com"),
        ("Wang", "wang@example.com"),
        ("Li again", " LI@Example.com "),
    ] {
        let r = app.create("person", json!({"name": n, "email": e})).await;
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let (_, scan) = app.get("/api/v1/data/person/duplicates").await;
    assert_eq!(scan["data"], json!([]), "no rules, no duplicates");
    let (st, body) = change_form(&app, "person", |def| {
        def["duplicates"] = json!([{"name": "same_email", "fields": [{"field": "email"}]}]);
    })
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (_, scan) = app.get("/api/v1/data/person/duplicates").await;
    assert_eq!(
        scan["data"],
        json!([{"rule": "same_email", "key": "li@example.com", "ids": [ids[0], ids[2]]}])
    );
    // A field's new type changes how its rule matches: the keys follow.
    app.form(
        json!({"name": "phonebook", "label": {"en": "Phones"}, "fields": [
        {"name": "tel", "type": "text"}],
        "duplicates": [{"name": "same_tel", "fields": [{"field": "tel"}]}]}),
    )
    .await;
    let a = app
        .create("phonebook", json!({"tel": "+86 138 0013 8000"}))
        .await;
    let b = app.create("phonebook", json!({"tel": "13800138000"})).await;
    let (_, scan) = app.get("/api/v1/data/phonebook/duplicates").await;
    assert_eq!(scan["data"], json!([]), "as text they differ");
    let (st, body) = change_form(&app, "phonebook", |def| {
        def["fields"][0]["type"] = json!("phone");
    })
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (_, scan) = app.get("/api/v1/data/phonebook/duplicates").await;
    assert_eq!(
        scan["data"],
        json!([{"rule": "same_tel", "key": "8613800138000", "ids": [a["id"], b["id"]]}])
    );
    // A rule over an unknown field is refused, naming it.
    let (st, body) = change_form(&app, "person", |def| {
        def["duplicates"] = json!([{"name": "bad", "fields": [{"field": "nope"}]}]);
    })
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        errors(&body)
            .iter()
            .any(|(f, _)| f.contains("duplicates[0].fields[0].field")),
        "{body}"
    );
}

fn round_trip_forms() -> (Value, Value) {
    let org = json!({"name": "org", "label": {"en": "Organisation", "zh-CN": "机构"}, "title_field": "name", "fields": [
        {"name": "name", "type": "text", "required": true, "unique": true, "label": {"en": "Name", "zh-CN": "名称"}},
        {"name": "tier", "type": "select", "label": {"en": "Tier", "zh-CN": "级别"}, "options": [
            {"value": "a", "label": {"en": "Key", "zh-CN": "重点"}}, {"value": "b", "label": {"en": "Normal", "zh-CN": "普通"}}]}]});
    let person = json!({"name": "member", "label": {"en": "Member", "zh-CN": "成员"}, "fields": [
        {"name": "code", "type": "autonumber", "format": "M-{seq:4}", "label": {"en": "Code", "zh-CN": "编号"}},
        {"name": "name", "type": "text", "required": true, "label": {"en": "Name", "zh-CN": "姓名"}},
        {"name": "org", "type": "relation", "target": "org", "label": {"en": "Organisation", "zh-CN": "机构"}},
        {"name": "email", "type": "email", "label": {"en": "E-mail", "zh-CN": "邮箱"}},
        {"name": "phone", "type": "phone", "label": {"en": "Phone", "zh-CN": "电话"}},
        {"name": "vip", "type": "boolean", "label": {"en": "VIP", "zh-CN": "贵宾"}},
        {"name": "born", "type": "date", "label": {"en": "Born", "zh-CN": "生日"}},
        {"name": "met", "type": "datetime", "label": {"en": "Met", "zh-CN": "相识时间"}},
        {"name": "score", "type": "integer", "label": {"en": "Score", "zh-CN": "评分"}},
        {"name": "budget", "type": "decimal", "label": {"en": "Budget", "zh-CN": "预算"}},
        {"name": "tags", "type": "multiselect", "label": {"en": "Tags", "zh-CN": "标签"}, "options": [
            {"value": "x", "label": {"en": "Expo", "zh-CN": "展会"}}, {"value": "y", "label": {"en": "Web", "zh-CN": "官网"}}]},
        {"name": "stage", "type": "select", "label": {"en": "Stage", "zh-CN": "阶段"}, "options": [
            {"value": "new", "label": {"en": "New", "zh-CN": "新建"}}, {"value": "won", "label": {"en": "Won", "zh-CN": "赢单"}}]},
        {"name": "note", "type": "textarea", "label": {"en": "Note", "zh-CN": "备注"}}]});
    (org, person)
}

fn notes(i: usize) -> Value {
    match i % 6 {
        0 => json!("=HYPERLINK(\"http://evil.example\",\"click\")"),
        1 => json!("说明，含逗号, \"引号\"\n和换行"),
        2 => json!("-5 degrees"),
        3 => json!("'=already quoted"),
        4 => Value::Null,
        _ => json!("plain 文本"),
    }
}

async fn export(app: &TestApp, form: &str, query: &str) -> Vec<u8> {
    let r = app
        .client
        .get(app.url(&format!("/api/v1/data/{form}/export?{query}")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

async fn import(app: &TestApp, form: &str, query: &str, body: Vec<u8>) -> Value {
    let r = app
        .client
        .post(app.url(&format!("/api/v1/data/{form}/import?wait=true&{query}")))
        .bearer_auth(&app.token)
        .body(body)
        .send()
        .await
        .unwrap();
    let st = r.status();
    let job: Value = r.json().await.unwrap();
    assert_eq!(st, StatusCode::OK, "{job}");
    assert_eq!(job["status"], json!("done"), "{job}");
    job
}

#[tokio::test]
async fn export_then_import_into_an_empty_database_then_export_is_identical() {
    let (org, member) = round_trip_forms();
    let app = TestApp::spawn().await;
    app.form(org.clone()).await;
    app.form(member.clone()).await;
    let mut orgs = Vec::new();
    for (n, t) in [("华信科技", "a"), ("Acme, Inc.", "b"), ("=cmd", "a")] {
        let r = app.create("org", json!({"name": n, "tier": t})).await;
        orgs.push(r["id"].as_str().unwrap().to_owned());
    }
    let records: Vec<Value> = (0..40)
        .map(|i| {
            json!({
                "name": format!("成员{i}"),
                "org": if i % 5 == 4 { Value::Null } else { json!(orgs[i % 3]) },
                "email": format!("m{i}@example.com"),
                "phone": if i % 2 == 0 { format!("+86 138 0000 00{i:02}") } else { format!("010-6552 12{i:02}") },
                "vip": if i % 4 == 3 { Value::Null } else { json!(i % 2 == 0) },
                "born": format!("19{:02}-0{}-1{}", 60 + i, 1 + i % 9, i % 10),
                "met": format!("2024-03-0{}T1{}:3{}:00Z", 1 + i % 9, i % 10, i % 6),
                "score": if i % 7 == 0 { Value::Null } else { json!(i as i64 * 1000 - 5000) },
                "budget": json!(i as f64 * 1234.5),
                "tags": match i % 3 { 0 => json!(["x", "y"]), 1 => json!(["y"]), _ => json!([]) },
                "stage": if i % 2 == 0 { "new" } else { "won" },
                "note": notes(i),
            })
        })
        .collect();
    let (st, body) = app
        .post("/api/v1/data/member/batch", json!({"records": records}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let orgs_csv = export(&app, "org", "lang=zh-CN").await;
    let csv_a = export(&app, "member", "lang=zh-CN").await;
    let xlsx_a = export(&app, "member", "lang=en&format=xlsx").await;
    let text = String::from_utf8(csv_a.clone()).unwrap();
    assert!(text.starts_with("\u{FEFF}编号,姓名,机构,邮箱"), "{text}");
    assert!(text.contains("M-0001,成员0,华信科技,"), "{text}");
    assert!(text.contains("展会; 官网"), "options as labels: {text}");
    assert!(
        text.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\""),
        "a formula is escaped: {text}"
    );
    assert!(text.contains(",是,") && text.contains(",否,"), "{text}");
    assert_eq!(&xlsx_a[..2], b"PK", "an XLSX is a zip");

    // Into an empty database: the organisations first, then the members, from CSV.
    let empty = TestApp::spawn().await;
    empty.form(org.clone()).await;
    empty.form(member.clone()).await;
    let job = import(&empty, "org", "", orgs_csv.clone()).await;
    assert_eq!(job["progress"]["created"], json!(3), "{job}");
    let job = import(&empty, "member", "", csv_a.clone()).await;
    assert_eq!(job["progress"]["created"], json!(40), "{job}");
    assert_eq!(job["progress"]["rejected"], json!(0), "{job}");
    let computed: Vec<&Value> = job["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["field"].is_null())
        .collect();
    assert_eq!(computed.len(), 1, "only the autonumber is left out: {job}");
    let csv_b = export(&empty, "member", "lang=zh-CN").await;
    assert_eq!(
        String::from_utf8(csv_b).unwrap(),
        text,
        "export → import → export gives the same file"
    );
    assert_eq!(export(&empty, "org", "lang=zh-CN").await, orgs_csv);

    // And from the XLSX (English labels) into another empty database.
    let other = TestApp::spawn().await;
    other.form(org).await;
    other.form(member).await;
    import(&other, "org", "", orgs_csv).await;
    let job = import(&other, "member", "", xlsx_a).await;
    assert_eq!(job["progress"]["created"], json!(40), "{job}");
    assert_eq!(
        String::from_utf8(export(&other, "member", "lang=zh-CN").await).unwrap(),
        text,
        "the XLSX round trip too"
    );
    // A filtered export holds only what the filter selects.
    let won = export(
        &app,
        "member",
        &format!(
            "lang=en&filter={}",
            urlencode(&json!({"stage": "won"}).to_string())
        ),
    )
    .await;
    let won = String::from_utf8(won).unwrap();
    assert_eq!(won.matches(",Won,").count(), 20, "{won}");
    assert!(!won.contains(",New,"));
}

async fn import_as(app: &TestApp, token: &str, form: &str, query: &str, body: &str) -> Value {
    let r = app
        .client
        .post(app.url(&format!("/api/v1/data/{form}/import?wait=true&{query}")))
        .bearer_auth(token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let st = r.status();
    let job: Value = r.json().await.unwrap();
    assert_eq!(st, StatusCode::OK, "{job}");
    job
}

#[tokio::test]
async fn import_keys_find_records_by_their_stored_values() {
    let app = TestApp::spawn().await;
    app.form(json!({"name": "item", "label": {"en": "Item"}, "fields": [
        {"name": "sku", "type": "text"},
        {"name": "email", "type": "email"},
        {"name": "day", "type": "date"},
        {"name": "qty", "type": "integer"}]}))
        .await;
    let rec = app
        .create(
            "item",
            json!({"sku": "A", "email": "alice@example.com", "day": "2024-03-05", "qty": 1}),
        )
        .await;
    let t = app.token.clone();
    for (key, csv, want) in [
        (
            "email",
            "email,qty\nAlice@Example.com ,5\n",
            json!({"qty": 5}),
        ),
        ("day", "day,qty\n2024/3/5,6\n", json!({"qty": 6})),
        ("qty", "qty,sku\n006,B\n", json!({"sku": "B"})),
    ] {
        let job = import_as(&app, &t, "item", &format!("mode=upsert&key={key}"), csv).await;
        let p = &job["progress"];
        assert_eq!(
            (p["updated"].clone(), p["created"].clone()),
            (json!(1), json!(0)),
            "{key}: {job}"
        );
        let (_, now) = app
            .get(&format!(
                "/api/v1/data/item/{}",
                rec["id"].as_str().unwrap()
            ))
            .await;
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&now[k], v, "{key}");
        }
    }
    // A rejected row goes to the error file as it came, escaped once.
    let job = import_as(
        &app,
        &t,
        "item",
        "on_error=skip",
        "sku,qty\n'=1+2,lots\n-5,-5\n",
    )
    .await;
    assert_eq!(job["progress"]["rejected"], json!(1), "{job}");
    let r = app
        .client
        .get(app.url(&format!(
            "/api/v1/imports/{}/errors",
            job["id"].as_str().unwrap()
        )))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let errors = r.text().await.unwrap();
    assert!(errors.contains("\n2,'=1+2,lots,"), "{errors}");
    assert!(!errors.contains("''=1+2"), "{errors}");
    // A negative number is no formula: exported as it is; text starting with - is escaped.
    let csv = String::from_utf8(export(&app, "item", "").await).unwrap();
    assert!(csv.contains(",'-5,"), "the text -5: {csv}");
    assert!(csv.contains(",-5,"), "the number -5: {csv}");
}

#[tokio::test]
async fn a_reps_import_sees_only_what_the_rep_may_see() {
    let app = TestApp::spawn_with(&["--demo"]).await;
    let users = app.user_ids().await;
    let hidden = app
        .create(
            "lead",
            json!({"company": "别人的公司", "contact_name": "王五", "source": "website",
                   "phone": "13912345678", "owner": users["zhaojianguo"]}),
        )
        .await;
    let rep = app
        .login("wangfang@demo.trellis.dev", "demo-pass-2026")
        .await;
    let csv =
        "公司名称,联系人姓名,线索来源,手机号,线索评分\n新公司,李四,官网注册,+86 139-1234-5678,99\n";
    for dupes in ["rules", "merge"] {
        let job = import_as(
            &app,
            &rep,
            "lead",
            &format!("on_error=skip&dry_run=true&duplicates={dupes}"),
            csv,
        )
        .await;
        assert_eq!(job["status"], json!("done"), "{job}");
        let p = &job["progress"];
        assert_eq!(
            p["created"],
            json!(1),
            "{dupes}: the other lead is not hers: {job}"
        );
        assert_eq!(p["flagged"], json!(0), "{job}");
        let score = job["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["header"] == json!("线索评分"))
            .unwrap();
        assert!(
            score["field"].is_null(),
            "a rep may only read the score: {score}"
        );
        let text = job.to_string();
        assert!(!text.contains(hidden["id"].as_str().unwrap()), "{text}");
    }
    // Her export names owners by name: only administrators see users' e-mails.
    let mine = app
        .create(
            "lead",
            json!({"company": "她的公司", "contact_name": "赵六", "source": "website",
                   "phone": "13912345000", "owner": users["wangfang"]}),
        )
        .await;
    assert!(mine["id"].is_string(), "{mine}");
    let (_, list) = app.get("/api/v1/users").await;
    let name = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == json!(users["wangfang"]))
        .and_then(|u| u["name"].as_str())
        .unwrap()
        .to_owned();
    let r = app
        .client
        .get(app.url("/api/v1/data/lead/export?lang=zh-CN&fields=company,owner"))
        .bearer_auth(&rep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.contains("她的公司"), "{text}");
    assert!(text.contains(&name), "{text}");
    assert!(!text.contains("@demo.trellis.dev"), "{text}");
    let admin =
        String::from_utf8(export(&app, "lead", "lang=zh-CN&fields=company,owner").await).unwrap();
    assert!(admin.contains("wangfang@demo.trellis.dev"), "{admin}");
}

#[tokio::test]
async fn a_token_limited_to_some_forms_sees_only_their_import_jobs() {
    let app = TestApp::spawn_with(&["--demo"]).await;
    let rep = app
        .login("wangfang@demo.trellis.dev", "demo-pass-2026")
        .await;
    let job = import_as(
        &app,
        &rep,
        "lead",
        "dry_run=true",
        "公司名称,联系人姓名,线索来源,邮箱\n某公司,赵六,官网注册,z6@example.com\n",
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let (st, t) = app
        .call_as(
            Some(&rep),
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "customers only", "forms": ["customer"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let narrow = t["token"].as_str().unwrap();
    let (st, _) = app
        .call_as(
            Some(&rep),
            reqwest::Method::GET,
            &format!("/api/v1/imports/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "the rep sees her own job");
    for path in [
        format!("/api/v1/imports/{id}"),
        format!("/api/v1/imports/{id}/rows"),
        format!("/api/v1/imports/{id}/errors"),
    ] {
        let (st, _) = app
            .call_as(Some(narrow), reqwest::Method::GET, &path, None)
            .await;
        assert_eq!(
            st,
            StatusCode::NOT_FOUND,
            "{path}: a lead job, a customers-only token"
        );
    }
    let (_, list) = app
        .call_as(Some(narrow), reqwest::Method::GET, "/api/v1/imports", None)
        .await;
    assert_eq!(list["data"], json!([]), "{list}");
    let (_, list) = app
        .call_as(Some(&rep), reqwest::Method::GET, "/api/v1/imports", None)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn a_blocked_batch_names_only_records_the_caller_may_read() {
    let app = TestApp::spawn_with(&["--demo"]).await;
    let users = app.user_ids().await;
    let theirs = app
        .create(
            "customer",
            json!({"name": "保密科技有限公司", "type": "company", "owner": users["zhaojianguo"]}),
        )
        .await;
    let rep = app
        .login("wangfang@demo.trellis.dev", "demo-pass-2026")
        .await;
    let (st, body) = app
        .call_as(
            Some(&rep),
            reqwest::Method::POST,
            "/api/v1/data/customer/batch",
            Some(json!({"records": [{"name": "保密科技", "type": "company"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(errors(&body)[0].1, "duplicate");
    assert!(
        !body.to_string().contains(theirs["id"].as_str().unwrap()),
        "the other rep's customer stays unnamed: {body}"
    );
    // The administrator is told which record it is.
    let (st, body) = app
        .post(
            "/api/v1/data/customer/batch",
            json!({"records": [{"name": "保密科技", "type": "company"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["errors"][0]["rows"][0]["id"], theirs["id"]);
}

#[tokio::test]
async fn a_merge_changes_the_survivor_as_an_update_would() {
    let app = TestApp::spawn().await;
    app.form(
        json!({"name": "prospect", "label": {"en": "Prospect"}, "fields": [
        {"name": "name", "type": "text", "required": true},
        {"name": "phone", "type": "phone"},
        {"name": "email", "type": "email"},
        {"name": "source", "type": "select", "options": [{"value": "website"}, {"value": "expo"}]},
        {"name": "score", "type": "integer"}]}),
    )
    .await;
    for r in [
        json!({"name": "by_source", "label": {"en": "By source"}, "form": "prospect", "kind": "score",
            "field": "score", "script": "if record.source == \"website\" { 30 } else { 10 }"}),
        json!({"name": "reachable", "label": {"en": "Reachable"}, "form": "prospect", "kind": "validate",
            "script": "if value_or(record.phone, \"\") == \"\" && value_or(record.email, \"\") == \"\" { reject(\"phone\", \"a phone or an e-mail is needed\"); }"}),
    ] {
        let (st, body) = app.post("/api/v1/rules", r).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }
    app.form(
        json!({"name": "visit", "label": {"en": "Visit"}, "fields": [
        {"name": "host", "type": "relation", "target": "prospect"},
        {"name": "stops", "type": "subtable", "fields": [
            {"name": "prospect", "type": "relation", "target": "prospect"},
            {"name": "note", "type": "text"}]}]}),
    )
    .await;
    let a = app
        .create(
            "prospect",
            json!({"name": "ABC", "phone": "13800138000", "source": "expo"}),
        )
        .await;
    let b = app
        .create(
            "prospect",
            json!({"name": "ABC Ltd", "email": "abc@example.com", "source": "website"}),
        )
        .await;
    assert_eq!(
        (a["score"].clone(), b["score"].clone()),
        (json!(10), json!(30))
    );
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    // Left with neither a phone nor an e-mail, the survivor would break a rule: refused,
    // and nothing changes.
    let (st, body) = app
        .post(
            "/api/v1/data/prospect/merge",
            json!({"survivor": a_id, "merged": b_id, "take": {"phone": "merged", "email": "survivor"}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(errors(&body), vec![("phone".into(), "rule".into())]);
    let (st, _) = app.get(&format!("/api/v1/data/prospect/{b_id}")).await;
    assert_eq!(st, StatusCode::OK, "the refused merge deleted nothing");
    let (_, still) = app.get(&format!("/api/v1/data/prospect/{a_id}")).await;
    assert_eq!(still["version"], json!(1));
    let visit = app
        .create(
            "visit",
            json!({"host": b_id, "stops": [{"prospect": b_id, "note": "first"}, {"prospect": a_id, "note": "second"}]}),
        )
        .await;
    let visit_id = visit["id"].as_str().unwrap();
    // Taking the merged record's source re-scores the survivor.
    let (st, body) = app
        .post(
            "/api/v1/data/prospect/merge",
            json!({"survivor": a_id, "merged": b_id, "take": {"source": "merged"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let rec = &body["record"];
    assert_eq!(rec["source"], json!("website"));
    assert_eq!(
        rec["score"],
        json!(30),
        "the score rule ran on the survivor"
    );
    assert_eq!(rec["email"], json!("abc@example.com"));
    let (_, h) = app
        .get(&format!("/api/v1/data/prospect/{a_id}/history"))
        .await;
    let entries = h["data"].as_array().unwrap();
    let merge = entries.iter().find(|e| e["action"] == "merge").unwrap();
    assert_eq!(
        merge["changes"]["score"],
        json!({"before": 10, "after": 30})
    );
    assert_eq!(merge["changes"]["merged_from"]["after"]["id"], json!(b_id));
    // Relations follow, in subtable lines too, and each re-pointed record says so in its
    // own history.
    assert_eq!(
        body["repointed"],
        json!({"visit.host": 1, "visit.stops[].prospect": 1})
    );
    let (_, v) = app.get(&format!("/api/v1/data/visit/{visit_id}")).await;
    assert_eq!(v["host"], json!(a_id));
    assert_eq!(
        v["stops"],
        json!([{"prospect": a_id, "note": "first"}, {"prospect": a_id, "note": "second"}])
    );
    assert_eq!(v["version"], json!(3));
    let (_, h) = app
        .get(&format!("/api/v1/data/visit/{visit_id}/history"))
        .await;
    let actions: Vec<&str> = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "update").count(), 2, "{h}");
}
