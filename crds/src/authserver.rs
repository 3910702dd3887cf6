//! `AuthServer`: one AuthPlane authorization server (Deployment, Service,
//! configuration and signing keys).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, SecretKeyRef};

/// An OAuth 2.1 authorization server for MCP servers. The operator renders its
/// configuration and signing keys into Secrets and runs it as a Deployment
/// whose pods carry `app=authplane`, behind a Service with ports `http` (9000)
/// and `admin` (9001).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "authplane.io",
    version = "v1alpha1",
    kind = "AuthServer",
    namespaced,
    status = "AuthServerStatus",
    shortname = "authsrv",
    category = "authplane",
    doc = "An AuthPlane OAuth 2.1 authorization server. See `kubectl explain authserver.spec`.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuer"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Discovery",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"IssuerReachable\")].status"
    ),
    printcolumn(name = "Kid", type_ = "string", json_path = ".status.currentKid", priority = 1),
    printcolumn(name = "Next-Rotation", type_ = "string", json_path = ".status.nextRotation", priority = 1),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Discovery-Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"IssuerReachable\")].reason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.replicas <= 1 || has(self.database.postgres)").message("more than one replica needs spec.database.postgres: a SQLite file cannot be shared between pods"))]
#[x_kube(validation = Rule::new("self.issuer.startsWith('https://') || (self.issuer.startsWith('http://') && (self.allowInsecureHttp || self.issuer.matches('^http://(localhost|127[.]0[.]0[.]1|\\\\[::1\\\\])([:/].*)?$')))").message("spec.issuer must be https (RFC 8414 §2); http is allowed on a loopback host, or with spec.allowInsecureHttp: true on a test cluster"))]
pub struct AuthServerSpec {
    /// The issuer identifier (RFC 8414 §2): the public base URL clients use,
    /// e.g. `https://auth.example.com`. Appears string-for-string in metadata
    /// and in every token's `iss`. No query, fragment or trailing slash.
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self)").message("spec.issuer must be an absolute URL such as https://auth.example.com"))]
    #[x_kube(validation = Rule::new("!self.contains('?') && !self.contains('#')").message("spec.issuer must not have a query or fragment (RFC 8414 §2)"))]
    #[x_kube(validation = Rule::new("!self.endsWith('/')").message("spec.issuer must not end with a slash; clients would build the wrong discovery URLs"))]
    pub issuer: String,

    /// Allow an `http` issuer on a non-loopback host. Test clusters only.
    #[serde(default)]
    pub allow_insecure_http: bool,

    /// Number of pods. More than one needs `database.postgres`.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 50))]
    pub replicas: i32,

    /// Container image of the server. Defaults to the operator's `--server-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// CPU and memory requests and limits of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Where the server keeps clients, grants, tokens and audit events.
    /// Defaults to SQLite on an `emptyDir` volume.
    #[serde(default)]
    pub database: DatabaseSpec,

    /// ES256 signing keys and their rotation.
    #[serde(default)]
    pub signing: SigningSpec,

    /// OAuth protocol options.
    #[serde(default)]
    pub oauth: OAuthSpec,

    /// A Secret key holding the bearer key of the admin REST API on port 9001
    /// (at least 16 characters). Unset = admin API off (`/metrics` and
    /// `/healthz` are always served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_api_key_secret_ref: Option<SecretKeyRef>,

    /// Prometheus Operator integration.
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// Server logging.
    #[serde(default)]
    pub log: LogSpec,

    /// The operator's check of the server's discovery document (condition
    /// `IssuerReachable`). Never affects `Ready`.
    #[serde(default)]
    pub issuer_check: IssuerCheckSpec,

    /// Identity providers people sign in through ("Continue with …" on the
    /// login page). Their client secrets reach the pods as mounted files,
    /// never through the rendered config. See docs/guides/upstream-login.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(u, self.exists_one(v, v.id == u.id))").message("spec.upstreams: each id must be unique"))]
    pub upstreams: Vec<UpstreamSpec>,
    /// The token broker's encryption key (Secret `<name>-broker-keys`), when
    /// an upstream has `storeTokens`.
    #[serde(default)]
    pub broker: BrokerSpec,
}

/// The operator puts a new key on top of `<name>-broker-keys` every
/// `keyRotationInterval`; the server re-encrypts stored grants with it within
/// the hour. Old keys are never removed by the operator (it cannot see which
/// rows use them): remove older lines once the server's
/// `authplane_broker_grants_old_key` gauge is 0.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerSpec {
    /// `90d`, `12h`, `30s`; `0` = never rotate automatically.
    #[serde(default = "default_broker_rotation")]
    #[schemars(regex(pattern = "^(0|[0-9]+[smhd])$"))]
    pub key_rotation_interval: String,
}

impl Default for BrokerSpec {
    fn default() -> Self {
        BrokerSpec { key_rotation_interval: default_broker_rotation() }
    }
}

fn default_broker_rotation() -> String {
    "90d".into()
}

/// One identity provider: OpenID Connect (`issuer`) or plain OAuth 2 (the
/// three endpoints).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.issuer) || (has(self.authorizationEndpoint) && has(self.tokenEndpoint) && has(self.userinfoEndpoint))").message("spec.upstreams[]: set issuer (OpenID Connect), or authorizationEndpoint, tokenEndpoint and userinfoEndpoint (plain OAuth 2)"))]
pub struct UpstreamSpec {
    /// Lowercase letters, digits and `-`: in the callback URL
    /// `<issuer>/ui/upstream/<id>/callback` and in user ids `<id>:<subject>`.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9-]*$')").message("spec.upstreams[].id must be lowercase letters, digits and '-', e.g. corp"))]
    pub id: String,
    /// The button text: "Continue with <displayName>".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub display_name: Option<String>,
    /// OpenID Connect issuer (discovery at `<issuer>/.well-known/openid-configuration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isURL(self) && self.startsWith('https://')").message("spec.upstreams[].issuer must be an https URL"))]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isURL(self) && self.startsWith('https://')").message("spec.upstreams[].authorizationEndpoint must be an https URL"))]
    pub authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isURL(self) && self.startsWith('https://')").message("spec.upstreams[].tokenEndpoint must be an https URL"))]
    pub token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isURL(self) && self.startsWith('https://')").message("spec.upstreams[].userinfoEndpoint must be an https URL"))]
    pub userinfo_endpoint: Option<String>,
    #[schemars(length(min = 1, max = 512))]
    pub client_id: String,
    /// The Secret key holding the client secret the provider issued; mounted
    /// into the pods as a file (a rotated Secret needs no restart).
    pub client_secret_ref: SecretKeyRef,
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<UpstreamAuthMethod>,
    /// Requested at the provider. Default `[openid, email, profile]`; an
    /// OpenID Connect upstream needs `openid` (checked when the config is
    /// rendered: `ConfigRendered=False`, reason `InvalidSpec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub scopes: Option<Vec<String>>,
    /// Claim names: `subject`, `email`, `name`, `groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<BTreeMap<String, String>>,
    /// Only these email domains may sign in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_email_domains: Vec<String>,
    /// The person must be in every listed group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_groups: Vec<String>,
    /// Keep the provider's tokens for the token broker (encrypted with a key
    /// the operator generates in the Secret `<name>-broker-keys`).
    #[serde(default)]
    pub store_tokens: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

/// The operator fetches `/.well-known/oauth-authorization-server` through
/// the AuthServer's own Service now and then and compares its `issuer` with
/// `spec.issuer`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerCheckSpec {
    /// `false` = not checked (`IssuerReachable=Unknown`, reason `NotChecked`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The discovery URL to fetch instead of the Service's
    /// (`http://<name>.<namespace>.svc:9000/.well-known/oauth-authorization-server`),
    /// e.g. when the operator cannot reach Services (no kube-proxy) or runs
    /// outside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))").message("spec.issuerCheck.discoveryUrl must be an absolute http(s) URL"))]
    pub discovery_url: Option<String>,
}

impl Default for IssuerCheckSpec {
    fn default() -> Self {
        IssuerCheckSpec { enabled: true, discovery_url: None }
    }
}

fn default_replicas() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Exactly one of `sqlite` (the default) or `postgres`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.sqlite) && has(self.postgres))").message("set only one of spec.database.sqlite and spec.database.postgres"))]
pub struct DatabaseSpec {
    /// SQLite in a file on a volume: one replica only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteSpec>,
    /// PostgreSQL; required for more than one replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqliteSpec {
    /// A PersistentVolumeClaim (in this namespace) to keep the database on.
    /// Unset = an `emptyDir`: the data is lost when the pod goes away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// A Secret key holding `postgres://user:password@host:5432/db`. Passed to
    /// the pods as `AUTHPLANE_DATABASE_URL`; the operator never reads it.
    pub url_secret_ref: SecretKeyRef,
    /// Connection pool size per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_connections: Option<i32>,
    /// TLS to Postgres, as libpq's `sslmode`. Unset: `verify-full` when
    /// `caSecretRef` is set, else the URL's `sslmode` (default `prefer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<PostgresSslMode>,
    /// A Secret key holding the PEM CA bundle that signs the Postgres server
    /// certificate (RDS's global-bundle.pem, Cloud SQL's server-ca.pem).
    /// Mounted into the pods and set as `database.sslrootcert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// libpq's `sslmode` values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresSslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Three-phase rotation (publish → sign → retire): a new key is published in
/// JWKS `publishAhead` before it starts signing; the old key stays published
/// for `overlap` after that, so tokens it signed keep verifying.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SigningSpec {
    /// How long a key signs before the next one takes over (`30d`, `12h`,
    /// `90s`). `0` = never rotate automatically.
    #[serde(default = "default_rotation_interval")]
    #[schemars(regex(pattern = "^(0|[0-9]+[smhd])$"))]
    pub rotation_interval: String,
    /// Phase 1 → 2: how long a new key is published before it signs. Must
    /// cover resource servers' JWKS cache time (5 min in the SDK) plus skew.
    #[serde(default = "default_publish_ahead")]
    #[schemars(regex(pattern = "^(0|[0-9]+[smhd])$"))]
    pub publish_ahead: String,
    /// Phase 2 → 3: how long the previous key stays in JWKS after the new one
    /// starts signing. Unset = the access-token lifetime + 5m + 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^(0|[0-9]+[smhd])$"))]
    pub overlap: Option<String>,
}

impl Default for SigningSpec {
    fn default() -> Self {
        SigningSpec {
            rotation_interval: default_rotation_interval(),
            publish_ahead: default_publish_ahead(),
            overlap: None,
        }
    }
}

fn default_rotation_interval() -> String {
    "30d".into()
}

fn default_publish_ahead() -> String {
    "6m".into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.registration != 'token' || has(self.initialAccessTokenSecretRef)").message("spec.oauth.registration: token needs spec.oauth.initialAccessTokenSecretRef"))]
pub struct OAuthSpec {
    /// Reject an authorization request without `scope` instead of granting
    /// the resource's default scopes. Never changes the token audience.
    #[serde(default)]
    pub require_scope: bool,
    /// Access-token lifetime.
    #[serde(default = "default_access_ttl")]
    #[schemars(regex(pattern = "^[0-9]+[smhd]$"))]
    pub access_token_ttl: String,
    /// Refresh-token lifetime.
    #[serde(default = "default_refresh_ttl")]
    #[schemars(regex(pattern = "^[0-9]+[smhd]$"))]
    pub refresh_token_ttl: String,
    /// Authorization-code lifetime (at most 10m, RFC 6749 §4.1.2).
    #[serde(default = "default_code_ttl")]
    #[schemars(regex(pattern = "^[0-9]+[sm]$"))]
    pub authorization_code_ttl: String,
    /// Dynamic client registration (RFC 7591): `open`, `token` (an initial
    /// access token is required) or `off`.
    #[serde(default)]
    pub registration: Registration,
    /// A Secret key holding the initial access token for `registration: token`
    /// (at least 16 characters). Passed to the pods as an environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_access_token_secret_ref: Option<SecretKeyRef>,
    /// Accept `https` client ids as Client ID Metadata Documents.
    #[serde(default = "default_true")]
    pub client_id_metadata_documents: bool,
}

impl Default for OAuthSpec {
    fn default() -> Self {
        OAuthSpec {
            require_scope: false,
            access_token_ttl: default_access_ttl(),
            refresh_token_ttl: default_refresh_ttl(),
            authorization_code_ttl: default_code_ttl(),
            registration: Registration::Open,
            initial_access_token_secret_ref: None,
            client_id_metadata_documents: true,
        }
    }
}

fn default_access_ttl() -> String {
    "1h".into()
}

fn default_refresh_ttl() -> String {
    "30d".into()
}

fn default_code_ttl() -> String {
    "60s".into()
}

fn default_true() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    #[default]
    Open,
    Token,
    Off,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// A Prometheus Operator ServiceMonitor for the admin port. Created only
    /// when the `servicemonitors.monitoring.coreos.com` CRD exists.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval, e.g. `30s`. Unset = Prometheus' default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9]+(ms|s|m|h)$"))]
    pub interval: Option<String>,
    /// Extra labels on the ServiceMonitor, e.g. the `release` label your
    /// Prometheus selects on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogSpec {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    #[serde(default = "default_log_level")]
    pub level: LogLevel,
    /// `logfmt` (so `kubectl logs -l app=authplane | grep trace_id=…` works) or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogSpec {
    fn default() -> Self {
        LogSpec { level: default_log_level(), format: LogFormat::Logfmt }
    }
}

fn default_log_level() -> LogLevel {
    LogLevel::Info
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Logfmt,
    Json,
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthServerStatus {
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `ConfigRendered`, `KeysReady`, `Available`, `IssuerReachable`.
    #[serde(default)]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The issuer clients see (`spec.issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// In-cluster URL of the public port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `kid` of the key that signs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_kid: Option<String>,
    /// When the next key will be published (RFC 3339); unset when rotation is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<String>,
    /// Every key in the signing-key Secret and its phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<SigningKeyStatus>,
    /// SHA-256 (first 16 hex digits) of the rendered config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// ProtectedResources in the rendered config.
    #[serde(default)]
    pub resources: i32,
    /// OAuthClients in the rendered config.
    #[serde(default)]
    pub clients: i32,
    /// Pods of the Deployment that are available.
    #[serde(default)]
    pub available_replicas: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyStatus {
    pub kid: String,
    /// `next` (published, not signing), `current` (signing) or `previous`
    /// (published so that older tokens verify).
    pub phase: String,
    /// When the key starts (or started) signing, RFC 3339.
    pub active_from: String,
    /// When the key leaves JWKS, RFC 3339 (previous keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retires_at: Option<String>,
}
