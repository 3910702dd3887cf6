//! Dynamic client registration (RFC 7591). Redirect URIs follow the same
//! rules as configured clients (https, loopback http, private-use schemes;
//! never `javascript:`, `data:`, fragments or wildcards).

use authplane_core::config::{ClientConfig, GrantType, TokenEndpointAuthMethod, validate_client};
use authplane_core::redirect::RedirectUri;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{Error, Kind};
use crate::store::registry::ClientExtras;

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
