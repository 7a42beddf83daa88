//! Sending what steps queued: e-mail over SMTP (lettre) and webhook calls (reqwest). Each
//! message is claimed with a lease, sent, and marked in a second transaction; a process
//! that dies in between leaves the lease to run out and the message is sent again under
//! the same key (the e-mail's Message-ID, the webhook's `Idempotency-Key`), which is what
//! lets the receiver drop the repeat. A failed attempt is retried with exponential backoff
//! until the message's last attempt, then it is a dead letter, which can be replayed.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::ConnectionTrait;
use sea_orm::TransactionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use serde_json::Value;
use sha2::Sha256;
use trellis_store::migrate::MESSAGES;

use crate::error::{Result, WorkflowError};
use crate::sql::{exec, now_ms, skip_locked};
use crate::{Inner, Smtp};

/// Most messages claimed (and sent side by side) in one round.
const CLAIM: u64 = 16;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT_MS: i64 = 15_000;

/// An SMTP connection pool and the sender address.
pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Mailer {
    /// Set up the transport (connections open on first use).
    pub fn new(s: &Smtp) -> Result<Self> {
        let mut b = if s.starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                .map_err(|e| WorkflowError::step(format!("SMTP: {e}")))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
        };
        b = b
            .port(s.port)
            .timeout(Some(Duration::from_millis(SMTP_TIMEOUT_MS.unsigned_abs())));
        if let (Some(u), Some(p)) = (&s.user, &s.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        let from = s
            .from
            .parse()
            .map_err(|e| WorkflowError::step(format!("SMTP sender {:?}: {e}", s.from)))?;
        Ok(Self {
            transport: b.build(),
            from,
        })
    }
}

struct Claimed {
    id: String,
    run: Option<String>,
    kind: String,
    payload: Value,
    attempts: i64,
    max_attempts: i64,
}

/// Send the messages that are due. Answers how many were tried.
pub(crate) async fn due(inner: &Arc<Inner>) -> Result<usize> {
    let db = &inner.store.db;
    let now = now_ms();
    let token = uuid::Uuid::new_v4().to_string();
    let txn = db.writer.begin().await?;
    let mut claimed = Vec::new();
    // Two index range scans: messages due, and messages whose sender's lease ran out.
    for (status, col) in [("pending", "next_at"), ("sending", "lease_until")] {
        let mut s = Query::select();
        s.columns(
            [
                "id",
                "kind",
                "payload",
                "attempts",
                "max_attempts",
                "run_id",
            ]
            .map(Alias::new),
        )
        .from(Alias::new(MESSAGES))
        .and_where(Expr::col(Alias::new("status")).eq(status));
        if status == "pending" {
            s.and_where(Expr::col(Alias::new(col)).lte(now));
        } else {
            s.and_where(Expr::col(Alias::new(col)).lt(now));
        }
        s.order_by(Alias::new(col), Order::Asc).limit(CLAIM);
        if inner.mailer.is_none() {
            // Without SMTP, e-mails wait for a server that has it.
            s.and_where(Expr::col(Alias::new("kind")).ne("email"));
        }
        skip_locked(&mut s, db.dialect);
        for r in txn.query_all(&s).await? {
            claimed.push(Claimed {
                id: r.try_get_by_index(0)?,
                kind: r.try_get_by_index(1)?,
                payload: serde_json::from_str(&r.try_get_by_index::<String>(2)?)?,
                attempts: i64::from(r.try_get_by_index::<i32>(3)?),
                max_attempts: i64::from(r.try_get_by_index::<i32>(4)?),
                run: r.try_get_by_index(5)?,
            });
        }
    }
    if claimed.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    // Each message's lease covers its own attempt, and the sends run side by side, so no
    // lease runs out while its message waits behind a slow one.
    let margin = i64::try_from(inner.opts.lease.as_millis()).unwrap_or(60_000);
    for m in &claimed {
        let timeout = m
            .payload
            .get("timeout_ms")
            .and_then(Value::as_i64)
            .unwrap_or(SMTP_TIMEOUT_MS);
        let mut u = Query::update();
        u.table(Alias::new(MESSAGES))
            .value(Alias::new("status"), "sending")
            .value(Alias::new("claim"), token.as_str())
            .value(Alias::new("lease_until"), now + timeout + margin)
            .and_where(Expr::col(Alias::new("id")).eq(m.id.as_str()));
        exec(&txn, &u).await?;
    }
    txn.commit().await?;
    let n = claimed.len();
    let sends = claimed.into_iter().map(|m| {
        let inner = inner.clone();
        let token = token.clone();
        async move {
            let outcome = send(&inner, &m).await;
            if let Err(e) = settle(&inner, &m, &token, outcome).await {
                tracing::warn!(message = %m.id, error = %e, "recording a message's outcome failed");
            }
        }
    });
    futures_util::future::join_all(sends).await;
    Ok(n)
}

async fn send(inner: &Inner, m: &Claimed) -> std::result::Result<(), String> {
    match m.kind.as_str() {
        "email" => send_email(inner, m).await,
        "webhook" => send_webhook(inner, m).await,
        other => Err(format!("unknown message kind {other:?}")),
    }
}

async fn send_email(inner: &Inner, m: &Claimed) -> std::result::Result<(), String> {
    let mailer = inner
        .mailer
        .as_ref()
        .ok_or("no SMTP server is configured")?;
    let p = &m.payload;
    let mut b = Message::builder()
        .from(mailer.from.clone())
        .message_id(Some(format!("<{}@trellis>", m.id)))
        .subject(p.get("subject").and_then(Value::as_str).unwrap_or_default());
    for to in p.get("to").and_then(Value::as_array).into_iter().flatten() {
        let addr = to.as_str().unwrap_or_default();
        b = b.to(addr
            .parse()
            .map_err(|e| format!("{addr:?} is not an e-mail address: {e}"))?);
    }
    let msg = b
        .header(ContentType::TEXT_PLAIN)
        .body(
            p.get("body")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
        .map_err(|e| format!("the e-mail does not build: {e}"))?;
    mailer
        .transport
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

/// The signature header's value: HMAC-SHA256 of the body under the secret, in hex.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn send_webhook(inner: &Inner, m: &Claimed) -> std::result::Result<(), String> {
    let p = &m.payload;
    let url = p.get("url").and_then(Value::as_str).ok_or("no URL")?;
    let body =
        serde_json::to_vec(p.get("body").unwrap_or(&Value::Null)).map_err(|e| e.to_string())?;
    let timeout = p
        .get("timeout_ms")
        .and_then(Value::as_u64)
        .unwrap_or(10_000);
    let mut req = inner
        .http
        .post(url)
        .timeout(Duration::from_millis(timeout))
        .header("content-type", "application/json")
        .header("idempotency-key", m.id.as_str())
        .header("x-trellis-attempt", (m.attempts + 1).to_string());
    if let Some(secret) = p.get("secret").and_then(Value::as_str) {
        req = req.header("x-trellis-signature", signature(secret, &body));
    }
    let resp = req.body(body).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {timeout} ms")
        } else {
            format!("the call failed: {e}")
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

async fn settle(
    inner: &Inner,
    m: &Claimed,
    token: &str,
    outcome: std::result::Result<(), String>,
) -> Result<()> {
    let now = now_ms();
    let attempts = m.attempts + 1;
    let mut u = Query::update();
    u.table(Alias::new(MESSAGES))
        .value(
            Alias::new("attempts"),
            i32::try_from(attempts).unwrap_or(i32::MAX),
        )
        .value(Alias::new("claim"), None::<String>)
        .value(Alias::new("lease_until"), None::<i64>)
        .and_where(Expr::col(Alias::new("id")).eq(m.id.as_str()))
        .and_where(Expr::col(Alias::new("claim")).eq(token));
    // The run's log shows what became of what it sent.
    let (status, error) = match &outcome {
        Ok(()) => ("sent", None),
        Err(e) if attempts >= m.max_attempts => ("dead", Some(e.clone())),
        Err(e) => ("retrying", Some(e.clone())),
    };
    let entry = crate::run::Entry {
        path: "outbox".into(),
        step: None,
        kind: if m.kind == "email" {
            "email"
        } else {
            "webhook"
        },
        status,
        micros: 0,
        detail: serde_json::json!({"message": m.id, "attempt": attempts}),
        error,
    };
    match outcome {
        Ok(()) => {
            u.value(Alias::new("status"), "sent")
                .value(Alias::new("sent_at"), now)
                .value(Alias::new("last_error"), None::<String>);
            inner
                .metrics
                .sent
                .with_label_values(&[m.kind.as_str()])
                .inc();
        }
        Err(e) if attempts >= m.max_attempts => {
            tracing::warn!(message = %m.id, kind = %m.kind, error = %e, "message given up on");
            u.value(Alias::new("status"), "dead")
                .value(Alias::new("last_error"), e);
            inner
                .metrics
                .dead
                .with_label_values(&[m.kind.as_str()])
                .inc();
        }
        Err(e) => {
            let base = i64::try_from(inner.opts.retry_base.as_millis()).unwrap_or(1000);
            let wait = base.saturating_mul(1i64 << (attempts - 1).clamp(0, 16));
            u.value(Alias::new("status"), "pending")
                .value(Alias::new("next_at"), now + wait)
                .value(Alias::new("last_error"), e);
            inner
                .metrics
                .retries
                .with_label_values(&[m.kind.as_str()])
                .inc();
        }
    }
    let db = &inner.store.db;
    let txn = db.writer.begin().await?;
    if exec(&txn, &u).await? == 1
        && let Some(run) = &m.run
    {
        crate::run::log(&txn, run, std::slice::from_ref(&entry)).await?;
    }
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
