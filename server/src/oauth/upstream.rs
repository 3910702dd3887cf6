//! Sign-in through an identity provider: AuthPlane as an OAuth 2.1 client of
//! the organisation's provider (`upstreams:` in the config).
//!
//! The leg is authorization code + PKCE S256, with `state` and `nonce` bound
//! to the browser and single use (`upstream_logins`), RFC 9207's `iss` check,
//! and for OpenID Connect the ID token verified (signature through the
//! provider's JWKS, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`, an algorithm
//! allow-list). Plain OAuth 2 providers (GitHub style) name the user through
//! their userinfo endpoint. Provider metadata and keys are cached; an unknown
//! `kid` refetches the keys at most once per [`JWKS_REFETCH`].
//!
//! Nothing here writes the provider's tokens anywhere: the [`Tokens`] a code
//! exchange returns are dropped after sign-in unless the token broker keeps
//! them (issue 14's second half).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authplane_core::Secret;
use authplane_core::config::{UpstreamAuthMethod, UpstreamConfig};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A provider answer larger than this is refused (discovery documents and
/// JWKS of real providers are a few KiB).
const MAX_BYTES: usize = 256 * 1024;
/// Each request to a provider.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long discovery documents and key sets are reused.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// An ID token signed with a key we do not hold refetches the JWKS, at most
/// this often per provider (key rotation without a flood of fetches).
const JWKS_REFETCH: Duration = Duration::from_secs(30);
/// How long a failed discovery is answered from memory.
const FAILURE_TTL: Duration = Duration::from_secs(30);
/// Clock skew allowed on `exp` and `iat`.
const LEEWAY: i64 = 60;
/// Signature algorithms an ID token may use. Never `none`, never HMAC (the
/// client secret is not a signing key we accept).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a sign-in through a provider failed. [`Failure::reason`] is the audit
/// row's `reason` (`upstream_*`); [`Failure::page`] what the person reads.
/// The detail may name provider URLs and statuses: it goes to the log and
/// the audit row, never to the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The provider could not be reached or answered something unusable.
    Unreachable(String),
    /// The provider sent the person back with an error (`access_denied`, …).
    Denied { error: String, description: Option<String> },
    /// The callback's `state` is unknown, expired, used, for another
    /// provider, or from another browser.
    State(String),
    /// RFC 9207: the `iss` of the response is not this provider's.
    IssuerMismatch(String),
    /// The token endpoint refused the code.
    TokenRefused(String),
    /// The ID token failed verification.
    IdToken(String),
    /// The provider vouched for someone the config does not let in.
    NotAllowed(String),
    /// The provider's answer lacks the claim naming the user.
    Claims(String),
    /// The client secret file cannot be read.
    Misconfigured(String),
}

impl Failure {
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "upstream_unreachable",
            Failure::Denied { .. } => "upstream_denied",
            Failure::State(_) => "upstream_state_invalid",
            Failure::IssuerMismatch(_) => "upstream_iss_mismatch",
            Failure::TokenRefused(_) => "upstream_token_refused",
            Failure::IdToken(_) => "upstream_id_token_invalid",
            Failure::NotAllowed(_) => "upstream_not_allowed",
            Failure::Claims(_) => "upstream_claims_missing",
            Failure::Misconfigured(_) => "upstream_misconfigured",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Failure::Denied { error, description } => match description {
                Some(d) => format!("{error}: {d}"),
                None => error.clone(),
            },
            Failure::Unreachable(d)
            | Failure::State(d)
            | Failure::IssuerMismatch(d)
            | Failure::TokenRefused(d)
            | Failure::IdToken(d)
            | Failure::NotAllowed(d)
            | Failure::Claims(d)
            | Failure::Misconfigured(d) => d.clone(),
        }
    }

    /// What the person is told: what happened and what to do, in words.
    pub fn page(&self, provider: &str) -> String {
        match self {
            Failure::Unreachable(_) | Failure::Misconfigured(_) => format!(
                "{provider} could not be reached to complete your sign-in. Try again in a minute; if it keeps failing, tell your administrator."
            ),
            Failure::Denied { error, .. } if error == "access_denied" => {
                format!("{provider} did not sign you in (access was denied there). Start again from the application.")
            }
            Failure::Denied { .. } => {
                format!("{provider} could not sign you in. Start again from the application.")
            }
            Failure::State(_) => "This sign-in link has expired, was already used, or was started in another browser. Start again from the application.".to_owned(),
            Failure::IssuerMismatch(_) | Failure::IdToken(_) | Failure::TokenRefused(_) | Failure::Claims(_) => format!(
                "The answer from {provider} could not be verified, so you were not signed in. Start again from the application; if it keeps failing, tell your administrator."
            ),
            Failure::NotAllowed(_) => {
                format!("Your {provider} account is not allowed to sign in here. Ask your administrator for access.")
            }
        }
    }
}

/// Where a provider's endpoints are: from its discovery document (OIDC) or
/// from the config (plain OAuth 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The issuer an ID token and an RFC 9207 `iss` must name (OIDC only).
    pub issuer: Option<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    /// The provider promises `iss` on every authorization response (RFC 9207 §3).
    pub iss_parameter_supported: bool,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// What a token endpoint returns. The tokens are secrets: no `Debug`.
pub struct Tokens {
    pub access_token: Secret<String>,
    pub refresh_token: Option<Secret<String>>,
    pub expires_in: Option<i64>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// A person the provider vouched for, mapped through `claims:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's subject (`claims.subject`), as text.
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

impl Identity {
    /// The local user id: the subject namespaced by the upstream id.
    pub fn user_id(&self, upstream: &str) -> String {
        format!("{upstream}:{}", self.subject)
    }
}

/// The HTTP client and caches shared by every sign-in.
pub struct Client {
    http: reqwest::Client,
    endpoints: Mutex<HashMap<String, (Instant, Arc<Endpoints>)>>,
    /// Per JWKS URI: when fetched, the keys.
    keys: Mutex<HashMap<String, (Instant, Arc<JwkSet>)>>,
    /// Per upstream: when discovery last failed, and how. Reused for
    /// [`FAILURE_TTL`], so a provider that is down costs one outbound fetch
    /// per 30 s however many sign-ins start, not one each.
    failed: Mutex<HashMap<String, (Instant, Failure)>>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Self::with_timeout(TIMEOUT)
    }

    fn with_timeout(timeout: Duration) -> Client {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("authplane/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Client { http, endpoints: Mutex::default(), keys: Mutex::default(), failed: Mutex::default() }
    }

    /// The provider's endpoints: from the config, or its discovery document
    /// (cached an hour). The document must name the configured issuer exactly
    /// (OIDC Discovery §4.3), or a mix-up is possible.
    pub async fn endpoints(&self, u: &UpstreamConfig) -> Result<Arc<Endpoints>, Failure> {
        let Some(issuer) = &u.issuer else {
            return Ok(Arc::new(Endpoints {
                issuer: None,
                authorization_endpoint: u.authorization_endpoint.clone().unwrap_or_default(),
                token_endpoint: u.token_endpoint.clone().unwrap_or_default(),
                userinfo_endpoint: u.userinfo_endpoint.clone(),
                jwks_uri: None,
                iss_parameter_supported: false,
            }));
        };
        if let Some((at, e)) = self.endpoints.lock().unwrap_or_else(|p| p.into_inner()).get(&u.id)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(e.clone());
        }
        if let Some((at, f)) = self.failed.lock().unwrap_or_else(|p| p.into_inner()).get(&u.id)
            && at.elapsed() < FAILURE_TTL
        {
            return Err(f.clone());
        }
        let found = self.discover(u, issuer).await;
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match &found {
            Ok(_) => failed.remove(&u.id),
            Err(f) => failed.insert(u.id.clone(), (Instant::now(), f.clone())),
        };
        found
    }

    async fn discover(&self, u: &UpstreamConfig, issuer: &str) -> Result<Arc<Endpoints>, Failure> {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let body = self.get_json(&url).await?;
        let d: Discovery = serde_json::from_value(body)
            .map_err(|e| Failure::Unreachable(format!("{url}: not a discovery document: {e}")))?;
        if d.issuer != issuer {
            return Err(Failure::Unreachable(format!(
                "{url} names issuer {:?}, not the configured {issuer:?}",
                d.issuer
            )));
        }
        // Configured endpoints override discovered ones (a provider whose
        // document names addresses this server cannot reach).
        let e = Arc::new(Endpoints {
            issuer: Some(d.issuer),
            authorization_endpoint: u.authorization_endpoint.clone().unwrap_or(d.authorization_endpoint),
            token_endpoint: u.token_endpoint.clone().unwrap_or(d.token_endpoint),
            userinfo_endpoint: u.userinfo_endpoint.clone().or(d.userinfo_endpoint),
            jwks_uri: Some(d.jwks_uri),
            iss_parameter_supported: d.authorization_response_iss_parameter_supported,
        });
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner()).insert(u.id.clone(), (Instant::now(), e.clone()));
        Ok(e)
    }

    /// Exchanges the code (with the PKCE verifier) at the token endpoint.
    pub async fn exchange_code(
        &self,
        u: &UpstreamConfig,
        e: &Endpoints,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, Failure> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        self.token_request(u, e, &form).await
    }

    /// Uses a stored refresh token (the broker). A refusal is
    /// [`Failure::TokenRefused`] whose detail starts with the OAuth error code
    /// (`invalid_grant` when the person revoked access at the provider).
    pub async fn refresh(&self, u: &UpstreamConfig, e: &Endpoints, refresh_token: &str) -> Result<Tokens, Failure> {
        self.token_request(u, e, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    async fn token_request(
        &self,
        u: &UpstreamConfig,
        e: &Endpoints,
        params: &[(&str, &str)],
    ) -> Result<Tokens, Failure> {
        let secret = client_secret(u)?;
        let mut form: Vec<(&str, &str)> = params.to_vec();
        let mut req = self.http.post(&e.token_endpoint).header("accept", "application/json");
        match u.token_endpoint_auth_method {
            UpstreamAuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: each part form-urlencoded before base64.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                req = req.basic_auth(enc(&u.client_id), Some(enc(secret.expose())));
            }
            UpstreamAuthMethod::ClientSecretPost => {
                form.push(("client_id", &u.client_id));
                form.push(("client_secret", secret.expose()));
            }
        }
        let res = req
            .form(&form)
            .send()
            .await
            .map_err(|err| Failure::Unreachable(format!("{}: {}", e.token_endpoint, without_url(&err))))?;
        let status = res.status();
        let body = read_limited(res).await.map_err(|d| Failure::Unreachable(format!("{}: {d}", e.token_endpoint)))?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            Failure::Unreachable(format!(
                "{} answered {} without a JSON token response",
                e.token_endpoint,
                status.as_u16()
            ))
        })?;
        if let Some(error) = answer.error {
            // GitHub answers 200 with an error body.
            let desc = answer.error_description.map(|d| format!(": {}", d.chars().take(200).collect::<String>()));
            return Err(Failure::TokenRefused(format!("{error}{}", desc.unwrap_or_default())));
        }
        if !status.is_success() {
            return Err(Failure::Unreachable(format!("{} answered {}", e.token_endpoint, status.as_u16())));
        }
        let Some(access_token) = answer.access_token else {
            return Err(Failure::TokenRefused("the token response has no access_token".into()));
        };
        if let Some(t) = &answer.token_type
            && !t.eq_ignore_ascii_case("bearer")
        {
            return Err(Failure::TokenRefused(format!("token_type {t:?} is not Bearer")));
        }
        let expires_in = match answer.expires_in {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        Ok(Tokens {
            access_token: Secret::new(access_token),
            refresh_token: answer.refresh_token.map(Secret::new),
            expires_in,
            id_token: answer.id_token,
            scope: answer.scope,
        })
    }

    /// Verifies an ID token (OIDC Core §3.1.3.7) and returns its claims.
    pub async fn verify_id_token(
        &self,
        u: &UpstreamConfig,
        e: &Endpoints,
        id_token: &str,
        nonce: &str,
        now: i64,
    ) -> Result<Map<String, Value>, Failure> {
        let bad = |d: &str| Failure::IdToken(d.to_owned());
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| bad("not a signed JWT with a supported alg (alg none and unknown algs are refused)"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Failure::IdToken(format!("alg {:?} is not allowed", header.alg)));
        }
        let jwks_uri = e.jwks_uri.as_deref().ok_or_else(|| bad("the provider publishes no jwks_uri"))?;
        let key = match self.key_for(jwks_uri, header.kid.as_deref(), header.alg, false).await? {
            Some(k) => k,
            None => self
                .key_for(jwks_uri, header.kid.as_deref(), header.alg, true)
                .await?
                .ok_or_else(|| Failure::IdToken(format!("no key {:?} in the provider's JWKS", header.kid)))?,
        };
        let mut v = Validation::new(header.alg);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &v)
            .map_err(|err| Failure::IdToken(format!("signature: {err}")))?;
        check_id_token_claims(&data.claims, e.issuer.as_deref().unwrap_or_default(), &u.client_id, nonce, now)?;
        Ok(data.claims)
    }

    /// A key from the provider's JWKS for this `kid` and `alg`: from the cache,
    /// or (with `refetch`, at most once per [`JWKS_REFETCH`]) fetched anew.
    async fn key_for(
        &self,
        jwks_uri: &str,
        kid: Option<&str>,
        alg: Algorithm,
        refetch: bool,
    ) -> Result<Option<DecodingKey>, Failure> {
        let cached = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(jwks_uri).cloned();
        let set = match cached {
            Some((at, set)) if !refetch && at.elapsed() < CACHE_TTL => set,
            Some((at, _)) if refetch && at.elapsed() < JWKS_REFETCH => return Ok(None),
            _ => {
                let body = self.get_json(jwks_uri).await?;
                let set: JwkSet = serde_json::from_value(body)
                    .map_err(|err| Failure::Unreachable(format!("{jwks_uri}: not a JWK set: {err}")))?;
                let set = Arc::new(set);
                self.keys
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(jwks_uri.to_owned(), (Instant::now(), set.clone()));
                set
            }
        };
        let matching: Vec<_> = set
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
            .filter(|k| k.common.key_algorithm.is_none_or(|a| a.to_string() == format!("{alg:?}")))
            .filter(|k| !matches!(k.common.public_key_use, Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)))
            .collect();
        // Without a kid, only an unambiguous key is used.
        match matching.as_slice() {
            [k] => Ok(DecodingKey::from_jwk(k).ok()),
            _ => Ok(None),
        }
    }

    /// Puts a key set in the cache as if just fetched (tests without a provider).
    #[cfg(test)]
    pub fn seed_keys(&self, jwks_uri: &str, set: JwkSet) {
        self.keys.lock().unwrap().insert(jwks_uri.to_owned(), (Instant::now(), Arc::new(set)));
    }

    /// Claims from the userinfo endpoint with the provider's access token.
    pub async fn userinfo(&self, e: &Endpoints, access_token: &Secret<String>) -> Result<Map<String, Value>, Failure> {
        let Some(url) = &e.userinfo_endpoint else {
            return Ok(Map::new());
        };
        match self.get_json_with(url, Some(access_token)).await? {
            Value::Object(m) => Ok(m),
            _ => Err(Failure::Unreachable(format!("{url} did not answer a JSON object"))),
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, Failure> {
        self.get_json_with(url, None).await
    }

    /// GET `url` (with the bearer token, if any): a 2xx JSON answer within
    /// [`MAX_BYTES`], or [`Failure::Unreachable`] naming the URL.
    async fn get_json_with(&self, url: &str, bearer: Option<&Secret<String>>) -> Result<Value, Failure> {
        let mut req = self.http.get(url).header("accept", "application/json");
        if let Some(t) = bearer {
            req = req.bearer_auth(t.expose());
        }
        let res = req.send().await.map_err(|err| Failure::Unreachable(format!("{url}: {}", without_url(&err))))?;
        if !res.status().is_success() {
            return Err(Failure::Unreachable(format!("{url} answered {}", res.status().as_u16())));
        }
        let body = read_limited(res).await.map_err(|d| Failure::Unreachable(format!("{url}: {d}")))?;
        serde_json::from_slice(&body).map_err(|_| Failure::Unreachable(format!("{url} did not answer JSON")))
    }
}

/// A reqwest error without the URL (the caller names it once).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" for url ({u})"), "");
    }
    if e.is_timeout() { "timed out".into() } else { s }
}

async fn read_limited(mut res: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| without_url(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BYTES {
            return Err("answer larger than 256 KiB".into());
        }
    }
    Ok(body)
}

/// The client secret, from the config or read from its file now (a rotated
/// Secret is picked up without a restart).
fn client_secret(u: &UpstreamConfig) -> Result<Secret<String>, Failure> {
    if let Some(s) = &u.client_secret {
        return Ok(s.clone());
    }
    let file = u.client_secret_file.as_deref().unwrap_or_default();
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Misconfigured(format!("upstreams.{}.client_secret_file {file:?}: {e}", u.id)))?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_owned()))
}

/// OIDC Core §3.1.3.7 steps 2–4, 9–11 on the verified claims.
pub fn check_id_token_claims(
    c: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<(), Failure> {
    let bad = |d: String| Err(Failure::IdToken(d));
    if c.get("iss").and_then(Value::as_str) != Some(issuer) {
        return bad(format!("iss {:?} is not {issuer:?}", c.get("iss")));
    }
    let auds: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !auds.contains(&client_id) {
        return bad(format!("aud {auds:?} does not include {client_id:?}"));
    }
    if let Some(azp) = c.get("azp").and_then(Value::as_str)
        && azp != client_id
    {
        return bad(format!("azp {azp:?} is not {client_id:?}"));
    }
    match c.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp + LEEWAY > now => {}
        Some(exp) => return bad(format!("expired at {exp} (now {now})")),
        None => return bad("no exp".into()),
    }
    if let Some(iat) = c.get("iat").and_then(Value::as_i64)
        && iat > now + LEEWAY
    {
        return bad(format!("issued in the future ({iat}, now {now})"));
    }
    match c.get("nonce").and_then(Value::as_str) {
        Some(n) if crate::random::secure_eq(n.as_bytes(), nonce.as_bytes()) => {}
        Some(_) => return bad("nonce does not match the one sent (a replayed or injected ID token)".into()),
        None => return bad("no nonce".into()),
    }
    if c.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
        return bad("no sub".into());
    }
    Ok(())
}

/// The person named by `claims` (ID token claims, then userinfo claims on
/// top), checked against who may sign in.
pub fn identity(u: &UpstreamConfig, claims: &Map<String, Value>) -> Result<Identity, Failure> {
    let text = |name: &str| match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let m = &u.claims;
    let Some(subject) = text(&m.subject) else {
        return Err(Failure::Claims(format!("no {:?} claim to name the user", m.subject)));
    };
    if subject.len() > 200 || subject.chars().any(char::is_control) {
        return Err(Failure::Claims(format!("the {:?} claim is too long or has control characters", m.subject)));
    }
    let email = text(&m.email);
    let name = text(&m.name).map(|n| n.chars().take(200).collect());
    let groups: Vec<String> = match claims.get(&m.groups) {
        Some(Value::Array(a)) => a.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => s.split([' ', ',']).filter(|g| !g.is_empty()).map(str::to_owned).collect(),
        _ => vec![],
    };
    if !u.allowed_email_domains.is_empty() {
        let Some(email) = &email else {
            return Err(Failure::NotAllowed("no email claim, and allowed_email_domains is set".into()));
        };
        if claims.get("email_verified") == Some(&Value::Bool(false)) {
            return Err(Failure::NotAllowed(format!("email {email} is not verified at the provider")));
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        if !u.allowed_email_domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)) {
            return Err(Failure::NotAllowed(format!("email domain {domain:?} is not in allowed_email_domains")));
        }
    }
    if let Some(missing) = u.required_groups.iter().find(|g| !groups.contains(g)) {
        return Err(Failure::NotAllowed(format!("not in required group {missing:?}")));
    }
    Ok(Identity { subject, email, name, groups })
}

/// A PKCE verifier (43 characters of base64url) and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    let verifier = crate::random::secret_token();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest))
}

/// The URL the browser is sent to at the provider.
pub fn authorization_url(
    u: &UpstreamConfig,
    e: &Endpoints,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    challenge: &str,
) -> String {
    let scope = u.scopes.join(" ");
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", &u.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scope)
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    if u.is_oidc() {
        q.append_pair("nonce", nonce);
    }
    let sep = if e.authorization_endpoint.contains('?') { '&' } else { '?' };
    format!("{}{sep}{}", e.authorization_endpoint, q.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn upstream(extra: &str) -> UpstreamConfig {
        let yaml = format!(
            "upstreams:\n  - {{ id: corp, issuer: 'https://idp.example.com', client_id: authplane, client_secret: s{extra} }}\n"
        );
        authplane_core::config::Config::load(Some(("t.yaml", &yaml)), vec![]).unwrap().config.upstreams.remove(0)
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const NOW: i64 = 1_800_000_000;

    fn good() -> Value {
        json!({"iss": "https://idp.example.com", "aud": "authplane", "sub": "00u1", "exp": NOW + 300, "iat": NOW, "nonce": "n1"})
    }

    #[test]
    fn id_token_claims_are_checked_one_by_one() {
        let ok = |v: Value| check_id_token_claims(&claims(v), "https://idp.example.com", "authplane", "n1", NOW);
        assert_eq!(ok(good()), Ok(()));
        let mut multi = good();
        multi["aud"] = json!(["other", "authplane"]);
        multi["azp"] = json!("authplane");
        assert_eq!(ok(multi), Ok(()));
        for (field, value, want) in [
            ("iss", json!("https://evil.example"), "iss"),
            ("aud", json!("someone-else"), "aud"),
            ("azp", json!("someone-else"), "azp"),
            ("exp", json!(NOW - 61), "expired"),
            ("iat", json!(NOW + 120), "future"),
            ("nonce", json!("n2"), "nonce does not match"),
            ("sub", json!(""), "no sub"),
        ] {
            let mut c = good();
            c[field] = value;
            match ok(c) {
                Err(Failure::IdToken(d)) => assert!(d.contains(want), "{field}: {d}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut no_nonce = good();
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert!(matches!(ok(no_nonce), Err(Failure::IdToken(d)) if d == "no nonce"));
    }

    #[test]
    fn claims_map_to_an_identity_and_the_policy_is_enforced() {
        let u = upstream("");
        let id = identity(&u, &claims(json!({"sub": "00u1", "email": "a@corp.example", "name": "Ann"}))).unwrap();
        assert_eq!(id.user_id("corp"), "corp:00u1");
        assert_eq!((id.email.as_deref(), id.name.as_deref()), (Some("a@corp.example"), Some("Ann")));
        // GitHub: a numeric id, a login, no email.
        let gh = upstream(", claims: { subject: id, name: login }");
        let id = identity(&gh, &claims(json!({"id": 583231, "login": "octocat"}))).unwrap();
        assert_eq!((id.subject.as_str(), id.name.as_deref()), ("583231", Some("octocat")));
        assert!(matches!(identity(&gh, &claims(json!({"login": "x"}))), Err(Failure::Claims(_))));

        let domains = upstream(", allowed_email_domains: [corp.example]");
        assert!(identity(&domains, &claims(json!({"sub": "1", "email": "a@CORP.example"}))).is_ok());
        for c in [
            json!({"sub": "1", "email": "a@evil.example"}),
            json!({"sub": "1", "email": "a@corp.example.evil.example"}),
            json!({"sub": "1"}),
            json!({"sub": "1", "email": "a@corp.example", "email_verified": false}),
        ] {
            assert!(matches!(identity(&domains, &claims(c.clone())), Err(Failure::NotAllowed(_))), "{c}");
        }
        let groups = upstream(", required_groups: [mcp, eng]");
        assert!(identity(&groups, &claims(json!({"sub": "1", "groups": ["eng", "mcp", "x"]}))).is_ok());
        assert!(matches!(
            identity(&groups, &claims(json!({"sub": "1", "groups": ["eng"]}))),
            Err(Failure::NotAllowed(d)) if d.contains("mcp")
        ));
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_and_nonce() {
        let u = upstream("");
        let e = Endpoints {
            issuer: Some("https://idp.example.com".into()),
            authorization_endpoint: "https://idp.example.com/authorize?tenant=x".into(),
            token_endpoint: String::new(),
            userinfo_endpoint: None,
            jwks_uri: None,
            iss_parameter_supported: false,
        };
        let (verifier, challenge) = pkce_pair();
        assert_eq!(verifier.len(), 43);
        let url = url::Url::parse(&authorization_url(&u, &e, "https://as/cb", "st", "no", &challenge)).unwrap();
        let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "x");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], challenge);
        assert_eq!((q["state"].as_str(), q["nonce"].as_str()), ("st", "no"));
        assert_eq!(q["scope"], "openid email profile");
    }

    #[test]
    fn failures_have_an_upstream_reason_and_a_page_without_detail() {
        let f = Failure::TokenRefused("invalid_grant: code https://idp.internal:8443 expired".into());
        assert_eq!(f.reason(), "upstream_token_refused");
        assert!(!f.page("Corp SSO").contains("idp.internal"), "provider detail stays off the page");
        assert!(f.page("Corp SSO").contains("Corp SSO"));
    }

    fn es256_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
        let file = authplane_core::es256::generate(0, 0).unwrap();
        let pair = authplane_core::es256::key_pair(&file).unwrap();
        let (x, y) = authplane_core::es256::coordinates(&pair);
        let enc = jsonwebtoken::EncodingKey::from_ec_pem(file.private_key_pem.expose().as_bytes()).unwrap();
        (enc, json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"}))
    }

    fn sign(key: &jsonwebtoken::EncodingKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
        let mut h = jsonwebtoken::Header::new(alg);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, claims, key).unwrap()
    }

    #[tokio::test]
    async fn id_tokens_verify_only_with_the_providers_key_and_an_allowed_alg() {
        let u = upstream("");
        let e = Endpoints {
            issuer: Some("https://idp.example.com".into()),
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            userinfo_endpoint: None,
            jwks_uri: Some("https://idp.example.com/jwks".into()),
            iss_parameter_supported: false,
        };
        let (key, jwk) = es256_key("k1");
        let (other, _) = es256_key("k1");
        let client = Client::new();
        client.seed_keys("https://idp.example.com/jwks", serde_json::from_value(json!({"keys": [jwk]})).unwrap());
        let verify = |t: String| {
            let (c, u, e) = (&client, &u, &e);
            async move { c.verify_id_token(u, e, &t, "n1", NOW).await }
        };

        let claims = verify(sign(&key, Algorithm::ES256, "k1", &good())).await.unwrap();
        assert_eq!(claims["sub"], "00u1");

        let forged = sign(&other, Algorithm::ES256, "k1", &good());
        assert!(matches!(verify(forged).await, Err(Failure::IdToken(d)) if d.starts_with("signature")));
        let unknown_kid = sign(&key, Algorithm::ES256, "k2", &good());
        assert!(matches!(verify(unknown_kid).await, Err(Failure::IdToken(d)) if d.contains("no key")));
        // HMAC with the client secret as the key: never accepted.
        let hs = sign(&jsonwebtoken::EncodingKey::from_secret(b"s"), Algorithm::HS256, "k1", &good());
        assert!(matches!(verify(hs).await, Err(Failure::IdToken(d)) if d.contains("HS256")));
        // alg none: the signature part empty.
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        let none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "k1"})), b64(&good()));
        assert!(matches!(verify(none).await, Err(Failure::IdToken(d)) if d.contains("alg none")));
        let mut wrong_aud = good();
        wrong_aud["aud"] = json!("another-client");
        assert!(
            matches!(verify(sign(&key, Algorithm::ES256, "k1", &wrong_aud)).await, Err(Failure::IdToken(d)) if d.contains("aud"))
        );
    }

    #[tokio::test]
    async fn a_provider_that_is_down_is_asked_once_per_failure_ttl() {
        let u = upstream("").clone();
        let mut down = u.clone();
        down.issuer = Some("http://127.0.0.1:9".into()); // nothing listens
        let client = Client::new();
        let first = client.endpoints(&down).await.unwrap_err();
        assert_eq!(first.reason(), "upstream_unreachable");
        // Answered from memory: the remembered failure, not a new fetch.
        client.failed.lock().unwrap().get_mut("corp").unwrap().1 = Failure::Unreachable("remembered".into());
        assert_eq!(client.endpoints(&down).await.unwrap_err(), Failure::Unreachable("remembered".into()));
        // After the TTL, asked again.
        client.failed.lock().unwrap().get_mut("corp").unwrap().0 -= FAILURE_TTL;
        assert_ne!(client.endpoints(&down).await.unwrap_err(), Failure::Unreachable("remembered".into()));
    }

    /// A provider that answers too much or too slowly. oidc-provider cannot be
    /// made to misbehave like this, so a raw TCP listener on loopback plays
    /// the provider here (the one simulated fault in these tests).
    #[tokio::test]
    async fn a_provider_answer_is_bounded_in_size_and_time() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut req = vec![0u8; 4096];
                    let n = sock.read(&mut req).await.unwrap_or(0);
                    if String::from_utf8_lossy(&req[..n]).starts_with("GET /slow") {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    // 1 MiB of JSON, sent without a length, as long as the client reads.
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n[")
                        .await;
                    let chunk = vec![b'1'; 16 * 1024];
                    for _ in 0..64 {
                        if sock.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let client = Client::with_timeout(Duration::from_millis(500));
        match client.get_json(&format!("http://{addr}/big")).await {
            Err(Failure::Unreachable(d)) => assert!(d.contains("larger than 256 KiB"), "{d}"),
            other => panic!("a 1 MiB answer was read: {other:?}"),
        }
        let started = Instant::now();
        match client.get_json(&format!("http://{addr}/slow")).await {
            Err(Failure::Unreachable(d)) => assert!(d.contains("timed out"), "{d}"),
            other => panic!("a silent provider was waited for: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the timeout bounds the wait");
    }
}
