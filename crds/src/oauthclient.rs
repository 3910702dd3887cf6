//! `OAuthClient`: a pre-registered OAuth client and its credential Secret.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{AuthServerRef, Condition};

/// A pre-registered OAuth client of an `AuthServer`. The operator writes its
/// `client_id` (and, for a confidential client, a generated `client_secret`)
/// to the Secret `spec.secretName`, generated once and kept stable; the
/// server only ever sees the secret's SHA-256 digest. A Secret of that name
/// that the operator did not create is honoured as-is (bring your own).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "authplane.io",
    version = "v1alpha1",
    kind = "OAuthClient",
    namespaced,
    status = "OAuthClientStatus",
    shortname = "oac",
    category = "authplane",
    doc = "A pre-registered OAuth client of an AuthServer. See `kubectl explain oauthclient.spec`.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Client-ID", type_ = "string", json_path = ".status.clientId"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "DPoP", type_ = "boolean", json_path = ".spec.dpopBoundAccessTokens"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName", priority = 1),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'confidential' || !has(self.tokenEndpointAuthMethod)").message("spec.tokenEndpointAuthMethod is for confidential clients; a public client authenticates with PKCE only"))]
#[x_kube(validation = Rule::new("self.type == 'confidential' || !self.grantTypes.exists(g, g == 'client_credentials')").message("the client_credentials grant needs spec.type: confidential"))]
#[x_kube(validation = Rule::new("!self.grantTypes.exists(g, g == 'authorization_code') || self.redirectUris.size() > 0").message("a client with the authorization_code grant needs at least one spec.redirectUris entry"))]
#[x_kube(validation = Rule::new("!has(self.brokerUpstreams) || size(self.brokerUpstreams) == 0 || (self.type == 'confidential' && size(self.allowedResources) > 0)").message("spec.brokerUpstreams needs spec.type: confidential and the MCP server's own resource in spec.allowedResources: only tokens issued for it can be exchanged"))]
pub struct OAuthClientSpec {
    /// The AuthServer (same namespace) this client is registered with.
    pub auth_server_ref: AuthServerRef,

    /// The `client_id`. Unset = `<namespace>.<name>`. Printable ASCII, no spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[!-~]{1,255}$"))]
    pub client_id: Option<String>,

    /// A human-readable name, shown on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub client_name: Option<String>,

    /// `public` (native app, SPA, CLI: PKCE only, no secret) or
    /// `confidential` (has a `client_secret`).
    #[serde(default, rename = "type")]
    pub type_: ClientType,

    /// How a confidential client sends its secret: `client_secret_basic`
    /// (default) or `client_secret_post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<AuthMethod>,

    /// Exact redirect URIs (RFC 9700 §4.1.3); a loopback `http://127.0.0.1`
    /// URI matches on any port (RFC 8252 §7.3). Private-use schemes such as
    /// `cursor://` are allowed; `javascript:`, `data:` and fragments are not.
    #[serde(default)]
    #[schemars(schema_with = "crate::common::uri_set")]
    #[x_kube(validation = Rule::new("self.all(u, !u.contains('#') && !u.lowerAscii().startsWith('javascript:') && !u.lowerAscii().startsWith('data:') && u.contains(':'))").message("spec.redirectUris entries must be absolute URIs without a fragment; javascript: and data: are refused"))]
    pub redirect_uris: Vec<String>,

    /// Grant types. Default `[authorization_code, refresh_token]`.
    #[serde(default = "default_grant_types")]
    #[schemars(length(min = 1, max = 3))]
    pub grant_types: Vec<GrantType>,

    /// Resource URIs (ProtectedResource `spec.resource`) this client may ask
    /// for. Empty = every resource of the AuthServer.
    #[serde(default)]
    #[schemars(schema_with = "crate::common::uri_set")]
    pub allowed_resources: Vec<String>,

    /// Scopes this client may be granted. Empty = any scope of the resource.
    #[serde(default)]
    #[schemars(schema_with = "crate::common::scope_set")]
    pub allowed_scopes: Vec<String>,

    /// RFC 9449 §5.2 `dpop_bound_access_tokens`: this client always uses
    /// DPoP, so the AuthServer refuses its token requests without a proof and
    /// every token it gets is bound to its key (`cnf.jkt`).
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,

    /// Upstream ids (AuthServer `spec.upstreams[].id`, each with
    /// `storeTokens`) whose tokens this client may obtain for a user through
    /// RFC 8693 token exchange: the MCP server's own confidential client,
    /// with its resource in `allowedResources`. See docs/guides/token-broker.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub broker_upstreams: Vec<String>,

    /// The Secret that holds `client_id` and `client_secret`. Unset =
    /// `<name>-oauth-client`. If you create it yourself (with a
    /// `client_secret` of at least 32 characters), the operator uses it and
    /// never writes to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub secret_name: Option<String>,
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    #[default]
    Public,
    Confidential,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the credential Secret exists and the client is in its
    /// AuthServer's configuration.
    #[serde(default)]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The effective `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The Secret holding the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// `Generated` (the operator made the secret) or `Provided` (you did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_source: Option<String>,
}
