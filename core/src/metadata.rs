//! Authorization-server metadata (RFC 8414) as served at every well-known
//! URL, and the protected-resource metadata document (RFC 9728) that the SDK
//! serves and the doctor reads.

use serde::{Deserialize, Serialize};

/// The metadata document. Optional members are present only when the server
/// implements the feature they advertise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    pub scopes_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_modes_supported: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_indicators_supported: Option<bool>,
}

/// The well-known paths that serve the metadata for `issuer`: the RFC 8414 §3
/// path-inserted forms, the OIDC path-appended form, and (MCP-CLIENTS.md quirk 1)
/// the bare root forms even when the issuer has a path.
pub fn well_known_paths(issuer_path: &str) -> Vec<String> {
    let p = issuer_path.trim_end_matches('/');
    let mut out =
        vec!["/.well-known/oauth-authorization-server".to_owned(), "/.well-known/openid-configuration".to_owned()];
    if !p.is_empty() {
        out.push(format!("/.well-known/oauth-authorization-server{p}"));
        out.push(format!("/.well-known/openid-configuration{p}"));
        out.push(format!("{p}/.well-known/openid-configuration"));
        out.push(format!("{p}/.well-known/oauth-authorization-server"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_issuer_has_the_two_root_forms() {
        assert_eq!(
            well_known_paths(""),
            vec!["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
        );
        assert_eq!(well_known_paths("/"), well_known_paths(""));
    }

    #[test]
    fn path_issuer_has_inserted_and_appended_forms() {
        let p = well_known_paths("/tenant-a");
        assert!(p.contains(&"/.well-known/oauth-authorization-server/tenant-a".to_owned()));
        assert!(p.contains(&"/.well-known/openid-configuration/tenant-a".to_owned()));
        assert!(p.contains(&"/tenant-a/.well-known/openid-configuration".to_owned()));
        assert!(p.contains(&"/.well-known/oauth-authorization-server".to_owned()));
    }

    #[test]
    fn absent_features_are_not_advertised() {
        let m = AuthorizationServerMetadata {
            issuer: "https://a".into(),
            jwks_uri: "https://a/jwks".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&m).unwrap();
        assert!(v.get("token_endpoint").is_none());
        assert!(v.get("registration_endpoint").is_none());
    }
}

/// RFC 9728 §3: the well-known URI suffix of the protected-resource metadata.
pub const PRM_WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The protected-resource metadata document (RFC 9728 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    pub resource: String,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub bearer_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// RFC 9728 §2: the DPoP proof algorithms this resource accepts.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// RFC 9728 §2: only DPoP-bound tokens are accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens_required: bool,
}
