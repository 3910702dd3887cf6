//! [`ProtectedResource`]: what an MCP server tells the SDK about itself.
//! Parsed once at start-up; everything derived from it (the PRM document and
//! URLs, the challenge header) is computed here so requests never re-check.

use std::sync::Arc;

use authplane_core::ResourceUri;
use authplane_core::scope::is_valid_scope_token;
use url::Url;

use crate::prm::{PRM_WELL_KNOWN, ProtectedResourceMetadata};

/// Configuration errors, each naming the bad value and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("resource {0:?}: {1}")]
    Resource(String, String),
    #[error("resource {0:?}: must not contain a query (RFC 9728 §3.1 builds the metadata URL from host and path)")]
    ResourceQuery(String),
    #[error(
        "issuer {0:?}: must be an absolute http(s) URL without query or fragment, exactly as the AS's metadata `issuer`"
    )]
    Issuer(String),
    #[error("scope {0:?}: not a valid scope token (RFC 6749 §3.3)")]
    Scope(String),
    #[error(
        "scope \"offline_access\" must not be advertised by a protected resource (MCP 2026-07-28); clients ask the AS for it"
    )]
    OfflineAccess,
    #[error("default scope {0:?} is not one of the resource's scopes")]
    DefaultScope(String),
    #[error("{0} {1:?}: not an absolute http(s) URL")]
    Url(&'static str, String),
}

/// A protected resource (an MCP server) and the AS that issues its tokens.
///
/// ```
/// use authplane_sdk::ProtectedResource;
/// let resource = ProtectedResource::new("http://localhost:8080/mcp", "http://localhost:9000")?
///     .with_scopes(["tools/read", "tools/write"])?
///     .with_default_scopes(["tools/read"])?
///     .with_resource_name("Example MCP server");
/// assert_eq!(resource.metadata_url(), "http://localhost:8080/.well-known/oauth-protected-resource/mcp");
/// # Ok::<(), authplane_sdk::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProtectedResource {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
pub(crate) struct Inner {
    pub(crate) resource: ResourceUri,
    pub(crate) issuer: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) default_scopes: Vec<String>,
    pub(crate) resource_name: Option<String>,
    pub(crate) resource_documentation: Option<String>,
    pub(crate) as_metadata_url: Option<Url>,
    pub(crate) jwks_uri: Option<Url>,
    /// RFC 9449: only DPoP-bound tokens, with a proof, are accepted.
    pub(crate) dpop_required: bool,
    // Derived.
    pub(crate) metadata_path: String,
    pub(crate) metadata_url: String,
}

impl ProtectedResource {
    /// `resource` is this server's URL as clients call it (the MCP endpoint,
    /// e.g. `https://mcp.example.com/mcp`); it is canonicalised as the AS
    /// does (RFC 8707: lower-case scheme and host, no default port, no
    /// trailing slash). `issuer` is the AS's issuer, compared to the token's
    /// `iss` string for string.
    pub fn new(resource: &str, issuer: &str) -> Result<Self, ConfigError> {
        let canonical =
            ResourceUri::parse(resource).map_err(|e| ConfigError::Resource(resource.into(), e.to_string()))?;
        if canonical.as_str().contains('?') {
            return Err(ConfigError::ResourceQuery(resource.into()));
        }
        let issuer_url = Url::parse(issuer).map_err(|_| ConfigError::Issuer(issuer.into()))?;
        if !matches!(issuer_url.scheme(), "http" | "https")
            || issuer_url.query().is_some()
            || issuer_url.fragment().is_some()
            || issuer_url.host_str().is_none()
        {
            return Err(ConfigError::Issuer(issuer.into()));
        }
        let inner = Inner {
            issuer: issuer.to_owned(),
            scopes: Vec::new(),
            default_scopes: Vec::new(),
            resource_name: None,
            resource_documentation: None,
            as_metadata_url: None,
            jwks_uri: None,
            dpop_required: false,
            metadata_path: String::new(),
            metadata_url: String::new(),
            resource: canonical,
        };
        Ok(ProtectedResource { inner: Arc::new(inner) }.derive())
    }

    /// The scopes this resource understands (`scopes_supported` in PRM).
    pub fn with_scopes<I, S>(self, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes = parse_scopes(scopes)?;
        let mut inner = self.into_inner();
        inner.default_scopes.retain(|d| scopes.contains(d));
        inner.scopes = scopes;
        Ok(Self::from_inner(inner))
    }

    /// The scopes named in a 401 challenge, which clients request on first
    /// authorization; the rest are obtained by step-up (a 403
    /// `insufficient_scope`). Defaults to all of [`Self::with_scopes`]; call
    /// it after `with_scopes`, since each default must be one of the scopes.
    pub fn with_default_scopes<I, S>(self, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let defaults = parse_scopes(scopes)?;
        if let Some(unknown) = defaults.iter().find(|d| !self.inner.scopes.contains(d)) {
            return Err(ConfigError::DefaultScope(unknown.clone()));
        }
        let mut inner = self.into_inner();
        inner.default_scopes = defaults;
        Ok(Self::from_inner(inner))
    }

    /// A human-readable name (`resource_name` in PRM).
    pub fn with_resource_name(self, name: impl Into<String>) -> Self {
        let mut inner = self.into_inner();
        inner.resource_name = Some(name.into());
        Self::from_inner(inner)
    }

    /// A page for developers (`resource_documentation` in PRM).
    pub fn with_resource_documentation(self, url: &str) -> Result<Self, ConfigError> {
        let url = parse_http_url("resource_documentation", url)?;
        let mut inner = self.into_inner();
        inner.resource_documentation = Some(url.to_string());
        Ok(Self::from_inner(inner))
    }

    /// Fetch the AS metadata from here instead of the issuer's well-known URL
    /// (e.g. an in-cluster address when the issuer is the public one). The
    /// document's `issuer` must still equal the configured issuer.
    pub fn with_as_metadata_url(self, url: &str) -> Result<Self, ConfigError> {
        let url = parse_http_url("as_metadata_url", url)?;
        let mut inner = self.into_inner();
        inner.as_metadata_url = Some(url);
        Ok(Self::from_inner(inner))
    }

    /// Fetch keys from this JWKS URL and skip AS metadata discovery.
    pub fn with_jwks_uri(self, url: &str) -> Result<Self, ConfigError> {
        let url = parse_http_url("jwks_uri", url)?;
        let mut inner = self.into_inner();
        inner.jwks_uri = Some(url);
        Ok(Self::from_inner(inner))
    }

    /// Accept only DPoP-bound access tokens presented with a proof
    /// (`Authorization: DPoP …` and a `DPoP` header, RFC 9449 §7): a bearer
    /// token is refused (`ErrDpopRequired`), PRM says
    /// `dpop_bound_access_tokens_required`, and 401 challenges name only the
    /// `DPoP` scheme. Register the resource with `dpop_required: true` at the
    /// AS too, so clients get bound tokens. Without it both schemes work.
    pub fn with_dpop_required(self, required: bool) -> Self {
        let mut inner = self.into_inner();
        inner.dpop_required = required;
        Self::from_inner(inner)
    }

    pub fn dpop_required(&self) -> bool {
        self.inner.dpop_required
    }

    /// The `htu` a DPoP proof for a request to `path` must name: this
    /// resource's origin (scheme, host, port as configured: the URL clients
    /// call, whatever proxy sits in front) and the request's path.
    pub fn htu_for(&self, path: &str) -> String {
        let r = self.inner.resource.as_str();
        let after_scheme = r.find("://").map_or(0, |i| i + 3);
        let origin = match r[after_scheme..].find('/') {
            Some(i) => &r[..after_scheme + i],
            None => r,
        };
        format!("{origin}{path}")
    }

    /// The canonical resource URI, what the token's `aud` must contain.
    pub fn resource(&self) -> &str {
        self.inner.resource.as_str()
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// The scopes named in a 401 challenge.
    pub fn default_scopes(&self) -> &[String] {
        if self.inner.default_scopes.is_empty() { &self.inner.scopes } else { &self.inner.default_scopes }
    }

    /// The absolute PRM URL (`resource_metadata` in challenges): RFC 9728 §3.1
    /// inserts the well-known path between the host and the resource's path.
    pub fn metadata_url(&self) -> &str {
        &self.inner.metadata_url
    }

    /// The path the PRM document is served at on this server, e.g.
    /// `/.well-known/oauth-protected-resource/mcp`.
    pub fn metadata_path(&self) -> &str {
        &self.inner.metadata_path
    }

    /// Every path that serves PRM: the path-suffixed form and (MCP-CLIENTS.md
    /// quirk 2) the root form, which clients fall back to.
    pub fn metadata_paths(&self) -> Vec<&str> {
        let mut paths = vec![self.inner.metadata_path.as_str()];
        if self.inner.metadata_path != PRM_WELL_KNOWN {
            paths.push(PRM_WELL_KNOWN);
        }
        paths
    }

    /// The PRM document (RFC 9728 §2).
    pub fn metadata(&self) -> ProtectedResourceMetadata {
        ProtectedResourceMetadata {
            resource: self.inner.resource.to_string(),
            authorization_servers: vec![self.inner.issuer.clone()],
            scopes_supported: self.inner.scopes.clone(),
            bearer_methods_supported: vec!["header".into()],
            resource_name: self.inner.resource_name.clone(),
            resource_documentation: self.inner.resource_documentation.clone(),
            dpop_signing_alg_values_supported: authplane_core::dpop::SUPPORTED_ALGS
                .iter()
                .map(|a| (*a).to_owned())
                .collect(),
            dpop_bound_access_tokens_required: self.inner.dpop_required,
        }
    }

    fn into_inner(self) -> Inner {
        Arc::unwrap_or_clone(self.inner)
    }

    fn from_inner(inner: Inner) -> Self {
        ProtectedResource { inner: Arc::new(inner) }
    }

    fn derive(self) -> Self {
        let mut inner = self.into_inner();
        let r = inner.resource.as_str();
        // Canonical form is scheme://authority[/path]; split at the first '/' after "//".
        let after_scheme = r.find("://").map_or(0, |i| i + 3);
        let (origin, path) = match r[after_scheme..].find('/') {
            Some(i) => r.split_at(after_scheme + i),
            None => (r, ""),
        };
        inner.metadata_path = format!("{PRM_WELL_KNOWN}{path}");
        inner.metadata_url = format!("{origin}{}", inner.metadata_path);
        Self::from_inner(inner)
    }
}

fn parse_scopes<I, S>(scopes: I) -> Result<Vec<String>, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut out: Vec<String> = Vec::new();
    for s in scopes {
        let s = s.into();
        if !is_valid_scope_token(&s) {
            return Err(ConfigError::Scope(s));
        }
        if s == "offline_access" {
            return Err(ConfigError::OfflineAccess);
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

fn parse_http_url(what: &'static str, s: &str) -> Result<Url, ConfigError> {
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        _ => Err(ConfigError::Url(what, s.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_inserts_the_well_known_path() {
        let r = ProtectedResource::new("http://LOCALHOST:8080/mcp/", "http://localhost:9000").unwrap();
        assert_eq!(r.resource(), "http://localhost:8080/mcp");
        assert_eq!(r.metadata_url(), "http://localhost:8080/.well-known/oauth-protected-resource/mcp");
        assert_eq!(r.metadata_paths(), vec!["/.well-known/oauth-protected-resource/mcp", PRM_WELL_KNOWN]);

        let root = ProtectedResource::new("https://mcp.example.com/", "https://as.example.com").unwrap();
        assert_eq!(root.resource(), "https://mcp.example.com");
        assert_eq!(root.metadata_url(), "https://mcp.example.com/.well-known/oauth-protected-resource");
        assert_eq!(root.metadata_paths(), vec![PRM_WELL_KNOWN]);

        let deep = ProtectedResource::new("https://x.test:8443/a/b", "https://as.test/tenant").unwrap();
        assert_eq!(deep.metadata_url(), "https://x.test:8443/.well-known/oauth-protected-resource/a/b");
    }

    #[test]
    fn scopes_are_checked() {
        let r = ProtectedResource::new("http://localhost:8080/mcp", "http://localhost:9000").unwrap();
        assert_eq!(r.clone().with_scopes(["a b"]).unwrap_err(), ConfigError::Scope("a b".into()));
        assert_eq!(r.clone().with_scopes(["offline_access"]).unwrap_err(), ConfigError::OfflineAccess);
        let r = r.with_scopes(["tools/read", "tools/write", "tools/read"]).unwrap();
        assert_eq!(r.scopes(), ["tools/read", "tools/write"]);
        assert_eq!(r.default_scopes(), ["tools/read", "tools/write"]);
        assert_eq!(r.clone().with_default_scopes(["nope"]).unwrap_err(), ConfigError::DefaultScope("nope".into()));
        let r = r.with_default_scopes(["tools/read"]).unwrap();
        assert_eq!(r.default_scopes(), ["tools/read"]);
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(ProtectedResource::new("/mcp", "http://localhost:9000"), Err(ConfigError::Resource(..))));
        assert!(matches!(
            ProtectedResource::new("http://localhost:8080/mcp?x=1", "http://localhost:9000"),
            Err(ConfigError::ResourceQuery(_))
        ));
        assert!(matches!(
            ProtectedResource::new("http://localhost:8080/mcp", "localhost:9000"),
            Err(ConfigError::Issuer(_))
        ));
        let r = ProtectedResource::new("http://localhost:8080/mcp", "http://localhost:9000").unwrap();
        assert!(matches!(r.with_jwks_uri("file:///etc/passwd"), Err(ConfigError::Url("jwks_uri", _))));
    }
}
