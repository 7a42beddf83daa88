//! Bearer-token authentication: the `Caller` extractor, with a short-lived cache so a
//! request does not cost a database round trip for its token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use parking_lot::Mutex;
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

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// The caller as the author of a write.
    pub fn actor(&self) -> trellis_store::Actor {
        trellis_store::Actor {
            user: Some(self.0.id.clone()),
        }
    }
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
        let token = bearer(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::new(Code::Internal, "no application state"))?;
            let token = token.ok_or_else(|| {
                ApiError::new(Code::Unauthorized, "send Authorization: Bearer <token>")
            })?;
            let hash = token_hash(&token);
            if let Some(p) = state.tokens.get(&hash) {
                return Ok(Caller(p));
            }
            match authenticate(&state.store.db, &token).await? {
                Some(p) => {
                    state.tokens.put(hash, p.clone());
                    Ok(Caller(p))
                }
                None => Err(ApiError::new(
                    Code::Unauthorized,
                    "the token is unknown, expired or revoked",
                )),
            }
        })
    }
}
