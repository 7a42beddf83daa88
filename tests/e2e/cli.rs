//! The command line: migrate, bundles, users, tokens, graceful shutdown.

use std::process::Command;

use reqwest::{Method, StatusCode};

use crate::harness::TestApp;

fn trellis(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .args(["--database-url", db])
        .env("RUST_LOG", "warn")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bundle_user_and_token_commands() {
    let dir = std::env::temp_dir().join(format!("trellis-cli-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite:{}", dir.join("t.db").display());
    let (ok, out, err) = trellis(&db, &["migrate"]);
    assert!(ok, "{err}");
    assert!(out.contains("migration"), "{out}");
    let (ok, out, err) = trellis(&db, &["bundle", "validate", "examples/crm"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("12 forms, 7 roles, 6 rules, 14 workflows, valid"),
        "{out}"
    );
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"name":"x","version":"1.0.0","label":{"en":"X"},"forms":[{"name":"a","label":{"en":"A"},"fields":[{"name":"b","type":"relation","target":"zz"}]}]}"#).unwrap();
    let (ok, _, err) = trellis(&db, &["bundle", "validate", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("forms[0].fields[0].target"), "{err}");
    let (ok, out, err) = trellis(&db, &["bundle", "install", "examples/crm"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"changed\": true"), "{out}");
    let (ok, out, _) = trellis(&db, &["bundle", "install", "examples/crm"]);
    assert!(ok);
    assert!(
        out.contains("\"changed\": false"),
        "twice changes nothing: {out}"
    );
    let (ok, exported, err) = trellis(&db, &["bundle", "export", "crm"]);
    assert!(ok, "{err}");
    let file = dir.join("crm.json");
    std::fs::write(&file, &exported).unwrap();
    let db2 = format!("sqlite:{}", dir.join("t2.db").display());
    let (ok, _, err) = trellis(&db2, &["bundle", "install", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (_, again, _) = trellis(&db2, &["bundle", "export", "crm"]);
    assert_eq!(again, exported, "export → install → export is identical");
    let (ok, _, err) = trellis(
        &db,
        &[
            "user",
            "create",
            "--email",
            "ops@x.com",
            "--password",
            "ops-pass-123",
            "--admin",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = trellis(
        &db,
        &[
            "user",
            "create",
            "--email",
            "ops@x.com",
            "--password",
            "ops-pass-123",
        ],
    );
    assert!(!ok, "a second user with the same e-mail is refused");
    assert!(!err.is_empty());
    let (ok, token, err) = trellis(
        &db,
        &["token", "create", "--email", "ops@x.com", "--name", "ci"],
    );
    assert!(ok, "{err}");
    assert!(token.trim().starts_with("trl_"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let mut app = TestApp::spawn().await;
    let (st, _) = app.call(Method::GET, "/api/v1/me", None).await;
    assert_eq!(st, StatusCode::OK);
    let status = app.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn a_rule_reruns_over_every_record_and_resumes() {
    let app = TestApp::spawn().await;
    app.form(crate::harness::lead_form()).await;
    for i in 0..7 {
        app.create(
            "lead",
            serde_json::json!({"company": format!("L{i}"), "employees": i * 10}),
        )
        .await;
    }
    // On demand only: creates are not scored.
    let (st, r) = app
        .post(
            "/api/v1/rules",
            serde_json::json!({"name": "size_score", "label": {"en": "Size"}, "form": "lead",
                "kind": "score", "field": "score", "on": [], "script": "value_or(record.employees, 0) / 2"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let (ok, out, err) = trellis(&app.db_url, &["rules", "run", "size_score"]);
    assert!(!ok && err.contains("--all"), "{err}");
    // A run that stopped after the first four records resumes after them.
    let mut all = app.ids("lead", serde_json::json!({}), "").await;
    all.sort();
    {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(app.db_url.as_str())
            .await
            .unwrap();
        // A checkpoint of an older version of the rule is not resumed...
        db.execute_unprepared(&format!(
            "INSERT INTO trellis_rule_runs (rule, version, last_id, done, changed, updated_at) \
             VALUES ('size_score', 'older', '{}', 4, 0, '2026-11-23T00:00:00Z')",
            all[3]
        ))
        .await
        .unwrap();
    }
    let (ok, fresh, err) = trellis(&app.db_url, &["rules", "run", "size_score", "--all"]);
    assert!(ok, "{err}");
    let p: serde_json::Value = serde_json::from_str(fresh.trim()).unwrap();
    assert_eq!(
        (p["done"].as_u64(), p["changed"].as_u64()),
        (Some(7), Some(7)),
        "{p}"
    );
    for id in &all {
        let (st, body) = app
            .patch(
                &format!("/api/v1/data/lead/{id}"),
                serde_json::json!({"score": null}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(app.db_url.as_str())
            .await
            .unwrap();
        // ...one of this version is.
        db.execute_unprepared(&format!(
            "INSERT INTO trellis_rule_runs (rule, version, last_id, done, changed, updated_at) \
             SELECT name, updated_at, '{}', 4, 0, '2026-11-23T00:00:00Z' \
             FROM trellis_rules WHERE name = 'size_score'",
            all[3]
        ))
        .await
        .unwrap();
        let _ = db.close().await;
    }
    let (ok, resumed, err) = trellis(&app.db_url, &["rules", "run", "size_score", "--all"]);
    assert!(ok, "{err}");
    let p: serde_json::Value = serde_json::from_str(resumed.trim()).unwrap();
    assert_eq!(
        (p["done"].as_u64(), p["changed"].as_u64()),
        (Some(7), Some(3)),
        "{p}"
    );
    let unscored = app
        .ids("lead", serde_json::json!({"score": null}), "")
        .await;
    assert_eq!(
        unscored.len(),
        4,
        "the first four were before the checkpoint"
    );
    // A finished run forgets its checkpoint: the next one starts from the first record.
    let (ok, out2, err) = trellis(&app.db_url, &["rules", "run", "size_score", "--all"]);
    assert!(ok, "{out}{err}");
    let p: serde_json::Value = serde_json::from_str(out2.trim()).unwrap();
    assert_eq!(
        (p["done"].as_u64(), p["changed"].as_u64()),
        (Some(7), Some(4)),
        "{p}"
    );
    let ids = app.ids("lead", serde_json::json!({"score": 30}), "").await;
    assert_eq!(ids.len(), 1);
    let (_, h) = app
        .get(&format!("/api/v1/data/lead/{}/history", ids[0]))
        .await;
    let last = h["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["changes"]["score"]["after"], 30);
    assert_eq!(
        last["actor"],
        serde_json::Value::Null,
        "the system re-scored it"
    );
    // Nothing left to change the second time.
    let (ok, out3, err) = trellis(&app.db_url, &["rules", "run", "size_score", "--all"]);
    assert!(ok, "{err}");
    let p: serde_json::Value = serde_json::from_str(out3.trim()).unwrap();
    assert_eq!(p["changed"], 0);
}

#[tokio::test]
async fn records_a_cli_import_creates_start_the_forms_workflows() {
    let app = TestApp::spawn().await;
    app.form(crate::harness::lead_form()).await;
    let (st, body) = app
        .post(
            "/api/v1/workflows",
            serde_json::json!({"name": "mark", "label": {"en": "Mark"}, "form": "lead",
                "trigger": {"on": "created"}, "steps": [{"type": "set", "values": {"active": true}}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let dir = std::env::temp_dir().join(format!("trellis-cli-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("leads.csv");
    std::fs::write(&file, "company,email\nA,a@x.com\nB,b@x.com\nC,c@x.com\n").unwrap();
    let files = dir.join("files");
    let (ok, out, err) = trellis(
        &app.db_url,
        &[
            "import",
            "lead",
            file.to_str().unwrap(),
            "--files-dir",
            files.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"created\": 3"), "{out}");
    // The import ran in another process: its creates reach the server's workflow engine
    // through the outbox, as a create through the API does.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let marked = app
            .ids("lead", serde_json::json!({"active": true}), "")
            .await;
        if marked.len() == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the workflow ran on {} of 3 imported leads",
            marked.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
