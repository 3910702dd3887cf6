//! The authorization request (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1): which
//! errors may be sent back to the client and which must not (an unknown
//! client or a redirect URI that does not match never gets a redirect).

use authplane_core::config::{ClientConfig, GrantType, OAuthConfig, ResourceConfig};
use serde::{Deserialize, Serialize};

use super::error::{Error, Kind};
use super::pkce;
use super::scopes::{self, Grant};

/// The query (GET) or form (POST) parameters, as sent.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Params {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    #[serde(default)]
    pub resource: Vec<String>,
    pub response_mode: Option<String>,
    pub prompt: Option<String>,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code is bound to.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

/// A request that passed every rule, ready for login and consent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Validated {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resources: Vec<String>,
    pub scopes: Vec<String>,
    pub offline_access: bool,
    pub prompt_consent: bool,
    pub prompt_login: bool,
    /// RFC 9449 §10: the code will need a proof by this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// Where an error goes.
#[derive(Debug)]
pub enum Failure {
    /// Shown to the user on an error page: the redirect URI cannot be trusted.
    Page(Error),
    /// Sent back to the client's (verified) redirect URI.
    Redirect { redirect_uri: String, state: Option<String>, error: Box<Error> },
}

impl Failure {
    pub fn error(&self) -> &Error {
        match self {
            Failure::Page(e) => e,
            Failure::Redirect { error, .. } => error,
        }
    }
}

const MAX_PARAM: usize = 4096;

/// Checks the request; `client` is `None` when the id is unknown.
pub fn validate(
    p: &Params,
    client: Option<&ClientConfig>,
    registry: &[ResourceConfig],
    cfg: &OAuthConfig,
) -> Result<(Validated, Grant), Failure> {
    // Oversized parameters are refused before anything is looked at.
    let sizes = [&p.client_id, &p.redirect_uri, &p.scope, &p.state, &p.code_challenge, &p.prompt, &p.dpop_jkt];
    if sizes.iter().any(|v| v.as_ref().is_some_and(|s| s.len() > MAX_PARAM))
        || p.resource.len() > 16
        || p.resource.iter().any(|r| r.len() > MAX_PARAM)
    {
        return Err(Failure::Page(Error::new(Kind::InvalidRequest, "a parameter is too large")));
    }
    let Some(client_id) = p.client_id.as_deref().filter(|s| !s.is_empty()) else {
        return Err(Failure::Page(Error::new(Kind::InvalidRequest, "client_id is required")));
    };
    let Some(client) = client else {
        return Err(Failure::Page(Error::new(Kind::UnknownClient, format!("unknown client {client_id}"))));
    };

    // RFC 9700 §4.1.3: exact match, loopback port aside. With no
    // redirect_uri, a client with exactly one registered URI uses it.
    let redirect_uri = match p.redirect_uri.as_deref() {
        Some(uri) => {
            if !client.redirect_uris.iter().any(|r| r.matches(uri)) {
                return Err(Failure::Page(Error::new(
                    Kind::RedirectUriMismatch,
                    format!("redirect_uri {uri} is not registered for client {client_id}"),
                )));
            }
            uri.to_owned()
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.as_str().to_owned(),
            _ => return Err(Failure::Page(Error::new(Kind::InvalidRequest, "redirect_uri is required"))),
        },
    };

    let back = |error: Error| Failure::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: p.state.clone(),
        error: Box::new(error),
    };

    match p.response_type.as_deref() {
        Some("code") => {}
        None => return Err(back(Error::new(Kind::InvalidRequest, "response_type is required"))),
        Some(other) => {
            return Err(back(Error::new(
                Kind::UnsupportedResponseType,
                format!("response_type {other} is not supported; use code"),
            )));
        }
    }
    if let Some(mode) = p.response_mode.as_deref()
        && mode != "query"
    {
        return Err(back(Error::new(
            Kind::InvalidRequest,
            format!("response_mode {mode} is not supported; use query"),
        )));
    }
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(back(Error::new(Kind::UnauthorizedClient, "this client may not use the authorization_code grant")));
    }
    // PKCE S256 for every client (OAuth 2.1 §4.1.1, RFC 9700 §2.1.1).
    let Some(challenge) = p.code_challenge.as_deref() else {
        return Err(back(Error::new(Kind::InvalidRequest, "code_challenge is required (PKCE with S256)")));
    };
    match p.code_challenge_method.as_deref() {
        Some("S256") => {}
        None => {
            return Err(back(Error::new(Kind::InvalidRequest, "code_challenge_method is required and must be S256")));
        }
        Some(m) => {
            return Err(back(Error::new(
                Kind::InvalidRequest,
                format!("code_challenge_method {m} is not supported; use S256"),
            )));
        }
    }
    if !pkce::valid_challenge(challenge) {
        return Err(back(Error::new(
            Kind::InvalidRequest,
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        )));
    }

    // A JWK SHA-256 thumbprint is 43 base64url characters (RFC 7638, RFC 9449 §10).
    if let Some(jkt) = &p.dpop_jkt
        && (jkt.len() != 43 || !jkt.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(back(Error::new(
            Kind::InvalidRequest,
            "dpop_jkt must be the base64url SHA-256 JWK thumbprint of the DPoP key (43 characters)",
        )));
    }

    let resources = scopes::select_resources(&p.resource, client, registry).map_err(back)?;
    let grant = scopes::select_scopes(p.scope.as_deref(), &resources, client, registry, cfg).map_err(back)?;

    let prompts: Vec<&str> = p.prompt.as_deref().map(|s| s.split(' ').collect()).unwrap_or_default();
    if prompts.contains(&"none") {
        // We always show login or consent at least once; silent flows are not offered.
        return Err(back(Error::new(Kind::InvalidRequest, "prompt=none is not supported")));
    }
    Ok((
        Validated {
            client_id: client_id.to_owned(),
            redirect_uri,
            state: p.state.clone(),
            code_challenge: challenge.to_owned(),
            resources: grant.resources.iter().map(|r| r.to_string()).collect(),
            scopes: grant.scopes.clone(),
            offline_access: grant.offline_access,
            prompt_consent: prompts.contains(&"consent"),
            prompt_login: prompts.contains(&"login"),
            dpop_jkt: p.dpop_jkt.clone(),
        },
        grant,
    ))
}

/// The redirect back to the client, with `iss` on every response (RFC 9207).
pub fn redirect_url(redirect_uri: &str, params: &[(&str, &str)], state: Option<&str>, issuer: &str) -> String {
    let mut url = String::from(redirect_uri);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    if let Some(s) = state {
        q.append_pair("state", s);
    }
    q.append_pair("iss", issuer);
    url.push(if redirect_uri.contains('?') { '&' } else { '?' });
    url.push_str(&q.finish());
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_existing_query_and_adds_iss() {
        assert_eq!(
            redirect_url("http://127.0.0.1:1/cb?x=1", &[("code", "abc")], Some("s t"), "http://localhost:9000"),
            "http://127.0.0.1:1/cb?x=1&code=abc&state=s+t&iss=http%3A%2F%2Flocalhost%3A9000"
        );
    }
}
