//! Dynamic client registration (RFC 7591). Redirect URIs follow the same
//! rules as configured clients (https, loopback http, private-use schemes;
//! never `javascript:`, `data:`, fragments or wildcards).

use authplane_core::config::{ClientConfig, GrantType, TokenEndpointAuthMethod, validate_client};
use authplane_core::redirect::RedirectUri;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use sea_orm::TransactionTrait;

use super::Deps;
use super::error::{Error, Kind};
use super::token::RequestIds;
use crate::random;
use crate::store::audit::{self, AuditEvent};
use crate::store::entries::{self as rows, ClientExtras, Source};

/// Largest registration request body.
pub const MAX_BODY: usize = 64 * 1024;

/// What the handler read from a registration request.
pub struct Call<'a> {
    /// The `Authorization: Bearer` value: the initial access token.
    pub bearer: Option<&'a str>,
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub addr: Option<std::net::IpAddr>,
}

/// `POST /oauth/register` as a service: the registration policy
/// (`oauth.registration`), the per-address rate, the initial access token
/// (compared in constant time), the size and client-count bounds, the
/// request's validation, then the client and its audit row in one
/// transaction. Returns the stored client and the RFC 7591 response (with
/// the only copy of a confidential client's secret).
pub async fn register(
    deps: &Deps,
    call: Call<'_>,
    ids: &RequestIds,
    now: i64,
) -> Result<(ClientConfig, Response), Error> {
    use authplane_core::config::RegistrationPolicy;
    let cfg = deps.config.load_full();
    let rate = || {
        deps.registration_rate.check(call.addr, cfg.limits.registrations_per_minute).map_err(|secs| {
            Error::new(
                Kind::RateLimited,
                "too many registrations from this address; register once and keep the client id",
            )
            .retry_after(secs)
        })
    };
    // Open registration is for MCP clients acting for a person: user grants only.
    let mut allowed_grants = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
    match cfg.oauth.registration {
        RegistrationPolicy::Off => {
            return Err(Error::new(
                Kind::RegistrationDisabled,
                "dynamic client registration is disabled on this server",
            ));
        }
        RegistrationPolicy::Token => {
            // Rate-limited before the token check too: guesses at the
            // initial access token count against the same allowance.
            rate()?;
            let presented = call.bearer.unwrap_or("");
            let ok = cfg
                .oauth
                .initial_access_token
                .as_ref()
                .is_some_and(|t| random::secure_eq(presented.as_bytes(), t.expose().as_bytes()));
            if !ok {
                return Err(Error::new(
                    Kind::InvalidToken,
                    "an initial access token is required (Authorization: Bearer …)",
                ));
            }
            allowed_grants.clone_from(&cfg.oauth.initial_access_token_grant_types);
        }
        RegistrationPolicy::Open => rate()?,
    }
    if !call.content_type.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return Err(Error::new(Kind::InvalidClientMetadata, "expected Content-Type: application/json (RFC 7591 §3.1)"));
    }
    if call.body.len() > MAX_BODY {
        return Err(Error::new(Kind::InvalidClientMetadata, "registration request larger than 64 KiB"));
    }
    if cfg.oauth.registration_max_clients > 0 {
        let n = rows::count_clients(&deps.db, Source::Dcr).await?;
        if n >= cfg.oauth.registration_max_clients {
            tracing::warn!(clients = n, "dynamic registration refused: oauth.registration_max_clients reached");
            return Err(Error::new(
                Kind::RateLimited,
                "this server holds the most dynamically registered clients it keeps; retry later",
            )
            .retry_after(3600));
        }
    }
    let request: Request = serde_json::from_slice(call.body)
        .map_err(|e| Error::new(Kind::InvalidClientMetadata, format!("invalid JSON: {e}")))?;
    let secret = || {
        let s = random::secret_token();
        let d = random::sha256_hex(s.as_bytes());
        Some((s, d))
    };
    let (client, extras, mut response, secret) = validate(request, &allowed_grants, deps.ids.id("dcr_"), secret)?;
    let index = deps.resources.get();
    if let Some(r) = client.allowed_resources.iter().find(|r| !index.resources.iter().any(|x| &x.resource == *r)) {
        return Err(Error::new(Kind::InvalidTarget, format!("allowed_resources: {r} is not a registered resource")));
    }
    let txn = deps.db.begin().await?;
    rows::insert_client(&txn, &client, Source::Dcr, now, Some(&extras)).await?;
    audit::record(
        &txn,
        deps.clock.now_ms(),
        AuditEvent {
            event_type: "client_registered",
            outcome: "success",
            client_id: Some(client.client_id.clone()),
            request_id: ids.request_id.clone(),
            trace_id: ids.trace_id.clone(),
            detail: serde_json::json!({"via": "dcr", "client_name": client.client_name, "token_endpoint_auth_method": client.token_endpoint_auth_method.as_str(), "redirect_uris": client.redirect_uris}),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    response.client_id_issued_at = now;
    response.client_secret = secret;
    Ok((client, response))
}

/// The registration request: typed fields plus whatever else the client
/// sent, kept as metadata.
#[derive(Debug, Deserialize)]
pub struct Request {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub client_name: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub application_type: Option<String>,
    pub scope: Option<String>,
    /// Not in RFC 7591: the resources this client may ask for (canonicalised,
    /// each must be registered). Needed for `client_credentials`, which a
    /// machine client registered with an initial access token may have.
    pub allowed_resources: Option<Vec<String>>,
    /// RFC 9449 §5.2: the client always sends DPoP proofs.
    pub dpop_bound_access_tokens: Option<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Serialize)]
pub struct Response {
    pub client_id: String,
    pub client_id_issued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<&'static str>,
    pub response_types: Vec<&'static str>,
    pub token_endpoint_auth_method: &'static str,
    pub application_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_resources: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Metadata members we keep and echo; anything else is dropped (RFC 7591 §2
/// lets the server ignore what it does not understand).
const KEPT: &[&str] =
    &["client_uri", "logo_uri", "tos_uri", "policy_uri", "contacts", "software_id", "software_version"];

const MAX_REDIRECT_URIS: usize = 20;

fn meta_err(d: impl Into<String>) -> Error {
    Error::new(Kind::InvalidClientMetadata, d)
}

/// Members shown to people (consent page, admin list) must be what they
/// claim: https URLs for the `*_uri` members (never `javascript:`), short
/// plain strings otherwise.
fn check_metadata(key: &str, v: &Value) -> Result<(), Error> {
    let plain = |s: &str, max: usize| s.len() <= max && !s.chars().any(char::is_control);
    match (key, v) {
        ("client_uri" | "logo_uri" | "tos_uri" | "policy_uri", Value::String(s)) => {
            let ok = plain(s, 2000)
                && !s.contains(char::is_whitespace)
                && url::Url::parse(s).is_ok_and(|u| {
                    let canonical = u.as_str() == s.as_str() || u.as_str().strip_suffix('/') == Some(s.as_str());
                    u.scheme() == "https" && u.host_str().is_some() && canonical
                });
            if ok { Ok(()) } else { Err(meta_err(format!("{key} must be an https URL"))) }
        }
        ("contacts", Value::Array(items)) => {
            if items.len() <= 10 && items.iter().all(|i| i.as_str().is_some_and(|s| plain(s, 256))) {
                Ok(())
            } else {
                Err(meta_err("contacts must be at most 10 strings of at most 256 characters"))
            }
        }
        ("software_id" | "software_version", Value::String(s)) if plain(s, 256) => Ok(()),
        _ => Err(meta_err(format!("{key} has the wrong type or is too long"))),
    }
}

/// Validates a request into a client, its extras and the response skeleton
/// (the caller fills in the secret).
pub fn validate(
    req: Request,
    allowed_grants: &[GrantType],
    client_id: String,
    secret_sha256: impl FnOnce() -> Option<(String, String)>,
) -> Result<(ClientConfig, ClientExtras, Response, Option<String>), Error> {
    let method = match req.token_endpoint_auth_method.as_deref() {
        // RFC 7591 §2 defaults to client_secret_basic; MCP clients send `none`.
        None | Some("client_secret_basic") => TokenEndpointAuthMethod::ClientSecretBasic,
        Some("client_secret_post") => TokenEndpointAuthMethod::ClientSecretPost,
        Some("none") => TokenEndpointAuthMethod::None,
        Some(other) => {
            return Err(meta_err(format!(
                "token_endpoint_auth_method {other} is not supported (none, client_secret_basic, client_secret_post)"
            )));
        }
    };
    let mut grant_types = Vec::new();
    for g in req.grant_types.clone().unwrap_or_else(|| vec!["authorization_code".into()]) {
        let t = match g.as_str() {
            "authorization_code" => GrantType::AuthorizationCode,
            "refresh_token" => GrantType::RefreshToken,
            "client_credentials" => GrantType::ClientCredentials,
            other => return Err(meta_err(format!("grant_type {other} is not supported"))),
        };
        if !allowed_grants.contains(&t) {
            return Err(meta_err(if t == GrantType::ClientCredentials {
                "grant_type client_credentials is not available through dynamic registration: machine clients \
                 are created by an administrator (config, admin API, OAuthClient), or registered with an initial \
                 access token that allows it"
                    .to_owned()
            } else {
                format!("grant_type {} is not allowed for this registration", t.as_str())
            }));
        }
        if !grant_types.contains(&t) {
            grant_types.push(t);
        }
    }
    // A public client that can use the code grant gets refresh tokens too
    // (MCP clients rely on rotation; OAuth 2.1 §4.3.1 requires it for them).
    if grant_types.contains(&GrantType::AuthorizationCode)
        && !grant_types.contains(&GrantType::RefreshToken)
        && req.grant_types.is_none()
    {
        grant_types.push(GrantType::RefreshToken);
    }
    if let Some(rts) = &req.response_types
        && rts.iter().any(|r| r != "code")
    {
        return Err(meta_err("response_types may only contain code"));
    }
    // Bound what one registration can store (with the 64 KiB body cap and
    // the metadata checks): a client needs a handful of redirect URIs.
    if req.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(meta_err(format!("at most {MAX_REDIRECT_URIS} redirect_uris")));
    }
    let mut redirect_uris = Vec::new();
    for u in &req.redirect_uris {
        redirect_uris.push(RedirectUri::parse(u).map_err(|e| Error::new(Kind::InvalidRedirectUri, e.to_string()))?);
    }
    // Schemes by application type (OpenID Connect Registration §2, RFC
    // 8252): web = https and loopback http; native = those plus private-use
    // schemes. Without one (most MCP clients send none, and editors register
    // `cursor://…` beside https), the type follows from the URIs.
    let all_web = redirect_uris.iter().all(RedirectUri::is_web);
    let application_type = match req.application_type.as_deref() {
        Some("web") if !all_web => {
            return Err(Error::new(
                Kind::InvalidRedirectUri,
                "application_type web allows only https and loopback http redirect URIs; a private-use scheme needs application_type native",
            ));
        }
        Some("web") => "web",
        Some("native") => "native",
        None if all_web => "web",
        None => "native",
        Some(other) => return Err(meta_err(format!("application_type {other} is not supported (web, native)"))),
    };
    if let Some(name) = &req.client_name
        && (name.len() > 200 || name.chars().any(char::is_control))
    {
        return Err(meta_err("client_name is longer than 200 characters or has control characters"));
    }
    let mut allowed_resources = Vec::new();
    for r in req.allowed_resources.iter().flatten() {
        let uri = authplane_core::ResourceUri::parse(r)
            .map_err(|e| Error::new(Kind::InvalidTarget, format!("allowed_resources: {e}")))?;
        if !allowed_resources.contains(&uri) {
            allowed_resources.push(uri);
        }
    }
    let secret = if method.is_confidential() { secret_sha256() } else { None };
    let client = ClientConfig {
        client_id: client_id.clone(),
        client_name: req.client_name.clone(),
        token_endpoint_auth_method: method,
        client_secret_sha256: secret.as_ref().map(|(_, d)| d.clone()),
        redirect_uris,
        grant_types: grant_types.clone(),
        allowed_resources,
        allowed_scopes: vec![],
        dpop_bound_access_tokens: req.dpop_bound_access_tokens.unwrap_or(false),
        broker_upstreams: vec![],
    };
    validate_client("client", &client, |_| true).map_err(|e| {
        if e.key.contains("redirect_uris") {
            Error::new(Kind::InvalidRedirectUri, e.problem)
        } else {
            meta_err(format!("{}: {}", e.key, e.problem))
        }
    })?;
    let mut other = Map::new();
    for (k, v) in req.other {
        if KEPT.contains(&k.as_str()) {
            check_metadata(&k, &v)?;
            other.insert(k, v);
        }
    }
    let extras = ClientExtras { application_type: application_type.to_owned(), metadata: Value::Object(other.clone()) };
    let response = Response {
        client_id,
        client_id_issued_at: 0,
        client_secret: None,
        client_secret_expires_at: secret.as_ref().map(|_| 0),
        client_name: req.client_name,
        redirect_uris: req.redirect_uris,
        grant_types: grant_types.iter().map(|g| g.as_str()).collect(),
        response_types: vec!["code"],
        token_endpoint_auth_method: method.as_str(),
        application_type: application_type.to_owned(),
        scope: req.scope,
        allowed_resources: client.allowed_resources.iter().map(|r| r.to_string()).collect(),
        dpop_bound_access_tokens: client.dpop_bound_access_tokens,
        other,
    };
    Ok((client, extras, response, secret.map(|(s, _)| s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::testing::{Fixture, T0, kind};

    const BODY: &str =
        r#"{"client_name":"Tool","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}"#;

    fn call<'a>(bearer: Option<&'a str>, body: &'a str) -> Call<'a> {
        Call {
            bearer,
            content_type: "application/json",
            body: body.as_bytes(),
            addr: Some("192.0.2.9".parse().unwrap()),
        }
    }

    #[tokio::test]
    async fn the_policy_decides_who_may_register() {
        let off = Fixture::new(r#"registration: "off""#).await;
        assert_eq!(
            kind(register(&off.deps, call(None, BODY), &RequestIds::default(), T0).await),
            Kind::RegistrationDisabled
        );

        let token = Fixture::new(r#"registration: token, initial_access_token: "0123456789abcdef-token""#).await;
        let wrong = register(&token.deps, call(Some("0123456789abcdef-tokem"), BODY), &RequestIds::default(), T0).await;
        assert_eq!(kind(wrong), Kind::InvalidToken);
        assert!(
            register(&token.deps, call(Some("0123456789abcdef-token"), BODY), &RequestIds::default(), T0).await.is_ok()
        );

        let open = Fixture::new("registration: open").await;
        let (client, response) = register(&open.deps, call(None, BODY), &RequestIds::default(), T0).await.unwrap();
        assert_eq!(client.client_id, "dcr_id-1", "the id comes from the id source");
        assert_eq!(response.client_id_issued_at, T0);
        assert!(response.client_secret.is_none(), "a public client gets no secret");
        let stored = crate::oauth::clients::find(&open.deps, "dcr_id-1", T0).await.unwrap().unwrap();
        assert_eq!(stored.display_name, "Tool");
        assert_eq!(open.audit("client_registered").await.len(), 1);
    }

    #[tokio::test]
    async fn malformed_and_oversized_requests_are_refused_before_anything_is_stored() {
        let fx = Fixture::new("registration: open").await;
        let ids = RequestIds::default();
        let mut c = call(None, BODY);
        c.content_type = "text/plain";
        assert_eq!(kind(register(&fx.deps, c, &ids, T0).await), Kind::InvalidClientMetadata);
        let big = format!(r#"{{"client_name":"{}"}}"#, "x".repeat(MAX_BODY));
        assert_eq!(kind(register(&fx.deps, call(None, &big), &ids, T0).await), Kind::InvalidClientMetadata);
        assert_eq!(kind(register(&fx.deps, call(None, "{"), &ids, T0).await), Kind::InvalidClientMetadata);
        assert!(fx.audit("client_registered").await.is_empty());
    }
}
