//! Which resources and scopes a request gets (RFC 8707, RFC 6749 §3.3, and
//! the MCP client quirks of MCP-CLIENTS.md §5).

use authplane_core::ResourceUri;
use authplane_core::config::{ClientConfig, OAuthConfig, ResourceConfig, UnknownScopes};

use super::error::{Error, Kind};

pub const OFFLINE_ACCESS: &str = "offline_access";

/// The outcome of resource and scope selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub resources: Vec<ResourceUri>,
    pub scopes: Vec<String>,
    pub offline_access: bool,
    /// Requested scopes that were dropped (`oauth.unknown_scopes: drop`).
    pub dropped: Vec<String>,
}

impl Grant {
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }
}

/// Canonicalises requested `resource` values and checks them against the
/// registry and the client. With none requested, the client's only allowed
/// resource, or the only registered one, is used.
pub fn select_resources(
    requested: &[String],
    client: &ClientConfig,
    registry: &[ResourceConfig],
) -> Result<Vec<ResourceUri>, Error> {
    let mut out: Vec<ResourceUri> = Vec::new();
    for raw in requested {
        let uri = ResourceUri::parse(raw).map_err(|e| Error::new(Kind::InvalidTarget, format!("resource: {e}")))?;
        if !registry.iter().any(|r| r.resource == uri) {
            return Err(Error::new(
                Kind::InvalidTarget,
                format!("resource {uri} is not registered with this authorization server"),
            ));
        }
        if !client.allowed_resources.is_empty() && !client.allowed_resources.contains(&uri) {
            return Err(Error::new(
                Kind::InvalidTarget,
                format!("client {} may not request resource {uri}", client.client_id),
            ));
        }
        if !out.contains(&uri) {
            out.push(uri);
        }
    }
    if out.is_empty() {
        let candidates: Vec<&ResourceUri> = if client.allowed_resources.is_empty() {
            registry.iter().map(|r| &r.resource).collect()
        } else {
            client.allowed_resources.iter().collect()
        };
        match candidates.as_slice() {
            [only] => out.push((*only).clone()),
            _ => {
                return Err(Error::new(
                    Kind::InvalidTarget,
                    "resource is required (RFC 8707): send resource=<the MCP server URI>",
                ));
            }
        }
    }
    Ok(out)
}

/// Applies the scope rules for `requested` (`None` = no `scope` parameter)
/// against the chosen resources and the client's allowed scopes.
pub fn select_scopes(
    requested: Option<&str>,
    resources: &[ResourceUri],
    client: &ClientConfig,
    registry: &[ResourceConfig],
    cfg: &OAuthConfig,
) -> Result<Grant, Error> {
    let chosen: Vec<&ResourceConfig> = registry.iter().filter(|r| resources.contains(&r.resource)).collect();
    let allowed = |s: &str| client.allowed_scopes.is_empty() || client.allowed_scopes.iter().any(|a| a == s);
    let declared = |s: &str| chosen.iter().any(|r| r.scopes.iter().any(|x| x == s));

    let items = requested.map(authplane_core::scope::split).unwrap_or_default();
    let offline_access = items.contains(&OFFLINE_ACCESS);
    let mut scopes = Vec::new();
    let mut dropped = Vec::new();
    for s in items.iter().filter(|s| **s != OFFLINE_ACCESS) {
        if declared(s) && allowed(s) {
            scopes.push((*s).to_owned());
        } else {
            dropped.push((*s).to_owned());
        }
    }
    if !dropped.is_empty() && cfg.unknown_scopes == UnknownScopes::Reject {
        return Err(Error::new(
            Kind::InvalidScope,
            format!("scope not available for the requested resource: {}", dropped.join(" ")),
        ));
    }
    let asked_for_nothing = items.iter().all(|s| *s == OFFLINE_ACCESS);
    if asked_for_nothing && cfg.require_scope {
        return Err(Error::new(Kind::InvalidScope, "scope is required (AUTHPLANE_OAUTH_REQUIRE_SCOPE=true)"));
    }
    if scopes.is_empty() && !asked_for_nothing {
        // Only scopes we dropped: never widen what was asked into the
        // resource's defaults, which may be more powerful.
        let declared: Vec<&str> =
            chosen.iter().flat_map(|r| r.scopes.iter().map(String::as_str)).filter(|s| allowed(s)).collect();
        return Err(Error::new(
            Kind::InvalidScope,
            format!(
                "none of the requested scopes is available for the requested resource (asked: {}; available: {})",
                dropped.join(" "),
                declared.join(" ")
            ),
        ));
    }
    if scopes.is_empty() {
        // No scope asked for: the resources' defaults.
        for r in &chosen {
            for s in r.effective_default_scopes() {
                if allowed(s) && !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
        }
    }
    if scopes.is_empty() {
        return Err(Error::new(Kind::InvalidScope, "no scope of the requested resource is allowed for this client"));
    }
    Ok(Grant { resources: resources.to_vec(), scopes, offline_access, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Vec<ResourceConfig> {
        vec![
            ResourceConfig {
                resource: ResourceUri::parse("https://mcp.example.com/mcp").unwrap(),
                name: None,
                scopes: vec!["tools/read".into(), "tools/write".into()],
                default_scopes: Some(vec!["tools/read".into()]),
                dpop_required: false,
            },
            ResourceConfig {
                resource: ResourceUri::parse("https://files.example.com").unwrap(),
                name: None,
                scopes: vec!["files/read".into()],
                default_scopes: None,
                dpop_required: false,
            },
        ]
    }

    fn client() -> ClientConfig {
        ClientConfig {
            client_id: "c".into(),
            client_name: None,
            token_endpoint_auth_method: Default::default(),
            client_secret_sha256: None,
            redirect_uris: vec![],
            grant_types: vec![],
            allowed_resources: vec![],
            allowed_scopes: vec![],
            dpop_bound_access_tokens: false,
            broker_upstreams: vec![],
        }
    }

    #[test]
    fn resources_are_canonicalised_and_checked() {
        let r = select_resources(&["https://MCP.example.com/mcp/".into()], &client(), &registry()).unwrap();
        assert_eq!(r[0].as_str(), "https://mcp.example.com/mcp");
        let e = select_resources(&["https://evil.example/mcp".into()], &client(), &registry()).unwrap_err();
        assert_eq!(e.kind, Kind::InvalidTarget);
        let e = select_resources(&[], &client(), &registry()).unwrap_err();
        assert_eq!(e.kind, Kind::InvalidTarget, "two resources registered: ambiguous");
        let mut c = client();
        c.allowed_resources = vec![ResourceUri::parse("https://files.example.com").unwrap()];
        assert_eq!(select_resources(&[], &c, &registry()).unwrap()[0].as_str(), "https://files.example.com");
        assert!(select_resources(&["https://mcp.example.com/mcp".into()], &c, &registry()).is_err());
    }

    #[test]
    fn scope_rules() {
        let reg = registry();
        let res = vec![reg[0].resource.clone()];
        let cfg = OAuthConfig::default();
        let g = select_scopes(None, &res, &client(), &reg, &cfg).unwrap();
        assert_eq!(g.scopes, vec!["tools/read"], "defaults when scope is missing");
        let g = select_scopes(Some("tools/write offline_access my-client-name"), &res, &client(), &reg, &cfg).unwrap();
        assert_eq!(g.scopes, vec!["tools/write"]);
        assert!(g.offline_access);
        assert_eq!(g.dropped, vec!["my-client-name"]);
        // Another resource's scope is dropped and never turns into the
        // defaults (which could be more than was asked for).
        let e = select_scopes(Some("files/read"), &res, &client(), &reg, &cfg).unwrap_err();
        assert_eq!(e.kind, Kind::InvalidScope);
        assert!(e.description.contains("available: tools/read tools/write"), "{}", e.description);
        let e = select_scopes(Some("my-client-name offline_access"), &res, &client(), &reg, &cfg).unwrap_err();
        assert_eq!(e.kind, Kind::InvalidScope, "only unknown scopes asked: refused, not widened");
        let g = select_scopes(Some("offline_access"), &res, &client(), &reg, &cfg).unwrap();
        assert_eq!(g.scopes, vec!["tools/read"], "nothing but offline_access asked: the defaults");

        let reject = OAuthConfig { unknown_scopes: UnknownScopes::Reject, ..OAuthConfig::default() };
        assert_eq!(
            select_scopes(Some("tools/read nope"), &res, &client(), &reg, &reject).unwrap_err().kind,
            Kind::InvalidScope
        );
        let require = OAuthConfig { require_scope: true, ..OAuthConfig::default() };
        assert_eq!(select_scopes(None, &res, &client(), &reg, &require).unwrap_err().kind, Kind::InvalidScope);
        assert_eq!(
            select_scopes(Some("offline_access"), &res, &client(), &reg, &require).unwrap_err().kind,
            Kind::InvalidScope
        );
        assert!(select_scopes(Some("tools/read"), &res, &client(), &reg, &require).is_ok());

        let mut c = client();
        c.allowed_scopes = vec!["tools/read".into()];
        let g = select_scopes(Some("tools/read tools/write"), &res, &c, &reg, &cfg).unwrap();
        assert_eq!(g.scopes, vec!["tools/read"]);
    }
}
