//! The user's upstream token from AuthPlane's token broker: an MCP server
//! that calls GitHub, Google or an internal API on the user's behalf never
//! forwards the MCP client's token; it exchanges it (RFC 8693) for the user's
//! token at that upstream, which AuthPlane keeps since the user signed in
//! through it. See `docs/guides/token-broker.md`.
//!
//! ```no_run
//! # async fn f(access_token: &str) -> Result<(), authplane_sdk::BrokerError> {
//! let broker = authplane_sdk::UpstreamTokens::new("https://auth.example.com", "mcp-github-tools", "secret");
//! let gh = broker.upstream_token(access_token, "github").await?;
//! // call https://api.github.com with `Authorization: Bearer {gh.access_token}`
//! # Ok(()) }
//! ```
//!
//! Answers are cached per (access token, upstream) until 30 s before the
//! upstream token expires (60 s when the provider gives no lifetime), at most
//! [`MAX_CACHED`] of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Cached answers kept at most; beyond, expired ones go first, then all.
pub const MAX_CACHED: usize = 10_000;
/// A cached token is dropped this long before it expires.
const EARLY: u64 = 30;
/// Cache time of a token without `expires_in`.
const NO_EXPIRY_TTL: Duration = Duration::from_secs(60);

/// A user's token at an upstream. `Debug` shows no token.
#[derive(Clone)]
pub struct UpstreamToken {
    pub access_token: String,
    /// Seconds left when AuthPlane answered; `None` if the provider did not say.
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Why no upstream token came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// `invalid_grant`: the user must sign in again (no stored grant, the
    /// provider revoked it, or the token given is no longer active). Answer
    /// the MCP client with 401 so it starts the authorization flow.
    #[error("the user must sign in again: {0}")]
    SignInAgain(String),
    /// AuthPlane or the provider is unavailable; retry after the delay.
    #[error("temporarily unavailable: {description}")]
    Unavailable { description: String, retry_after: Option<u64> },
    /// Any other refusal (`invalid_client`, `unauthorized_client`,
    /// `invalid_target`, …): a configuration problem of this server.
    #[error("refused ({error}): {description}")]
    Refused { status: u16, error: String, description: String },
    /// AuthPlane could not be reached, or answered something else than OAuth JSON.
    #[error("token exchange failed: {0}")]
    Transport(String),
}

#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The broker client of one MCP server (a confidential AuthPlane client with
/// `broker_upstreams`). Cheap to share (`Arc`) across requests.
pub struct UpstreamTokens {
    token_endpoint: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    /// (digest of the access token, upstream) → (use until, token).
    cache: Mutex<HashMap<(String, String), (Instant, UpstreamToken)>>,
}

impl UpstreamTokens {
    /// For AuthPlane at `issuer` (its token endpoint is `<issuer>/oauth/token`).
    pub fn new(issuer: &str, client_id: &str, client_secret: &str) -> UpstreamTokens {
        UpstreamTokens {
            token_endpoint: format!("{}/oauth/token", issuer.trim_end_matches('/')),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            http: crate::jwks::default_http_client(),
            cache: Mutex::default(),
        }
    }

    /// Another token endpoint (from discovery, or behind a proxy).
    pub fn with_token_endpoint(mut self, url: &str) -> Self {
        url.clone_into(&mut self.token_endpoint);
        self
    }

    /// The user's token at `upstream` (its id in AuthPlane's `upstreams:`),
    /// in exchange for `access_token`, the AuthPlane token this server
    /// received and verified.
    pub async fn upstream_token(&self, access_token: &str, upstream: &str) -> Result<UpstreamToken, BrokerError> {
        let key = (digest(access_token), upstream.to_owned());
        let now = Instant::now();
        if let Some((until, t)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && *until > now
        {
            return Ok(t.clone());
        }
        let form = [
            ("grant_type", GRANT_TYPE),
            ("subject_token", access_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("audience", upstream),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let res = self
            .http
            .post(&self.token_endpoint)
            .basic_auth(enc(&self.client_id), Some(enc(&self.client_secret)))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| BrokerError::Transport(e.without_url().to_string()))?;
        let status = res.status().as_u16();
        let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let bytes = res.bytes().await.map_err(|e| BrokerError::Transport(e.without_url().to_string()))?;
        let answer: Answer = serde_json::from_slice(&bytes)
            .map_err(|_| BrokerError::Transport(format!("answer {status} is not OAuth JSON")))?;
        let t = classify(status, answer, retry_after)?;
        let ttl = match t.expires_in {
            Some(s) => Duration::from_secs(s.saturating_sub(EARLY)),
            None => NO_EXPIRY_TTL,
        };
        if !ttl.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (until, _)| *until > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(key, (now + ttl, t.clone()));
        }
        Ok(t)
    }

    /// Cached answers (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn classify(status: u16, a: Answer, retry_after: Option<u64>) -> Result<UpstreamToken, BrokerError> {
    let description = a.error_description.unwrap_or_default();
    match (status, a.error.as_deref(), a.access_token) {
        (200, None, Some(access_token)) => Ok(UpstreamToken { access_token, expires_in: a.expires_in, scope: a.scope }),
        (_, Some("invalid_grant"), _) => Err(BrokerError::SignInAgain(description)),
        (503 | 429, _, _) | (_, Some("temporarily_unavailable"), _) => {
            Err(BrokerError::Unavailable { description, retry_after })
        }
        (_, Some(error), _) => Err(BrokerError::Refused { status, error: error.to_owned(), description }),
        (_, None, _) => Err(BrokerError::Transport(format!("answer {status} without a token or an error"))),
    }
}

fn digest(token: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Answer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn answers_are_sorted_into_what_the_mcp_server_must_do() {
        let ok =
            classify(200, answer(r#"{"access_token":"gho_x","expires_in":300,"token_type":"Bearer"}"#), None).unwrap();
        assert_eq!((ok.access_token.as_str(), ok.expires_in), ("gho_x", Some(300)));
        assert!(!format!("{ok:?}").contains("gho_x"), "Debug hides the token");
        let again = classify(400, answer(r#"{"error":"invalid_grant","error_description":"revoked"}"#), None);
        assert_eq!(again.unwrap_err(), BrokerError::SignInAgain("revoked".into()));
        let busy = classify(503, answer(r#"{"error":"temporarily_unavailable","error_description":"down"}"#), Some(5));
        assert_eq!(busy.unwrap_err(), BrokerError::Unavailable { description: "down".into(), retry_after: Some(5) });
        let config = classify(400, answer(r#"{"error":"invalid_target","error_description":"no"}"#), None);
        assert!(
            matches!(config.unwrap_err(), BrokerError::Refused { status: 400, error, .. } if error == "invalid_target")
        );
        assert!(matches!(classify(200, answer("{}"), None).unwrap_err(), BrokerError::Transport(_)));
    }

    #[tokio::test]
    async fn an_unreachable_as_is_a_transport_error_and_nothing_is_cached() {
        // Port 9 on loopback: nothing listens (connection refused, no network).
        let b = UpstreamTokens::new("http://127.0.0.1:9", "c", "s");
        assert!(matches!(b.upstream_token("t", "github").await, Err(BrokerError::Transport(_))));
        assert_eq!(b.cached(), 0);
    }
}
