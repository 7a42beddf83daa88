//! Authentication, tokens, operations endpoints and the OpenAPI document.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_EMAIL, TestApp, lead_form};

#[tokio::test]
async fn every_route_but_the_public_ones_needs_a_token() {
    let app = TestApp::spawn().await;
    app.form(lead_form()).await;
    let (_, doc) = app.get("/api/v1/openapi.json").await;
    let public = [
        "/api/v1/auth/login",
        "/api/v1/public/{key}",
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ];
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path
                .replace("{form}", "lead")
                .replace("{id}", "x")
                .replace("{name}", "crm");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for token in [None, Some("trl_not_a_real_token")] {
                let (st, body) = app
                    .call_as(token, m.clone(), &concrete, Some(json!({})))
                    .await;
                if public.contains(&path.as_str()) {
                    assert_ne!(st, StatusCode::UNAUTHORIZED, "{method} {path} is public");
                } else {
                    assert_eq!(
                        st,
                        StatusCode::UNAUTHORIZED,
                        "{method} {path} without a valid token: {body}"
                    );
                    assert_eq!(body["type"], "https://trellis.dev/errors/unauthorized");
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "walked {checked} operations");
}

#[tokio::test]
async fn login_tokens_revocation_and_disabled_users() {
    let app = TestApp::spawn().await;
    let (st, body) = app
        .call_as(
            None,
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": ADMIN_EMAIL, "password": "wrong"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    let (st, u) = app
        .post(
            "/api/v1/users",
            json!({"email": "Rep@Example.com", "name": "Rep", "password": "rep-pass-123"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    assert_eq!(u["email"], "rep@example.com");
    let (st, _) = app
        .post(
            "/api/v1/users",
            json!({"email": "rep@example.com", "password": "rep-pass-123"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let rep = app.login("rep@example.com", "rep-pass-123").await;
    let (st, me) = app
        .call_as(Some(&rep), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["email"], "rep@example.com");
    let (st, _) = app
        .call_as(Some(&rep), Method::POST, "/api/v1/forms", Some(lead_form()))
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "only administrators change definitions"
    );
    let (st, t) = app
        .call_as(
            Some(&rep),
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let api = t["token"].as_str().unwrap().to_owned();
    let (st, _) = app
        .call_as(Some(&api), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, list) = app
        .call_as(Some(&rep), Method::GET, "/api/v1/tokens", None)
        .await;
    let tid = list["data"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        list["data"][0].get("token").is_none(),
        "secrets are never listed"
    );
    let (st, _) = app
        .call_as(
            Some(&rep),
            Method::DELETE,
            &format!("/api/v1/tokens/{tid}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app
        .call_as(Some(&api), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a revoked token stops working at once"
    );
    // A new password ends the sessions opened with the old one.
    let uid = u["id"].as_str().unwrap().to_owned();
    let (st, _) = app
        .patch(
            &format!("/api/v1/users/{uid}"),
            json!({"password": "new-pass-456"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = app
        .call_as(Some(&rep), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "old session revoked");
    let rep = app.login("rep@example.com", "new-pass-456").await;
    // Disabling the user ends its sessions and logins.
    let (st, _) = app
        .patch(
            &format!("/api/v1/users/{}", u["id"].as_str().unwrap()),
            json!({"active": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = app
        .call_as(Some(&rep), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = app
        .call_as(
            None,
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": "rep@example.com", "password": "new-pass-456"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_readiness_metrics_and_docs() {
    let app = TestApp::spawn().await;
    let (st, _) = app.call_as(None, Method::GET, "/healthz", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = app.call_as(None, Method::GET, "/readyz", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["database"], true);
    app.form(lead_form()).await;
    app.create("lead", json!({"company": "A"})).await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("trellis_http_requests_total{method=\"POST\",route=\"/api/v1/data/{form}\",status=\"201\"} 1"), "{text}");
    assert!(text.contains("trellis_http_request_duration_seconds_bucket"));
    assert!(text.contains("trellis_db_pool_connections"));
    let html = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(html.status(), StatusCode::OK);
    let html = html.text().await.unwrap();
    assert!(html.contains("swagger"), "the offline UI is served");
    assert!(!html.contains("cdn."), "no CDN");
    let (_, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(doc["openapi"].as_str().unwrap().get(..3), Some("3.1"));
    assert!(doc["paths"]["/api/v1/data/lead/{id}"]["patch"].is_object());
    assert!(
        doc["components"]["schemas"]["LeadInput"]["required"]
            .as_array()
            .unwrap()
            .contains(&Value::String("company".into()))
    );
}

#[tokio::test]
async fn settings_come_from_a_toml_file_and_wrong_methods_get_problems() {
    let dir = std::env::temp_dir().join(format!("trellis-conf-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("trellis.toml");
    std::fs::write(&conf, "max_body_bytes = 300\nlog_format = \"json\"\n").unwrap();
    let app = TestApp::spawn_with(&["--config", conf.to_str().unwrap()]).await;
    app.form(json!({"name": "lead", "label": {"en": "Lead"}, "fields": [{"name": "company", "type": "text"}]})).await;
    let (st, body) = app
        .post("/api/v1/data/lead", json!({"company": "x".repeat(400)}))
        .await;
    assert_eq!(
        st,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the file's limit applies: {body}"
    );
    assert_eq!(body["type"], "https://trellis.dev/errors/payload_too_large");
    let (st, body) = app
        .call(Method::PUT, "/api/v1/data/lead", Some(json!({})))
        .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body["type"],
        "https://trellis.dev/errors/method_not_allowed"
    );
    let (st, body) = app.get("/api/v1/nothing/here").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["type"], "https://trellis.dev/errors/not_found");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn users_and_teams_refer_only_to_what_exists() {
    let app = TestApp::spawn().await;
    let (st, body) = app
        .post(
            "/api/v1/users",
            json!({"email": "a@x.com", "password": "pass-12345", "teams": ["ghost"]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "teams[0]");
    let (st, _) = app
        .post(
            "/api/v1/users",
            json!({"email": "a@x.com", "password": "pass-12345"}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "nothing was half-written by the refused create"
    );
    let (_, users) = app.get("/api/v1/users").await;
    let a = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "a@x.com")
        .unwrap()["id"]
        .clone();
    let (st, body) = app
        .post(
            "/api/v1/teams",
            json!({"name": "east", "label": {"en": "East"}, "manager": a, "members": [a, "ghost"]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "members[1]");
    let (st, t) = app
        .post(
            "/api/v1/teams",
            json!({"name": "east", "label": {"en": "East"}, "manager": a, "members": [a]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let (st, u) = app
        .post(
            "/api/v1/users",
            json!({"email": "b@x.com", "password": "pass-12345", "teams": ["east"], "manager": a}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let (_, teams) = app.get("/api/v1/teams").await;
    assert_eq!(teams["data"][0]["members"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn repeated_failed_logins_lock_the_account_for_a_while() {
    let app = TestApp::spawn().await;
    app.post(
        "/api/v1/users",
        json!({"email": "rep@x.com", "password": "rep-pass-123"}),
    )
    .await;
    app.post(
        "/api/v1/users",
        json!({"email": "other@x.com", "password": "other-pass-123"}),
    )
    .await;
    let login = |email: &'static str, pw: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"email": email, "password": pw}))
                .send()
                .await
                .unwrap()
        }
    };
    // A success in between starts the count again.
    for _ in 0..4 {
        assert_eq!(
            login("rep@x.com", "wrong").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login("rep@x.com", "rep-pass-123").await.status(),
        StatusCode::OK
    );
    for _ in 0..5 {
        assert_eq!(
            login("rep@x.com", "wrong").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = login("REP@x.com", "rep-pass-123").await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "locked even with the right password"
    );
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 800 && wait <= 900, "{wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "https://trellis.dev/errors/rate_limited");
    assert_eq!(
        login("other@x.com", "other-pass-123").await.status(),
        StatusCode::OK,
        "other accounts are not affected"
    );
}
