//! Start a server with a fresh database and talk to it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const ADMIN_EMAIL: &str = "admin@test.trellis";
pub const ADMIN_PASSWORD: &str = "admin-pass-123";

/// A running server with its own database.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
    #[allow(dead_code)]
    pub db_url: String,
    child: Child,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A temporary directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("trellis-test-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Is this run on PostgreSQL?
pub fn on_postgres() -> bool {
    std::env::var("TRELLIS_TEST_DATABASE").is_ok_and(|v| v.starts_with("postgres"))
}

async fn fresh_database(dir: &std::path::Path) -> String {
    if !on_postgres() {
        return format!("sqlite:{}", dir.join("trellis.db").display());
    }
    let admin = std::env::var("TRELLIS_TEST_PG_ADMIN")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("trellis_t_{}", uuid::Uuid::now_v7().simple());
    let db = sea_orm::Database::connect(admin.as_str())
        .await
        .expect("connect to PostgreSQL");
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let _ = db.close().await;
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin);
    format!("{base}/{name}")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Start the binary with extra `serve` arguments.
    pub async fn spawn_with(extra: &[&str]) -> TestApp {
        let dir = tempdir::Dir::new();
        let db_url = fresh_database(&dir.0).await;
        Self::start(dir, db_url, extra).await
    }

    async fn start(dir: tempdir::Dir, db_url: String, extra: &[&str]) -> TestApp {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trellis"));
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--database-url", &db_url])
            .args(extra)
            .current_dir(&dir.0)
            .env("TRELLIS_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("TRELLIS_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "warn")
            .env_remove("TRELLIS_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start trellis");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server did not report its address");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let mut app = TestApp {
            base,
            client,
            token: String::new(),
            db_url,
            child,
            _dir: dir,
        };
        app.token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        app
    }

    /// Kill the process with SIGKILL (no chance to finish anything) and start a new one on
    /// the same database and directory.
    pub async fn kill_and_restart(mut self, extra: &[&str]) -> TestApp {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self._dir, tempdir::Dir::new());
        let db_url = self.db_url.clone();
        drop(self);
        Self::start(dir, db_url, extra).await
    }

    /// A second server process on the same database (PostgreSQL).
    pub async fn another(&self, extra: &[&str]) -> TestApp {
        Self::start(tempdir::Dir::new(), self.db_url.clone(), extra).await
    }

    /// Send SIGTERM and wait for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let (st, body) = self
            .call_as(
                None,
                Method::POST,
                "/api/v1/auth/login",
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "login failed: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Call with the admin token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.token.clone();
        self.call_as(Some(&token), method, path, body).await
    }

    /// Call with a given token (or none).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.client.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = rb.send().await.expect("request");
        let st = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        assert!(st.as_u16() < 500, "server error {st} on {path}: {v}");
        (st, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// User ids by the name part of their e-mail (`wangfang` for wangfang@demo.trellis.dev).
    pub async fn user_ids(&self) -> std::collections::HashMap<String, String> {
        let (st, users) = self.get("/api/v1/users").await;
        assert_eq!(st, StatusCode::OK, "{users}");
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                let email = u["email"].as_str().unwrap();
                let name = email.split('@').next().unwrap_or(email);
                (name.to_owned(), u["id"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    /// Create a form, asserting success.
    pub async fn form(&self, def: Value) {
        let (st, body) = self.post("/api/v1/forms", def).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }

    /// Create a record, asserting success.
    pub async fn create(&self, form: &str, rec: Value) -> Value {
        let (st, body) = self.post(&format!("/api/v1/data/{form}"), rec).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        body
    }

    /// List with a filter and other query parameters.
    pub async fn list(&self, form: &str, params: &[(&str, String)]) -> (StatusCode, Value) {
        let q: String = params
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.get(&format!("/api/v1/data/{form}?{q}")).await
    }

    /// Ids of a list with a filter, in order.
    pub async fn ids(&self, form: &str, filter: Value, sort: &str) -> Vec<String> {
        let (st, body) = self
            .list(
                form,
                &[
                    ("filter", filter.to_string()),
                    ("sort", sort.to_owned()),
                    ("limit", "1000".into()),
                ],
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The error entries of a problem document as (field, code).
pub fn errors(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_owned(),
                        e["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A small form used by many tests.
pub fn lead_form() -> Value {
    json!({"name": "lead", "label": {"en": "Lead", "zh-CN": "线索"}, "fields": [
        {"name": "company", "type": "text", "required": true, "label": {"en": "Company"}},
        {"name": "email", "type": "email", "unique": true},
        {"name": "city", "type": "text", "normalize": {"京": "北京市", "北京": "北京市", "beijing": "北京市"}},
        {"name": "source", "type": "select", "options": [{"value": "website"}, {"value": "expo"}, {"value": "referral"}]},
        {"name": "tags", "type": "multiselect", "options": [{"value": "vip"}, {"value": "new"}, {"value": "cold"}]},
        {"name": "region", "type": "select", "indexed": true, "options": [{"value": "north"}, {"value": "east"}, {"value": "south"}]},
        {"name": "employees", "type": "integer", "min": 0},
        {"name": "budget", "type": "decimal"},
        {"name": "score", "type": "integer", "indexed": true, "min": 0, "max": 100},
        {"name": "active", "type": "boolean"},
        {"name": "met_on", "type": "date"},
        {"name": "next_call", "type": "datetime"}
    ]})
}
