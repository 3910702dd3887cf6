//! `ProtectedResource`: an MCP server (RFC 9728 protected resource) that an
//! `AuthServer` issues tokens for.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{AuthServerRef, Condition};

/// A protected resource (an MCP server) registered with an `AuthServer`.
/// Tokens for it carry its canonical URI in `aud` (RFC 8707), and its scopes
/// appear in the AuthServer's `scopes_supported`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "authplane.io",
    version = "v1alpha1",
    kind = "ProtectedResource",
    namespaced,
    status = "ProtectedResourceStatus",
    shortname = "pres",
    category = "authplane",
    doc = "An MCP server (protected resource) served by an AuthServer. See `kubectl explain protectedresource.spec`.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Resource", type_ = "string", json_path = ".spec.resource"),
    printcolumn(name = "AuthServer", type_ = "string", json_path = ".spec.authServerRef.name"),
    printcolumn(name = "PRM", type_ = "string", json_path = ".status.conditions[?(@.type==\"PRMVerified\")].status"),
    printcolumn(name = "DPoP", type_ = "boolean", json_path = ".spec.dpopRequired"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "PRM-Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"PRMVerified\")].reason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.defaultScopes) || self.defaultScopes.all(s, s in self.scopes)").message("every spec.defaultScopes entry must be one of spec.scopes"))]
pub struct ProtectedResourceSpec {
    /// The AuthServer (same namespace) that issues tokens for this resource.
    pub auth_server_ref: AuthServerRef,

    /// The resource URI clients send as `resource` (RFC 8707), e.g.
    /// `https://mcp.example.com/mcp`. Compared after canonicalisation (scheme
    /// and host lower-cased, default port dropped, one trailing slash
    /// ignored). https, or http on a loopback host; no fragment.
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self)").message("spec.resource must be an absolute URI such as https://mcp.example.com/mcp"))]
    #[x_kube(validation = Rule::new("!self.contains('#')").message("spec.resource must not have a fragment (RFC 8707 §2)"))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.matches('^http://(localhost|127[.]0[.]0[.]1|\\\\[::1\\\\])([:/].*)?$')").message("spec.resource must be https (http only on a loopback host)"))]
    pub resource: String,

    /// A human-readable name, shown on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub display_name: Option<String>,

    /// The scopes this resource's tools require (RFC 6749 §3.3 scope tokens),
    /// e.g. `[tools/read, tools/write]`. `offline_access` is granted by the AS
    /// and cannot be declared.
    #[schemars(schema_with = "crate::common::required_scope_set")]
    pub scopes: Vec<String>,

    /// Granted when a request has no `scope` (unless the AuthServer sets
    /// `oauth.requireScope`). Unset = every scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::common::optional_scope_set")]
    pub default_scopes: Option<Vec<String>>,

    /// Require DPoP-bound tokens (RFC 9449) for this resource: the AuthServer
    /// refuses a token request for it without a DPoP proof, and the SDK in the
    /// MCP server (configured with `dpop_required`) refuses bearer tokens.
    #[serde(default)]
    pub dpop_required: bool,

    /// Have the operator fetch this MCP server's Protected Resource Metadata
    /// (RFC 9728) now and then and compare it with this object and its
    /// AuthServer (condition `PRMVerified`). Unset = not checked
    /// (`PRMVerified=Unknown`, reason `NotChecked`). `{}` checks the URL
    /// derived from `spec.resource`. Never affects `Ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prm_check: Option<PrmCheck>,
}

/// Where the operator reads the resource's PRM document.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrmCheck {
    /// The PRM document's URL as the operator can reach it, when that differs
    /// from the public one, e.g.
    /// `http://mcp.tools.svc:8080/.well-known/oauth-protected-resource/mcp`.
    /// Unset = derived from `spec.resource` (RFC 9728 §3.1: the well-known
    /// path inserted before the resource's path, then the root form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))").message("spec.prmCheck.url must be an absolute http(s) URL"))]
    pub url: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedResourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the resource is in its AuthServer's configuration.
    /// `PRMVerified`: what the MCP server's PRM document says, when checked.
    #[serde(default)]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The issuer of the AuthServer, for the resource's PRM `authorization_servers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The canonical form of `spec.resource`: what tokens carry in `aud`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_resource: Option<String>,
}
