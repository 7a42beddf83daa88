//! Authentication: the `Caller` extractor, from a bearer token or a session cookie, with
//! a short-lived cache so a request does not cost a database round trip for its token.
//! Cookie-authenticated writes must carry the session's CSRF token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use parking_lot::Mutex;
use trellis_access::Permissions;
use trellis_store::auth::{Principal, authenticate, token_hash};

use crate::AppState;
use crate::error::{ApiError, Code};

/// How long a resolved token is trusted without asking the database again. Revocation
/// and disabling clear this process's cache at once; other processes follow within this.
pub const TOKEN_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: usize = 10_000;

/// Resolved tokens by hash.
#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Principal> {
        let m = self.map.lock();
        m.get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_TTL)
            .map(|(p, _)| p.clone())
    }

    fn put(&self, hash: String, p: Principal) {
        let mut m = self.map.lock();
        if m.len() >= CACHE_MAX {
            m.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
            if m.len() >= CACHE_MAX {
                m.clear();
            }
        }
        m.insert(hash, (p, Instant::now()));
    }

    /// Forget everything (after a revocation or a user change).
    pub fn clear(&self) {
        self.map.lock().clear();
    }
}

/// The name of the session cookie of the web UI.
pub const SESSION_COOKIE: &str = "trellis_session";
/// The header that carries the CSRF token on cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of a session: derived from its secret, which only the browser holding
/// the HttpOnly cookie and the server know; a page from another origin can read neither.
pub fn csrf_token(session_secret: &str) -> String {
    token_hash(&format!("csrf:{session_secret}"))
}

/// The authenticated caller of a request, with their resolved permissions.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal, pub Permissions);

impl Caller {
    /// The caller as the author of a write.
    pub fn actor(&self) -> trellis_store::Actor {
        trellis_store::Actor::user(Some(self.0.id.clone()))
    }

    /// What the caller may do.
    pub fn perms(&self) -> &Permissions {
        &self.1
    }

    /// The caller as the author of an administrative change from `ip`.
    pub fn by<'a>(&'a self, ip: &'a str) -> trellis_store::admin_audit::By<'a> {
        trellis_store::admin_audit::By {
            actor: Some(&self.0.id),
            ip: Some(ip),
        }
    }
}

/// The client's address: the socket peer, never a header a client could forge.
pub fn client_ip(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

fn cookie_secret(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// Constant-time comparison, so a guess cannot be refined by timing.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let h = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let bearer = bearer(req);
        let cookie = if bearer.is_none() {
            cookie_secret(req)
        } else {
            None
        };
        let safe = matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
        let csrf = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::new(Code::Internal, "no application state"))?;
            let token = match (bearer, cookie) {
                (Some(t), _) => t,
                (None, Some(c)) => {
                    // A browser sends the cookie with requests other sites make it send.
                    if !safe && !csrf.is_some_and(|h| same(&h, &csrf_token(&c))) {
                        return Err(ApiError::field(
                            Code::Forbidden,
                            CSRF_HEADER,
                            "csrf",
                            "a write with a session cookie needs the session's X-CSRF-Token header",
                        ));
                    }
                    c
                }
                (None, None) => {
                    return Err(ApiError::new(
                        Code::Unauthorized,
                        "send Authorization: Bearer <token>",
                    ));
                }
            };
            let hash = token_hash(&token);
            let principal = match state.tokens.get(&hash) {
                Some(p) => p,
                None => match authenticate(&state.store.db, &token).await? {
                    Some(p) => {
                        state.tokens.put(hash, p.clone());
                        p
                    }
                    None => {
                        return Err(ApiError::new(
                            Code::Unauthorized,
                            "the token is unknown, expired or revoked",
                        ));
                    }
                },
            };
            let perms = Permissions::new(
                principal.subject(),
                state.store.roles.resolve(&principal.roles),
            );
            Ok(Caller(principal, perms))
        })
    }
}
