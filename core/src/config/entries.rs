//! The rules for one resource, client or user; `key` prefixes the field
//! names in errors. Used for the config file, the admin API and the operator.

use super::*;

/// The rules for one resource; `key` prefixes the field names in errors.
pub fn validate_resource(key: &str, r: &ResourceConfig) -> Result<(), ConfigError> {
    if r.resource.is_insecure_http() {
        return Err(err(
            format!("{key}.resource"),
            Some(r.resource.as_str()),
            "plain http on a non-loopback host",
            "use the https URI clients connect to",
        ));
    }
    if r.scopes.is_empty() {
        return Err(err(
            format!("{key}.scopes"),
            None,
            "a resource needs at least one scope",
            "list the scopes its tools require, e.g. [tools/read]",
        ));
    }
    validate_scopes(&format!("{key}.scopes"), &r.scopes)?;
    if let Some(defaults) = &r.default_scopes {
        for s in defaults {
            if !r.scopes.contains(s) {
                return Err(err(
                    format!("{key}.default_scopes"),
                    Some(s),
                    "not one of the resource's scopes",
                    "add it to scopes or remove it here",
                ));
            }
        }
    }
    Ok(())
}

/// The rules for one client; `known_resource` says whether a resource exists.
pub fn validate_client(
    key: &str,
    c: &ClientConfig,
    known_resource: impl Fn(&ResourceUri) -> bool,
) -> Result<(), ConfigError> {
    if !is_valid_client_id(&c.client_id) {
        return Err(err(
            format!("{key}.client_id"),
            Some(&c.client_id),
            "not a valid client id",
            "use 1-255 printable ASCII characters without spaces",
        ));
    }
    match (c.token_endpoint_auth_method.is_confidential(), &c.client_secret_sha256) {
        (true, None) => {
            return Err(err(
                format!("{key}.client_secret_sha256"),
                None,
                "missing for a confidential client",
                "set the hex SHA-256 of the secret (`printf %s \"$SECRET\" | sha256sum`)",
            ));
        }
        (true, Some(d)) if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Err(err(
                format!("{key}.client_secret_sha256"),
                Some("[redacted]"),
                "not a 64-character hex SHA-256 digest",
                "set the hex SHA-256 of the secret (`printf %s \"$SECRET\" | sha256sum`)",
            ));
        }
        (false, Some(_)) => {
            return Err(err(
                format!("{key}.client_secret_sha256"),
                Some("[redacted]"),
                "set on a public client (token_endpoint_auth_method: none)",
                "remove it, or make the client confidential with client_secret_basic",
            ));
        }
        _ => {}
    }
    if c.grant_types.is_empty() {
        return Err(err(format!("{key}.grant_types"), None, "empty", "list at least authorization_code"));
    }
    if c.grant_types.contains(&GrantType::AuthorizationCode) && c.redirect_uris.is_empty() {
        return Err(err(
            format!("{key}.redirect_uris"),
            None,
            "empty for a client with the authorization_code grant",
            "register the client's callback URI(s)",
        ));
    }
    if c.grant_types.contains(&GrantType::ClientCredentials) && !c.token_endpoint_auth_method.is_confidential() {
        return Err(err(
            format!("{key}.grant_types"),
            Some("client_credentials"),
            "needs a confidential client",
            "set token_endpoint_auth_method: client_secret_basic",
        ));
    }
    validate_scopes(&format!("{key}.allowed_scopes"), &c.allowed_scopes)?;
    for r in &c.allowed_resources {
        if !known_resource(r) {
            return Err(err(
                format!("{key}.allowed_resources"),
                Some(r.as_str()),
                "not a declared resource",
                "declare it under resources, or remove it here",
            ));
        }
    }
    Ok(())
}

/// The rules for one local user.
pub fn validate_user(key: &str, u: &UserConfig) -> Result<(), ConfigError> {
    if u.username.trim().is_empty() || u.username.len() > 255 || u.username.chars().any(char::is_control) {
        return Err(err(
            format!("{key}.username"),
            Some(&u.username),
            "empty, too long or has control characters",
            "use 1-255 printable characters",
        ));
    }
    if let Some(id) = &u.id
        && !is_valid_client_id(id)
    {
        return Err(err(
            format!("{key}.id"),
            Some(id),
            "not a valid user id",
            "use 1-255 printable ASCII characters without spaces",
        ));
    }
    if !u.password_hash.expose().starts_with("$argon2id$") {
        return Err(err(
            format!("{key}.password_hash"),
            Some("[redacted]"),
            "not an argon2id PHC string",
            "generate one with `authserver util hash-password`",
        ));
    }
    Ok(())
}

/// Upstream ids appear in URLs (`/ui/upstream/<id>/…`), user ids
/// (`<id>:<subject>`) and env variable names.
pub fn is_valid_upstream_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// An endpoint of an identity provider: https, or http on loopback (tests,
/// a provider on the same host).
fn upstream_url(key: &str, value: &str) -> Result<(), ConfigError> {
    let ok = match Url::parse(value) {
        Ok(u) => {
            u.username().is_empty()
                && u.password().is_none()
                && u.fragment().is_none()
                && (u.scheme() == "https" && u.host_str().is_some() || is_loopback_http(value))
        }
        Err(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(err(
            key,
            Some(value),
            "not an https URL (plain http only on loopback), or has user info or a fragment",
            "use the provider's https URL, e.g. https://idp.example.com",
        ))
    }
}

/// The rules for one identity provider.
pub fn validate_upstream(key: &str, u: &UpstreamConfig) -> Result<(), ConfigError> {
    if !is_valid_upstream_id(&u.id) {
        return Err(err(
            format!("{key}.id"),
            Some(&u.id),
            "not a valid upstream id",
            "use 1-32 lowercase letters, digits and '-', e.g. corp",
        ));
    }
    if let Some(issuer) = &u.issuer {
        upstream_url(&format!("{key}.issuer"), issuer)?;
        if issuer.ends_with('/') && issuer.matches('/').count() == 3 {
            return Err(err(
                format!("{key}.issuer"),
                Some(issuer),
                "has a trailing slash",
                "write the issuer exactly as the provider's discovery document states it",
            ));
        }
    } else {
        for (field, v) in [("authorization_endpoint", &u.authorization_endpoint), ("token_endpoint", &u.token_endpoint)]
        {
            if v.is_none() {
                return Err(err(
                    format!("{key}.{field}"),
                    None,
                    "missing: an upstream needs an issuer (OpenID Connect) or its endpoints (plain OAuth 2)",
                    "set issuer, or authorization_endpoint, token_endpoint and userinfo_endpoint",
                ));
            }
        }
        if u.userinfo_endpoint.is_none() {
            return Err(err(
                format!("{key}.userinfo_endpoint"),
                None,
                "missing: without an issuer there is no ID token, so the user's claims come from userinfo",
                "set the provider's userinfo URL, e.g. https://api.github.com/user",
            ));
        }
    }
    for (field, v) in [
        ("authorization_endpoint", &u.authorization_endpoint),
        ("token_endpoint", &u.token_endpoint),
        ("userinfo_endpoint", &u.userinfo_endpoint),
    ] {
        if let Some(v) = v {
            upstream_url(&format!("{key}.{field}"), v)?;
        }
    }
    if u.client_id.is_empty() || u.client_id.chars().any(char::is_control) {
        return Err(err(
            format!("{key}.client_id"),
            Some(&u.client_id),
            "empty or has control characters",
            "use the client id the provider gave you",
        ));
    }
    match (&u.client_secret, &u.client_secret_file) {
        (Some(_), Some(f)) => {
            return Err(err(
                format!("{key}.client_secret_file"),
                Some(f),
                "set together with client_secret",
                "keep one of them",
            ));
        }
        (None, None) => {
            return Err(err(
                format!("{key}.client_secret"),
                None,
                "missing",
                "set client_secret or client_secret_file to the secret the provider gave you",
            ));
        }
        _ => {}
    }
    if u.scopes.iter().any(|s| !is_valid_scope_token(s)) {
        return Err(err(
            format!("{key}.scopes"),
            Some(&u.scopes.join(" ")),
            "a scope has characters RFC 6749 does not allow",
            "list the provider's scope names, e.g. [openid, email, profile]",
        ));
    }
    if u.is_oidc() && !u.scopes.iter().any(|s| s == "openid") {
        return Err(err(
            format!("{key}.scopes"),
            Some(&u.scopes.join(" ")),
            "an OpenID Connect upstream needs the openid scope",
            "add openid, or drop issuer and configure the endpoints for plain OAuth 2",
        ));
    }
    for d in &u.allowed_email_domains {
        if d.is_empty() || d.starts_with('@') || d.contains(char::is_whitespace) {
            return Err(err(
                format!("{key}.allowed_email_domains"),
                Some(d),
                "not a domain",
                "write the part after @, e.g. example.com",
            ));
        }
    }
    let c = &u.claims;
    for (field, v) in [("subject", &c.subject), ("email", &c.email), ("name", &c.name), ("groups", &c.groups)] {
        if v.is_empty() {
            return Err(err(format!("{key}.claims.{field}"), None, "empty", "name the claim, or leave the default"));
        }
    }
    Ok(())
}

/// The issuer rules of RFC 8414 §2, plus "no trailing slash" so that the
/// well-known URLs clients build are unambiguous.
pub fn validate_issuer(issuer: &str, allow_insecure_http: bool) -> Result<(), (String, String)> {
    let fix_base = "use the public base URL, e.g. https://auth.example.com";
    let url = Url::parse(issuer).map_err(|_| ("not an absolute URL".to_owned(), fix_base.to_owned()))?;
    if url.query().is_some() || issuer.contains('?') {
        return Err(("an issuer must not have a query (RFC 8414 §2)".into(), fix_base.into()));
    }
    if url.fragment().is_some() || issuer.contains('#') {
        return Err(("an issuer must not have a fragment (RFC 8414 §2)".into(), fix_base.into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(("an issuer must not contain user information".into(), fix_base.into()));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_http(issuer) || allow_insecure_http => {}
        "http" => {
            return Err((
                "http is allowed only on a loopback host (RFC 8414 §2 requires https)".into(),
                "use https, or set server.allow_insecure_http: true on a test cluster".into(),
            ));
        }
        _ => return Err(("the scheme must be https".into(), fix_base.into())),
    }
    if issuer.ends_with('/') {
        return Err((
            "ends with a slash; clients would build the wrong discovery URLs".into(),
            "remove the trailing slash".into(),
        ));
    }
    Ok(())
}

fn validate_scopes(key: &str, scopes: &[String]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for s in scopes {
        if !is_valid_scope_token(s) {
            return Err(err(
                key,
                Some(s),
                "not a valid scope token (RFC 6749 §3.3)",
                "use printable ASCII without spaces, quotes or backslashes",
            ));
        }
        if s == "offline_access" {
            return Err(err(
                key,
                Some(s),
                "offline_access is granted by the AS, not declared by a resource",
                "remove it",
            ));
        }
        if !seen.insert(s) {
            return Err(err(key, Some(s), "listed twice", "remove the duplicate"));
        }
    }
    Ok(())
}

/// Client ids: 1–255 visible ASCII characters (RFC 6749 Appendix A.1 allows
/// VSCHAR; we also forbid spaces so ids survive logs and URLs unquoted).
pub fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| (0x21..=0x7E).contains(&b))
}
