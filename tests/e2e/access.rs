//! Roles, scopes and field levels on the demo CRM: who sees and changes which records
//! and fields, through every way a record can be read.

use std::collections::{HashMap, HashSet};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestApp, errors, urlencode};

const PW: &str = "demo-pass-2026";

fn email(who: &str) -> String {
    format!("{who}@demo.trellis.dev")
}

/// The demo CRM with a session for each person the tests act as.
struct Crm {
    app: TestApp,
    ids: HashMap<String, String>,
    tokens: HashMap<String, String>,
}

impl Crm {
    async fn start() -> Crm {
        let app = TestApp::spawn_with(&["--demo"]).await;
        let ids = app.user_ids().await;
        let mut crm = Crm {
            app,
            ids,
            tokens: HashMap::new(),
        };
        for who in [
            "wangfang",
            "zhangmin",
            "wanglei",
            "chenjing",
            "zhaojianguo",
            "hejun",
            "zhengxiuying",
            "zhouli",
        ] {
            let t = crm.app.login(&email(who), PW).await;
            crm.tokens.insert(who.to_owned(), t);
        }
        crm
    }

    fn id(&self, who: &str) -> &str {
        &self.ids[who]
    }

    async fn call(
        &self,
        who: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = if who == "admin" {
            self.app.token.clone()
        } else {
            self.tokens[who].clone()
        };
        self.app.call_as(Some(&token), method, path, body).await
    }

    async fn get(&self, who: &str, path: &str) -> (StatusCode, Value) {
        self.call(who, Method::GET, path, None).await
    }

    /// Every record of a list, following cursors; asserts 200.
    async fn all(&self, who: &str, form: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/data/{form}?limit=3&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", urlencode(c)));
            }
            let (st, body) = self.get(who, &path).await;
            assert_eq!(st, StatusCode::OK, "{who} lists {form}: {body}");
            out.extend(body["data"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    /// An export as rows of (column → cell); asserts 200.
    async fn export(&self, who: &str, form: &str, query: &str) -> Vec<HashMap<String, String>> {
        let token = if who == "admin" {
            self.app.token.clone()
        } else {
            self.tokens[who].clone()
        };
        let r = self
            .app
            .client
            .get(self.app.url(&format!("/api/v1/data/{form}/export?{query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{who} exports {form}");
        let text = r.text().await.unwrap();
        let text = text
            .strip_prefix('\u{FEFF}')
            .expect("a byte-order mark for spreadsheets");
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
        rd.records()
            .map(|r| {
                let r = r.unwrap();
                header
                    .iter()
                    .cloned()
                    .zip(r.iter().map(str::to_owned))
                    .collect()
            })
            .collect()
    }

    async fn count(&self, who: &str, form: &str, filter: Value) -> u64 {
        let (st, body) = self
            .get(
                who,
                &format!(
                    "/api/v1/data/{form}?count=true&limit=1&filter={}",
                    urlencode(&filter.to_string())
                ),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        body["total"].as_u64().unwrap()
    }

    fn owners(recs: &[Value]) -> HashSet<String> {
        recs.iter()
            .map(|r| r["owner"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn sales_reps_see_and_change_only_their_own_records() {
    let crm = Crm::start().await;
    let me = crm.id("wangfang").to_owned();
    let other = crm.id("zhangmin").to_owned();
    // Lists, counts and cursors stay within the rep's own leads.
    let mine = crm.all("wangfang", "lead", "sort=-score").await;
    assert!(!mine.is_empty());
    assert_eq!(Crm::owners(&mine), HashSet::from([me.clone()]));
    let admin_count = crm.count("admin", "lead", json!({"owner": me})).await;
    assert_eq!(mine.len() as u64, admin_count);
    assert_eq!(crm.count("wangfang", "lead", json!({})).await, admin_count);
    let exported = crm.export("wangfang", "lead", "sort=-score").await;
    assert_eq!(
        exported.len() as u64,
        admin_count,
        "the export holds the same rows"
    );
    assert!(exported.iter().all(|r| r["owner"] == me));
    // Another rep's lead: not found, whichever way it is asked for.
    let theirs = crm
        .all(
            "admin",
            "lead",
            &format!("filter={}", urlencode(&json!({"owner": other}).to_string())),
        )
        .await;
    let tid = theirs[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/data/lead/{tid}");
    let (st, body) = crm.get("wangfang", &path).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["type"], "https://trellis.dev/errors/record_not_found");
    let (st, _) = crm.get("wangfang", &format!("{path}/history")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for (m, b) in [
        (Method::PATCH, Some(json!({"status": "lost"}))),
        (Method::DELETE, None),
    ] {
        let (st, body) = crm.call("wangfang", m, &path, b).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    }
    assert_eq!(
        crm.count("wangfang", "lead", json!({"id": tid})).await,
        0,
        "a filter on the id finds nothing either"
    );
    // Expanding a relation to a lead the rep cannot read gives null.
    let fu = crm
        .call(
            "admin",
            Method::POST,
            "/api/v1/data/followup",
            Some(json!({"date": "2026-11-20", "method": "phone", "summary": "x", "lead": tid, "owner": me})),
        )
        .await;
    assert_eq!(fu.0, StatusCode::CREATED, "{}", fu.1);
    let (st, got) = crm
        .get(
            "wangfang",
            &format!(
                "/api/v1/data/followup/{}?expand=lead",
                fu.1["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["lead"], json!(tid));
    assert_eq!(got["expand"]["lead"], Value::Null);
    let listed = crm.all("wangfang", "followup", "expand=lead").await;
    let row = listed.iter().find(|r| r["id"] == fu.1["id"]).unwrap();
    assert_eq!(row["expand"]["lead"], Value::Null);
    // Nor can a relation path probe it.
    assert_eq!(
        crm.count(
            "wangfang",
            "followup",
            json!({"lead.company": theirs[0]["company"]})
        )
        .await,
        0
    );
    // Creating for someone else, or a batch that does, is refused; for oneself it works.
    let (st, body) = crm
        .call(
            "wangfang",
            Method::POST,
            "/api/v1/data/lead",
            Some(json!({"company": "Gift", "owner": other})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        errors(&body),
        vec![("owner".to_owned(), "owner_out_of_scope".to_owned())]
    );
    let (st, body) = crm
        .call(
            "wangfang",
            Method::POST,
            "/api/v1/data/lead/batch",
            Some(json!({"records": [{"company": "A"}, {"company": "B", "owner": other}]})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(errors(&body)[0].0, "records[1].owner");
    let (st, created) = crm
        .call(
            "wangfang",
            Method::POST,
            "/api/v1/data/lead",
            Some(json!({"company": "Mine", "contact_name": "Wang", "source": "website", "phone": "13900001111"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(created["owner"], json!(me));
    // Scores and grades come from rules: read-only for reps, and the refusal names the field.
    let own = format!("/api/v1/data/lead/{}", created["id"].as_str().unwrap());
    let (st, body) = crm
        .call("wangfang", Method::PATCH, &own, Some(json!({"score": 99})))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        errors(&body),
        vec![("score".to_owned(), "read_only".to_owned())]
    );
    let (st, body) = crm
        .call(
            "wangfang",
            Method::PATCH,
            &own,
            Some(json!({"status": "contacted"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // A rep cannot give their lead away, nor leave it without an owner.
    for owner in [json!(other), Value::Null] {
        let (st, body) = crm
            .call(
                "wangfang",
                Method::PATCH,
                &own,
                Some(json!({"owner": owner})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    }
    // A record they cannot read is, to them, a record that does not exist.
    let filter = urlencode(&json!({"owner": other}).to_string());
    let their_customer = crm
        .all("admin", "customer", &format!("filter={filter}"))
        .await;
    let (st, body) = crm
        .call(
            "wangfang",
            Method::POST,
            "/api/v1/data/contact",
            Some(json!({"name": "Spy", "customer": their_customer[0]["id"]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("customer".to_owned(), "not_found".to_owned())]
    );
}

#[tokio::test]
async fn managers_see_their_team_and_the_director_sees_everything() {
    let crm = Crm::start().await;
    let east: HashSet<String> = ["wangfang", "zhangmin", "chenjing"]
        .iter()
        .map(|w| crm.id(w).to_owned())
        .collect();
    let total = crm.count("admin", "lead", json!({})).await;
    let team = crm.all("chenjing", "lead", "").await;
    assert!(
        Crm::owners(&team).is_subset(&east),
        "{:?}",
        Crm::owners(&team)
    );
    let east_list: Vec<&str> = east.iter().map(String::as_str).collect();
    assert_eq!(
        team.len() as u64,
        crm.count("admin", "lead", json!({"owner": {"$in": east_list}}))
            .await
    );
    assert!((team.len() as u64) < total);
    // A north lead is out of the east manager's reach.
    let north = crm
        .all(
            "admin",
            "lead",
            &format!(
                "filter={}",
                urlencode(&json!({"owner": crm.id("wanglei")}).to_string())
            ),
        )
        .await;
    let (st, _) = crm
        .get(
            "chenjing",
            &format!("/api/v1/data/lead/{}", north[0]["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The director sees every lead and every customer's registered capital.
    assert_eq!(crm.count("zhaojianguo", "lead", json!({})).await, total);
    let customers = crm.all("zhaojianguo", "customer", "").await;
    assert!(
        customers
            .iter()
            .all(|c| c.get("registered_capital").is_some())
    );
    // The manager may hand a team member's lead to another; the rep may not.
    let lead = crm
        .all(
            "admin",
            "lead",
            &format!(
                "filter={}",
                urlencode(&json!({"owner": crm.id("wangfang")}).to_string())
            ),
        )
        .await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, body) = crm
        .call(
            "wangfang",
            Method::POST,
            "/api/v1/data/lead/reassign",
            Some(json!({"ids": [lead], "to": crm.id("zhangmin")})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (st, body) = crm
        .call(
            "chenjing",
            Method::POST,
            "/api/v1/data/lead/reassign",
            Some(json!({"ids": [lead], "to": crm.id("zhangmin")})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 1);
    let (st, h) = crm
        .get("zhangmin", &format!("/api/v1/data/lead/{lead}/history"))
        .await;
    assert_eq!(st, StatusCode::OK, "{h}");
    let last = h["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["changes"]["owner"]["before"],
        json!(crm.id("wangfang"))
    );
    assert_eq!(last["changes"]["owner"]["after"], json!(crm.id("zhangmin")));
    assert_eq!(last["actor"], json!(crm.id("chenjing")));
    let (st, _) = crm
        .get("wangfang", &format!("/api/v1/data/lead/{lead}"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "the old owner no longer sees it");
}

#[tokio::test]
async fn warehouse_sees_orders_to_ship_with_status_and_lines_only() {
    let crm = Crm::start().await;
    let orders = crm.all("hejun", "order", "").await;
    let pending = crm
        .count("admin", "order", json!({"status": "pending_shipment"}))
        .await;
    assert!(pending > 0);
    assert_eq!(orders.len() as u64, pending);
    let system: HashSet<&str> = [
        "id",
        "version",
        "created_at",
        "updated_at",
        "created_by",
        "owner",
    ]
    .into();
    for o in &orders {
        assert_eq!(o["status"], "pending_shipment");
        let keys: HashSet<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        let extra: HashSet<&str> = keys.difference(&system).copied().collect();
        assert_eq!(extra, HashSet::from(["status", "lines"]), "{o}");
    }
    let to_ship = crm.export("hejun", "order", "").await;
    assert_eq!(to_ship.len(), orders.len());
    let cols: HashSet<&str> = to_ship[0].keys().map(String::as_str).collect();
    assert_eq!(
        cols,
        HashSet::from(["id", "status", "lines", "owner", "created_at", "updated_at"])
    );
    let other = crm
        .all(
            "admin",
            "order",
            &format!(
                "filter={}",
                urlencode(&json!({"status": "completed"}).to_string())
            ),
        )
        .await;
    let (st, _) = crm
        .get(
            "hejun",
            &format!("/api/v1/data/order/{}", other[0]["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let path = format!("/api/v1/data/order/{}", orders[0]["id"].as_str().unwrap());
    let (st, body) = crm
        .call("hejun", Method::PATCH, &path, Some(json!({"lines": []})))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        errors(&body),
        vec![("lines".to_owned(), "read_only".to_owned())]
    );
    let (st, body) = crm
        .call(
            "hejun",
            Method::PATCH,
            &path,
            Some(json!({"status": "shipped"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body.get("total").is_none() && body.get("customer").is_none(),
        "{body}"
    );
    // Hidden fields are not there to filter, sort, select or expand on.
    for q in [
        format!(
            "filter={}",
            urlencode(&json!({"discount_pct": {"$gt": 0}}).to_string())
        ),
        "sort=-date".to_owned(),
        "fields=customer".to_owned(),
        "expand=customer".to_owned(),
    ] {
        let (st, body) = crm.get("hejun", &format!("/api/v1/data/order?{q}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {body}");
    }
    let (st, _) = crm.get("hejun", "/api/v1/data/lead").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = crm.get("hejun", "/api/v1/data/lead/export").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn finance_reads_everything_changes_orders_and_deletes_nothing() {
    let crm = Crm::start().await;
    let orders = crm.all("zhengxiuying", "order", "").await;
    assert_eq!(
        orders.len() as u64,
        crm.count("admin", "order", json!({})).await
    );
    let path = format!("/api/v1/data/order/{}", orders[0]["id"].as_str().unwrap());
    let (st, body) = crm
        .call(
            "zhengxiuying",
            Method::PATCH,
            &path,
            Some(json!({"invoice_title": "ACME Ltd"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = crm.call("zhengxiuying", Method::DELETE, &path, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let leads = crm.all("zhengxiuying", "lead", "").await;
    assert_eq!(
        leads.len() as u64,
        crm.count("admin", "lead", json!({})).await
    );
    let (st, _) = crm
        .call(
            "zhengxiuying",
            Method::PATCH,
            &format!("/api/v1/data/lead/{}", leads[0]["id"].as_str().unwrap()),
            Some(json!({"status": "lost"})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "read-only outside orders, payments, contracts"
    );
}

#[tokio::test]
async fn a_hidden_field_never_appears() {
    let crm = Crm::start().await;
    // A customer of the rep's, with a registered capital the rep must never see.
    let (st, c) = crm
        .call(
            "admin",
            Method::POST,
            "/api/v1/data/customer",
            Some(
                json!({"name": "Secretive Ltd", "type": "company", "registered_capital": 7654321,
                "owner": crm.id("wangfang")}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/data/customer/{id}");
    let (st, _) = crm
        .call(
            "admin",
            Method::PATCH,
            &path,
            Some(json!({"registered_capital": 8000000})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = crm
        .call("admin", Method::PATCH, &path, Some(json!({"city": "上海"})))
        .await;
    assert_eq!(st, StatusCode::OK);
    let leaks = |what: &str, v: &Value| {
        let s = v.to_string();
        assert!(
            !s.contains("registered_capital") && !s.contains("7654321") && !s.contains("8000000"),
            "{what} leaks: {s}"
        );
    };
    let (st, got) = crm.get("wangfang", &path).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["name"], "Secretive Ltd");
    leaks("get", &got);
    let exported = crm.export("wangfang", "customer", "").await;
    assert!(exported.iter().any(|r| r["id"] == id));
    assert!(
        exported
            .iter()
            .all(|r| !r.contains_key("registered_capital"))
    );
    let big = crm.export("admin", "customer", "").await;
    assert!(
        big.iter()
            .any(|r| r["registered_capital"].starts_with("8000000")),
        "the admin's view has it"
    );
    let (st, _) = crm
        .get(
            "wangfang",
            "/api/v1/data/customer/export?fields=registered_capital",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let listed = crm.all("wangfang", "customer", "").await;
    assert!(listed.iter().any(|r| r["id"] == json!(id)));
    leaks("list", &json!(listed));
    let (st, h) = crm.get("wangfang", &format!("{path}/history")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        h["data"].as_array().unwrap().len(),
        2,
        "the create and the city change; the capital change is not the rep's business: {h}"
    );
    leaks("history", &h);
    // Through a relation: a contact of the customer, expanded.
    let (st, contact) = crm
        .call(
            "wangfang",
            Method::POST,
            "/api/v1/data/contact",
            Some(json!({"customer": id, "name": "Li"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{contact}");
    let (st, ex) = crm
        .get(
            "wangfang",
            &format!(
                "/api/v1/data/contact/{}?expand=customer",
                contact["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ex["expand"]["customer"]["name"], "Secretive Ltd");
    leaks("expand", &ex);
    let expanded = crm.all("wangfang", "contact", "expand=customer").await;
    leaks("list expand", &json!(expanded));
    // Asking for it, filtering, sorting or probing through a relation: unknown field.
    for q in [
        "fields=registered_capital".to_owned(),
        "sort=-registered_capital".to_owned(),
        format!(
            "filter={}",
            urlencode(&json!({"registered_capital": {"$gt": 1}}).to_string())
        ),
    ] {
        let (st, body) = crm
            .get("wangfang", &format!("/api/v1/data/customer?{q}"))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(!body.to_string().contains("7654321"));
    }
    let (st, body) = crm
        .get(
            "wangfang",
            &format!(
                "/api/v1/data/contact?filter={}",
                urlencode(&json!({"customer.registered_capital": {"$gt": 1}}).to_string())
            ),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    // Writing it is refused by name, without echoing a value, and the same whether the
    // value sent is right or wrong (no guessing).
    for guess in [1, 8000000] {
        let (st, body) = crm
            .call(
                "wangfang",
                Method::PATCH,
                &path,
                Some(json!({"registered_capital": guess})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(
            errors(&body),
            vec![("registered_capital".to_owned(), "read_only".to_owned())]
        );
        assert!(!body.to_string().contains("7654321"), "{body}");
    }
    // The rep's own view of their permissions says so.
    let (_, me) = crm.get("wangfang", "/api/v1/me").await;
    assert_eq!(me["roles"], json!(["sales_rep"]));
    assert_eq!(
        me["permissions"]["customer"]["fields"]["registered_capital"],
        "hidden"
    );
    assert_eq!(me["permissions"]["lead"]["read"], "own");
    assert!(me["permissions"].get("ticket").is_none());
}

#[tokio::test]
async fn a_read_only_token_writes_nothing_anywhere() {
    let app = TestApp::spawn_with(&["--demo"]).await;
    let (st, t) = app
        .post(
            "/api/v1/tokens",
            json!({"name": "report", "read_only": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let ro = t["token"].as_str().unwrap().to_owned();
    let (_, doc) = app.get("/api/v1/openapi.json").await;
    let (_, before) = app.get("/api/v1/audit?limit=1").await;
    let lead_id = app.list("lead", &[("limit", "1".into())]).await.1["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            // Report runs are reads that take their input in a POST body.
            let report_read = path == "/api/v1/reports/preview"
                || (path.starts_with("/api/v1/reports/") && path.ends_with("/run"));
            if item.get(method).is_none()
                || path == "/api/v1/auth/login"
                || path.starts_with("/api/v1/public/")
                || report_read
            {
                continue;
            }
            let concrete = path
                .replace("{form}", "lead")
                .replace("{id}", &lead_id)
                .replace("{name}", "crm")
                .replace("{key}", "x");
            let body = if path.ends_with("/batch") {
                json!({"records": [{"company": "X"}]})
            } else if path.ends_with("/reassign") {
                json!({"ids": [lead_id], "to": "x"})
            } else {
                json!({"company": "X", "name": "x", "status": "lost"})
            };
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (st, body) = app.call_as(Some(&ro), m, &concrete, Some(body)).await;
            assert_eq!(
                st,
                StatusCode::FORBIDDEN,
                "{method} {path} with a read-only token: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked > 25, "walked {checked} writes");
    let (st, body) = app
        .call_as(
            Some(&ro),
            Method::POST,
            "/api/v1/reports/sales_funnel/run",
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "a read-only token runs reports: {body}");
    // Reads work, and nothing was written.
    let (st, _) = app
        .call_as(Some(&ro), Method::GET, "/api/v1/data/lead", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, after) = app.get("/api/v1/audit?limit=1").await;
    assert_eq!(
        before["data"][0]["id"], after["data"][0]["id"],
        "no audit event since the token was made"
    );
}

#[tokio::test]
async fn tokens_are_limited_to_their_forms_and_their_users_roles() {
    let crm = Crm::start().await;
    let (st, t) = crm
        .call(
            "wangfang",
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "sync", "forms": ["lead"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let tok = t["token"].as_str().unwrap();
    let (st, body) = crm
        .app
        .call_as(Some(tok), Method::GET, "/api/v1/data/lead", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        Crm::owners(body["data"].as_array().unwrap()),
        HashSet::from([crm.id("wangfang").to_owned()]),
        "never more than the user's roles"
    );
    let (st, _) = crm
        .app
        .call_as(Some(tok), Method::GET, "/api/v1/data/customer", None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}
