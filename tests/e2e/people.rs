//! Users, teams, roles, sessions, public forms and the admin audit.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestApp, errors, lead_form};

async fn user(app: &TestApp, email: &str, extra: Value) -> String {
    let mut body = json!({"email": email, "password": "pass-word-1"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (st, u) = app.post("/api/v1/users", body).await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    u["id"].as_str().unwrap().to_owned()
}

fn viewer_role() -> Value {
    json!({"name": "viewer", "label": {"en": "Viewer", "zh-CN": "查看者"}, "forms": {
        "lead": {"read": "subordinates", "create": "own", "update": "own",
                 "fields": {"budget": "hidden", "score": "read"}}}})
}

#[tokio::test]
async fn roles_are_checked_stored_and_change_permissions_at_once() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let (st, body) = app
        .post(
            "/api/v1/roles",
            json!({"name": "bad", "label": {"en": "Bad"}, "forms": {
                "lead": {"read": "own", "fields": {"nope": "read"}, "filter": {"ghost": 1}},
                "ghost": {"read": "all"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let paths: Vec<String> = errors(&body).into_iter().map(|e| e.0).collect();
    assert!(paths.contains(&"forms.ghost".to_owned()), "{paths:?}");
    assert!(
        paths.contains(&"forms.lead.fields.nope".to_owned()),
        "{paths:?}"
    );
    let (st, body) = app
        .post(
            "/api/v1/roles",
            json!({"name": "bad", "label": {"en": "Bad"}, "forms": {"lead": {"read": "own", "filter": {"ghost": 1}}}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(errors(&body)[0].0, "forms.lead.filter.ghost");
    let (st, role) = app.post("/api/v1/roles", viewer_role()).await;
    assert_eq!(st, StatusCode::CREATED, "{role}");
    let (st, _) = app.post("/api/v1/roles", viewer_role()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // A boss and the boss's report, both viewers.
    let boss = user(&app, "boss@x.com", json!({"roles": ["viewer"]})).await;
    let rep = user(
        &app,
        "rep@x.com",
        json!({"roles": ["viewer"], "manager": boss}),
    )
    .await;
    let bt = app.login("boss@x.com", "pass-word-1").await;
    let rt = app.login("rep@x.com", "pass-word-1").await;
    let (st, r) = app
        .call_as(
            Some(&rt),
            Method::POST,
            "/api/v1/data/lead",
            Some(json!({"company": "R", "score": 5})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "score is read-only: {r}");
    let (st, r) = app
        .call_as(
            Some(&rt),
            Method::POST,
            "/api/v1/data/lead",
            Some(json!({"company": "R"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert!(r.get("budget").is_none());
    app.create("lead", json!({"company": "Admin's", "budget": 5}))
        .await;
    // The boss sees the report's lead (subordinates), the report does not see the boss's.
    let (_, list) = app
        .call_as(Some(&bt), Method::GET, "/api/v1/data/lead?count=true", None)
        .await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["data"][0]["owner"], json!(rep));
    // Changing the role changes what holders may do, without a new login.
    let mut wider = viewer_role();
    wider["forms"]["lead"]["read"] = json!("all");
    wider["forms"]["lead"]["fields"]["budget"] = json!("read");
    let (st, _) = app.put("/api/v1/roles/viewer", wider).await;
    assert_eq!(st, StatusCode::OK);
    let (_, list) = app
        .call_as(
            Some(&rt),
            Method::GET,
            "/api/v1/data/lead?count=true&sort=company",
            None,
        )
        .await;
    assert_eq!(list["total"], 2, "{list}");
    assert_eq!(list["data"][0]["budget"], 5.0);
    // Changing needs reading: a role that updates all but reads only some rows does not
    // reach the others, not even to answer with them.
    let mut blind = viewer_role();
    blind["forms"]["lead"]["update"] = json!("all");
    let (st, _) = app.put("/api/v1/roles/viewer", blind).await;
    assert_eq!(st, StatusCode::OK);
    let admins = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (st, body) = app
        .call_as(
            Some(&bt),
            Method::PATCH,
            &format!("/api/v1/data/lead/{admins}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    // A role in use cannot be deleted; a user's roles can be replaced.
    let (st, _) = app.delete("/api/v1/roles/viewer").await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, u) = app
        .patch(&format!("/api/v1/users/{rep}"), json!({"roles": []}))
        .await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(u["roles"], json!([]));
    let (st, _) = app
        .call_as(Some(&rt), Method::GET, "/api/v1/data/lead", None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "no role, no records");
    let (st, _) = app
        .call_as(Some(&rt), Method::GET, "/api/v1/roles", None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = app
        .patch(&format!("/api/v1/users/{rep}"), json!({"roles": ["ghost"]}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&body),
        vec![("roles[0]".to_owned(), "not_found".to_owned())]
    );
}

#[tokio::test]
async fn reporting_lines_teams_and_disabled_users() {
    let app = TestApp::spawn().await;
    let a = user(&app, "a@x.com", json!({})).await;
    let b = user(&app, "b@x.com", json!({"manager": a})).await;
    let c = user(&app, "c@x.com", json!({"manager": b})).await;
    let (st, body) = app
        .patch(&format!("/api/v1/users/{a}"), json!({"manager": c}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("manager".to_owned(), "cycle".to_owned())]
    );
    let (st, t) = app
        .post(
            "/api/v1/teams",
            json!({"name": "east", "label": {"en": "East"}, "manager": a, "members": [b]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let (st, t) = app
        .patch(
            "/api/v1/teams/east",
            json!({"members": [b, c], "manager": null}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["manager"], Value::Null);
    assert_eq!(t["members"].as_array().unwrap().len(), 2);
    let (st, u) = app
        .patch(&format!("/api/v1/users/{c}"), json!({"teams": []}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(u["teams"], json!([]));
    let (_, t) = app.get("/api/v1/teams/east").await;
    assert_eq!(t["members"], json!([b]));
    let (st, _) = app.post("/api/v1/teams", json!({"name": "Bad Name"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // Disabling ends sessions and logins.
    let token = app.login("c@x.com", "pass-word-1").await;
    let (st, _) = app
        .patch(&format!("/api/v1/users/{c}"), json!({"active": false}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = app
        .call_as(Some(&token), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = app
        .call_as(
            None,
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": "c@x.com", "password": "pass-word-1"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_employee_leaves_and_their_records_stay_with_the_company() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    app.form(json!({"name": "note", "label": {"en": "Note"}, "fields": [{"name": "text", "type": "text"}]}))
        .await;
    let leaver = user(&app, "leaver@x.com", json!({})).await;
    let heir = user(&app, "heir@x.com", json!({})).await;
    for i in 0..3 {
        app.create("lead", json!({"company": format!("L{i}"), "owner": leaver}))
            .await;
    }
    app.create("note", json!({"text": "n", "owner": leaver}))
        .await;
    let kept = app.create("lead", json!({"company": "Other"})).await;
    let (st, body) = app
        .post(
            &format!("/api/v1/users/{leaver}/reassign"),
            json!({"to": heir}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 4);
    let (_, list) = app
        .list(
            "lead",
            &[
                ("filter", json!({"owner": heir}).to_string()),
                ("count", "true".into()),
            ],
        )
        .await;
    assert_eq!(list["total"], 3);
    let (_, k) = app
        .get(&format!(
            "/api/v1/data/lead/{}",
            kept["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(k["version"], 1, "records of others are untouched");
    let id = list["data"][0]["id"].as_str().unwrap();
    let (_, h) = app.get(&format!("/api/v1/data/lead/{id}/history")).await;
    let last = h["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["changes"]["owner"],
        json!({"before": leaver, "after": heir})
    );
    let (_, audit) = app.get("/api/v1/audit?action=reassign").await;
    assert_eq!(
        audit["data"].as_array().unwrap().len(),
        2,
        "one entry per form: {audit}"
    );
    let (st, body) = app
        .post(
            &format!("/api/v1/users/{leaver}/reassign"),
            json!({"to": "ghost"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("to".to_owned(), "not_found".to_owned())]
    );
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_to_write() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let resp = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": crate::harness::ADMIN_EMAIL, "password": crate::harness::ADMIN_PASSWORD, "cookie": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let plain = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "text/plain")
        .body(json!({"email": crate::harness::ADMIN_EMAIL, "password": crate::harness::ADMIN_PASSWORD}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        plain.status(),
        StatusCode::BAD_REQUEST,
        "a cross-site form cannot log anyone in"
    );
    let set = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert!(
        body.get("token").is_none(),
        "the secret stays in the cookie"
    );
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let send = |m: Method, path: &str, csrf: Option<&str>| {
        let mut rb = app
            .client
            .request(m, app.url(path))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(json!({"company": "Cookie Co"}).to_string());
        if let Some(c) = csrf {
            rb = rb.header("x-csrf-token", c);
        }
        rb.send()
    };
    let r = send(Method::GET, "/api/v1/me", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(Method::POST, "/api/v1/data/lead", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(
        errors(&problem),
        vec![("x-csrf-token".to_owned(), "csrf".to_owned())]
    );
    let r = send(Method::POST, "/api/v1/data/lead", Some("forged"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(Method::POST, "/api/v1/data/lead", Some(&csrf))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send(Method::GET, "/api/v1/auth/csrf", None).await.unwrap();
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["csrf_token"], json!(csrf));
    let r = send(Method::POST, "/api/v1/auth/logout", Some(&csrf))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        r.headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = send(Method::GET, "/api/v1/me", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn public_forms_take_anonymous_leads_with_limits() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let owner = user(&app, "inbox@x.com", json!({})).await;
    let (st, body) = app
        .put(
            "/api/v1/forms/lead/public",
            json!({"fields": ["company", "email", "employees", "score"], "values": {"source": "website"},
                "owner": owner, "honeypot": "company", "rate_per_minute": 3}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the honeypot cannot be a field: {body}"
    );
    let (st, p) = app
        .put(
            "/api/v1/forms/lead/public",
            json!({"fields": ["company", "email", "employees"], "values": {"source": "website"},
                "owner": owner, "honeypot": "fax", "rate_per_minute": 3}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let url = p["url"].as_str().unwrap().to_owned();
    let (st, body) = app
        .call_as(
            None,
            Method::POST,
            &url,
            Some(json!({"company": "Web Co", "email": "a@web.co", "employees": 12})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let r = app
        .client
        .post(app.url(&url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("company=Form+Co&employees=40&fax=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (st, body) = app
        .call_as(
            None,
            Method::POST,
            &url,
            Some(json!({"company": "Bot", "fax": "555-1234"})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "a bot is answered as usual: {body}"
    );
    let (st, body) = app
        .call_as(
            None,
            Method::POST,
            &url,
            Some(json!({"company": "Sneaky", "score": 100})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth a minute: {body}"
    );
    let (_, list) = app
        .list(
            "lead",
            &[("sort", "company".into()), ("count", "true".into())],
        )
        .await;
    assert_eq!(list["total"], 2, "the bot's submission was dropped: {list}");
    let form_co = &list["data"][0];
    assert_eq!(form_co["company"], "Form Co");
    assert_eq!(form_co["employees"], 40);
    assert_eq!(form_co["owner"], json!(owner));
    assert_eq!(form_co["source"], "website");
    assert_eq!(form_co["created_by"], Value::Null);
    // A field outside the whitelist is refused by name (on a fresh limit: new key).
    let (_, p) = app
        .call(
            Method::PUT,
            "/api/v1/forms/lead/public?rotate=true",
            Some(json!({"fields": ["company", "email"], "owner": owner})),
        )
        .await;
    assert_ne!(p["url"].as_str().unwrap(), url);
    let (st, _) = app
        .call_as(None, Method::POST, &url, Some(json!({"company": "Old"})))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "the old key is gone");
    let (st, body) = app
        .call_as(
            None,
            Method::POST,
            p["url"].as_str().unwrap(),
            Some(json!({"company": "X", "score": 100})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        errors(&body),
        vec![("score".to_owned(), "not_allowed".to_owned())]
    );
    // A taken e-mail is not told to a visitor: answered as usual, nothing stored.
    let (st, body) = app
        .call_as(
            None,
            Method::POST,
            p["url"].as_str().unwrap(),
            Some(json!({"company": "Again", "email": "a@web.co"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (_, list) = app.list("lead", &[("count", "true".into())]).await;
    assert_eq!(list["total"], 2);
    let (st, _) = app.delete("/api/v1/forms/lead/public").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app
        .call_as(
            None,
            Method::POST,
            p["url"].as_str().unwrap(),
            Some(json!({"company": "Y"})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_admin_audit_records_who_did_what() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let (st, _) = app
        .call_as(
            None,
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": crate::harness::ADMIN_EMAIL, "password": "nope"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = app.post("/api/v1/roles", viewer_role()).await;
    assert_eq!(st, StatusCode::CREATED);
    let u = user(&app, "v@x.com", json!({"roles": ["viewer"]})).await;
    let (_, t) = app.post("/api/v1/tokens", json!({"name": "ci"})).await;
    let (_, list) = app.get("/api/v1/tokens").await;
    let tid = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (st, _) = app.delete(&format!("/api/v1/tokens/{tid}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert!(t["token"].is_string());
    let (st, all) = app.get("/api/v1/audit").await;
    assert_eq!(st, StatusCode::OK);
    let actions: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "login",
        "login.failed",
        "role.create",
        "user.create",
        "user.roles",
        "token.create",
        "token.revoke",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let (_, failed) = app.get("/api/v1/audit?action=login.failed").await;
    let f = &failed["data"][0];
    assert_eq!(f["target"], crate::harness::ADMIN_EMAIL);
    assert_eq!(f["ip"], "127.0.0.1");
    let (_, roles) = app
        .get(&format!("/api/v1/audit?action=user.&target={u}"))
        .await;
    assert!(
        roles["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "user.roles" && e["detail"]["after"] == json!(["viewer"])),
        "{roles}"
    );
    let (_, page) = app.get("/api/v1/audit?limit=2").await;
    let next = page["next_before"].as_i64().unwrap();
    let (_, page2) = app
        .get(&format!("/api/v1/audit?limit=2&before={next}"))
        .await;
    assert!(page2["data"][0]["id"].as_i64().unwrap() < next);
    let vt = app.login("v@x.com", "pass-word-1").await;
    let (st, _) = app
        .call_as(Some(&vt), Method::GET, "/api/v1/audit", None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn files_are_as_private_as_the_records_that_hold_them() {
    let app = TestApp::spawn().await;
    app.form(
        json!({"name": "contract", "label": {"en": "Contract"}, "fields": [
        {"name": "title", "type": "text"},
        {"name": "scan", "type": "attachment"},
        {"name": "extras", "type": "attachment", "multiple": true},
        {"name": "secret_scan", "type": "attachment"}]}),
    )
    .await;
    let (st, _) = app
        .post(
            "/api/v1/roles",
            json!({"name": "clerk", "label": {"en": "Clerk"}, "forms": {
            "contract": {"read": "own", "create": "own", "fields": {"secret_scan": "hidden"}}}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let a = user(&app, "a@x.com", json!({"roles": ["clerk"]})).await;
    user(&app, "b@x.com", json!({"roles": ["clerk"]})).await;
    let ta = app.login("a@x.com", "pass-word-1").await;
    let tb = app.login("b@x.com", "pass-word-1").await;
    let upload = |bytes: &'static [u8]| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url("/api/v1/files?name=f.pdf"))
                .bearer_auth(&app.token)
                .header("content-type", "application/pdf")
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (one, many, secret) = (
        upload(b"one").await,
        upload(b"two").await,
        upload(b"three").await,
    );
    app.create(
        "contract",
        json!({"title": "A's", "owner": a, "scan": {"id": one},
        "extras": [{"id": many}], "secret_scan": {"id": secret}}),
    )
    .await;
    let get = |token: &str, id: &str| {
        let (app, token, path) = (&app, token.to_owned(), format!("/api/v1/files/{id}"));
        async move { app.call_as(Some(&token), Method::GET, &path, None).await.0 }
    };
    assert_eq!(get(&ta, &one).await, StatusCode::OK);
    assert_eq!(get(&ta, &many).await, StatusCode::OK);
    assert_eq!(
        get(&ta, &secret).await,
        StatusCode::NOT_FOUND,
        "a hidden field's file"
    );
    for f in [&one, &many, &secret] {
        assert_eq!(get(&tb, f).await, StatusCode::NOT_FOUND, "another's record");
    }
    assert_eq!(get(&app.token, &secret).await, StatusCode::OK);
    // Nobody but its uploader can attach a file to a record of theirs.
    let (st, body) = app
        .call_as(
            Some(&tb),
            Method::POST,
            "/api/v1/data/contract",
            Some(json!({"title": "B's", "scan": {"id": one}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body),
        vec![("scan".to_owned(), "not_found".to_owned())]
    );
}
