//! Types shared by the three kinds: references, conditions and the names the
//! operator and the generated YAML agree on.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every AuthPlane kind.
pub const GROUP: &str = "authplane.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Condition types (ARCHITECTURE §5).
pub mod condition {
    /// Everything the object asks for is in place.
    pub const READY: &str = "Ready";
    /// AuthServer: the config Secret holds the rendered configuration.
    pub const CONFIG_RENDERED: &str = "ConfigRendered";
    /// AuthServer: the signing-key Secret holds a usable key.
    pub const KEYS_READY: &str = "KeysReady";
    /// AuthServer: the Deployment has available replicas.
    pub const AVAILABLE: &str = "Available";
    /// AuthServer: discovery, fetched by the operator, names `spec.issuer`.
    /// A diagnostic: it does not affect `Ready`.
    pub const ISSUER_REACHABLE: &str = "IssuerReachable";
    /// ProtectedResource: the MCP server's PRM document, fetched by the
    /// operator, agrees with the object. A diagnostic: it does not affect `Ready`.
    pub const PRM_VERIFIED: &str = "PRMVerified";
}

/// A reference to the `AuthServer` that serves this object, in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct AuthServerRef {
    /// Name of an `AuthServer` in this object's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key in a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// One condition, with the fields and meaning of the Kubernetes
/// `metav1.Condition`. `lastTransitionTime` changes only when `status` does.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `ConfigRendered`, `KeysReady`, `Available`, `IssuerReachable` or `PRMVerified`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// A CamelCase word a program can switch on, e.g. `AuthServerNotFound`.
    pub reason: String,
    /// What a person should know, and what to do about it.
    #[serde(default)]
    pub message: String,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// The condition of `type_` in `conditions`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Schema of `conditions` lists: a map keyed by `type`, as Kubernetes does it.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

/// RFC 6749 §3.3 `scope-token`: NQCHAR = %x21 / %x23-5B / %x5D-7E.
pub const SCOPE_PATTERN: &str = r"^[!#-\[\]-~]+$";
/// A whole number of seconds, minutes, hours or days, as in the server's config file.
pub const DURATION_PATTERN: &str = "^(0|[0-9]+[smhd])$";

/// A `listType: set` of scope tokens.
pub(crate) fn scope_set(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    string_set(generator, 64, 128, Some(SCOPE_PATTERN))
}

/// A `listType: set` of URIs.
pub(crate) fn uri_set(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    string_set(generator, 32, 2048, None)
}

fn string_set(
    _generator: &mut schemars::SchemaGenerator,
    max_items: u32,
    max_length: u32,
    pattern: Option<&str>,
) -> schemars::Schema {
    let mut items = serde_json::json!({"type": "string", "minLength": 1, "maxLength": max_length});
    if let Some(p) = pattern {
        items["pattern"] = p.into();
    }
    let value = serde_json::json!({
        "type": "array",
        "items": items,
        "maxItems": max_items,
        "x-kubernetes-list-type": "set",
    });
    schemars::Schema::try_from(value).unwrap_or_default()
}

/// `scopes` of a resource: a non-empty set, without `offline_access`.
pub(crate) fn required_scope_set(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = scope_set(generator);
    schema.insert("minItems".into(), 1.into());
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{
            "rule": "!self.exists(s, s == 'offline_access')",
            "message": "offline_access is granted by the AS, not declared by a resource"
        }]),
    );
    schema
}

/// An optional set of scope tokens.
pub(crate) fn optional_scope_set(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = scope_set(generator);
    schema.insert("nullable".into(), true.into());
    schema
}
