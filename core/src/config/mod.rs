//! The configuration file schema, the `AUTHPLANE_<SECTION>_<KEY>` overlay and
//! validation. One schema for the server, the operator (which renders it) and
//! the docs (`config/reference.yaml`).
//!
//! Loading is pure: the caller reads the file and hands in the environment.
//!
//! This file holds the types; `entries.rs` the rules for one resource, client
//! or user (shared with the admin API and the operator); `load.rs` parsing and
//! the environment overlay; `validate.rs` the rules across the whole file.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::redirect::{RedirectUri, is_loopback_http};
use crate::resource::ResourceUri;
use crate::scope::is_valid_scope_token;
use crate::{Duration, Secret};

mod entries;
mod load;
mod validate;

pub use entries::{
    is_valid_client_id, is_valid_upstream_id, validate_client, validate_issuer, validate_resource, validate_upstream,
    validate_user,
};
pub use load::Loaded;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub database: DatabaseConfig,
    pub signing: SigningConfig,
    pub oauth: OAuthConfig,
    pub log: LogConfig,
    pub audit: AuditConfig,
    pub otel: OtelConfig,
    pub limits: LimitsConfig,
    pub resources: Vec<ResourceConfig>,
    pub clients: Vec<ClientConfig>,
    pub users: Vec<UserConfig>,
    /// Identity providers people sign in through (`/ui/upstream/<id>/…`).
    pub upstreams: Vec<UpstreamConfig>,
    /// The token broker: upstream tokens kept for MCP servers.
    pub broker: BrokerConfig,
}

/// The token broker (`upstreams[].store_tokens`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Keys that encrypt stored upstream tokens: one `<key id> <base64 of 32
    /// bytes>` per line, the first encrypts, all decrypt. Unset: the file
    /// `broker.keys` in `signing.key_dir`, created on first use.
    pub encryption_key_file: Option<String>,
    /// A stored upstream token this close to expiry is refreshed first.
    pub refresh_before: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig { encryption_key_file: None, refresh_before: Duration::from_secs(60) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The issuer identifier (RFC 8414 §2), string-equal in metadata and tokens.
    pub issuer: String,
    /// Public listener: discovery, OAuth endpoints, login pages.
    pub listen: String,
    /// Allow an `http` issuer on a non-loopback host (test clusters only).
    pub allow_insecure_http: bool,
    /// How long in-flight requests get to finish on SIGTERM.
    pub shutdown_timeout: Duration,
    /// Proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` is
    /// believed when they are the TCP peer; otherwise the peer address is the
    /// client address used for throttling and rate limits.
    pub trusted_proxies: Vec<String>,
    /// Bound on reading one request: its headers, and its whole body counted
    /// from the first byte. A slower client gets 408 and the connection closes.
    pub request_read_timeout: Duration,
    /// Open connections the public listener holds at most (all workers
    /// together); further connections wait in the kernel's accept queue.
    pub max_connections: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            issuer: "http://localhost:9000".into(),
            listen: "0.0.0.0:9000".into(),
            allow_insecure_http: false,
            shutdown_timeout: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            request_read_timeout: Duration::from_secs(5),
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Admin listener: `/metrics`, `/healthz`, the admin REST API.
    pub listen: String,
    /// Bearer key for the admin REST API. Unset (and no `api_key_file`) = API off.
    pub api_key: Option<Secret<String>>,
    /// A file holding the key (a mounted Secret); re-read on change.
    pub api_key_file: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: "127.0.0.1:9001".into(), api_key: None, api_key_file: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` (default) or `postgres://user:pass@host/db`.
    pub url: Secret<String>,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    // Postgres TLS and the pool under load (issue 19).
    /// Postgres TLS, as libpq's `sslmode`. Unset: the URL's `sslmode`, else `prefer`.
    pub sslmode: Option<SslMode>,
    /// PEM file of the CA(s) that sign the Postgres server certificate (a
    /// mounted Secret); for `verify-ca` / `verify-full`. Unset: the URL's
    /// `sslrootcert`, else the public web roots.
    pub sslrootcert: Option<String>,
    /// How long a request waits for a pooled connection before it is answered
    /// 503 `temporarily_unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: Secret::new("sqlite://data/authplane.db?mode=rwc".into()),
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            sslmode: None,
            sslrootcert: None,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// libpq's `sslmode` values (<https://www.postgresql.org/docs/current/libpq-ssl.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it, unverified; else plain text.
    Prefer,
    /// TLS, certificate not verified.
    Require,
    /// TLS, certificate chain verified; host name not checked.
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DatabaseConfig {
    pub fn kind(&self) -> DatabaseKind {
        if self.url.expose().starts_with("postgres") { DatabaseKind::Postgres } else { DatabaseKind::Sqlite }
    }

    /// The URL with any password replaced by `***`, safe to log.
    pub fn redacted_url(&self) -> String {
        let raw = self.url.expose();
        match Url::parse(raw) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            Ok(_) => raw.clone(),
            Err(_) => "[unparseable]".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatabaseKind::Sqlite => "sqlite",
            DatabaseKind::Postgres => "postgres",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyStoreKind {
    /// A directory of `<kid>.json` files (what the operator mounts).
    #[default]
    File,
    /// The `signing_keys` table.
    Db,
}

impl fmt::Display for KeyStoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyStoreKind::File => "file",
            KeyStoreKind::Db => "db",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    pub key_store: KeyStoreKind,
    /// Directory of the `file` key store; created with a fresh key when empty.
    pub key_dir: String,
    /// Automatic rotation period; `0` = rotate only with `authserver keys rotate`.
    pub rotation_interval: Duration,
    /// Phase 1 → 2: how long a new key is published before it signs. Must
    /// cover resource servers' JWKS cache time (5 min in the SDK) plus skew.
    pub publish_ahead: Duration,
    /// Phase 2 → 3: how long the previous key stays published after the new
    /// one starts signing. Unset = longest access-token lifetime + 5m + 30s.
    pub retire_after: Option<Duration>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            key_store: KeyStoreKind::File,
            key_dir: "./data/keys".into(),
            rotation_interval: Duration::ZERO,
            publish_ahead: Duration::from_secs(6 * 60),
            retire_after: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownScopes {
    #[default]
    Drop,
    Reject,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// Reject an authorization request without `scope` (`invalid_scope`)
    /// instead of granting the resource's default scopes. Never affects `aud`.
    pub require_scope: bool,
    /// What to do with requested scopes a resource does not declare.
    pub unknown_scopes: UnknownScopes,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub authorization_code_ttl: Duration,
    /// Dynamic client registration (RFC 7591): `open`, `token` (an initial
    /// access token is required) or `off`.
    pub registration: RegistrationPolicy,
    /// The initial access token for `registration: token`.
    pub initial_access_token: Option<Secret<String>>,
    /// Accept `https` client ids as Client ID Metadata Documents.
    pub client_id_metadata_documents: bool,
    /// Allow CIMD fetches from loopback addresses (local development and tests only).
    pub cimd_allow_loopback: bool,
    /// How long a signed-in browser session lasts on the login page.
    pub login_session_ttl: Duration,
    /// A refresh token presented again within this time after its rotation
    /// returns the same successor instead of revoking the family (concurrent
    /// MCP sessions racing on one token); `0` = every reuse revokes.
    pub refresh_reuse_interval: Duration,
    /// Grant types a client registered with the initial access token
    /// (`registration: token`) may have. Open registration never gets
    /// `client_credentials`.
    pub initial_access_token_grant_types: Vec<GrantType>,
    /// Dynamically registered clients kept at most; registration answers
    /// `invalid_client_metadata` past it. `0` = no cap.
    pub registration_max_clients: u64,
    /// A dynamically registered client unused for this long, with no live
    /// token, is deleted. `0` = never.
    pub registration_unused_ttl: Duration,
    /// DPoP (RFC 9449): how old a proof's `iat` may be at the token
    /// endpoint; 30 s of clock skew is allowed on top for `iat` in the future.
    /// The replay store keeps a proof's `jti` this long.
    pub dpop_proof_max_age: Duration,
    /// DPoP nonces (RFC 9449 §8): every proof at the token endpoint must carry
    /// a nonce from a recent `DPoP-Nonce` header; the first request is answered
    /// `use_dpop_nonce`.
    pub dpop_nonce: bool,
    /// The HMAC key of the stateless DPoP nonces. Replicas must share it;
    /// unset = a random key per process (fine for one replica).
    pub dpop_nonce_secret: Option<Secret<String>>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            require_scope: false,
            unknown_scopes: UnknownScopes::Drop,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            authorization_code_ttl: Duration::from_secs(60),
            registration: RegistrationPolicy::Open,
            initial_access_token: None,
            client_id_metadata_documents: true,
            cimd_allow_loopback: false,
            login_session_ttl: Duration::from_secs(12 * 3600),
            refresh_reuse_interval: Duration::from_secs(30),
            initial_access_token_grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            registration_max_clients: 10_000,
            registration_unused_ttl: Duration::from_secs(30 * 86_400),
            dpop_proof_max_age: Duration::from_secs(60),
            dpop_nonce: false,
            dpop_nonce_secret: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationPolicy {
    #[default]
    Open,
    Token,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
    pub level: String,
    pub format: LogFormat,
    /// One line per HTTP request (method, route, status, duration).
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Logfmt, access_log: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long audit rows are kept; `0` = forever. Purged hourly.
    pub retention: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention: Duration::from_secs(90 * 86_400) }
    }
}

/// How spans reach the OTLP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OtelProtocol {
    /// OTLP over gRPC (port 4317 by convention); plaintext only.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318); `/v1/traces` is appended.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtelProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtelProtocol::Grpc => "grpc",
            OtelProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// OpenTelemetry trace export. Read once at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtelConfig {
    /// OTLP endpoint, e.g. `http://otel-collector:4317`; empty = no export.
    pub endpoint: String,
    pub protocol: OtelProtocol,
    /// Fraction of new traces recorded (0.0–1.0). A sampled incoming
    /// `traceparent` is always followed (parent-based).
    pub sample_ratio: f64,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for OtelConfig {
    fn default() -> Self {
        OtelConfig {
            endpoint: String::new(),
            protocol: OtelProtocol::HttpProtobuf,
            sample_ratio: 1.0,
            service_name: "authplane".into(),
        }
    }
}

impl OtelConfig {
    pub fn enabled(&self) -> bool {
        !self.endpoint.trim().is_empty()
    }
}

/// Bounds on what a stranger can spend: password hashing, failed sign-ins
/// and client authentications, registrations and metadata fetches. All
/// counters are per process (see docs/security.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// argon2 verifications running at once; `0` = the number of CPUs.
    pub password_hash_concurrency: u32,
    /// How long a sign-in waits for a hashing slot before it gets 503.
    pub password_hash_queue_timeout: Duration,
    /// Throttle repeated failed sign-ins and client authentications.
    pub failure_throttle: bool,
    /// Failures of one (account, address) pair before delays start; the
    /// account as a whole gets 4×, one address across accounts 10×.
    pub throttle_free_failures: u32,
    /// Longest delay for one (account, address) pair and for one address.
    pub throttle_max_delay: Duration,
    /// Longest delay for an account as a whole, whatever the address: what a
    /// stranger can hold a real user back, at most.
    pub throttle_account_max_delay: Duration,
    /// Dynamic client registrations per client address per minute; `0` = no limit.
    pub registrations_per_minute: u32,
    /// Client ID Metadata Document fetches per client address per minute; `0` = no limit.
    pub cimd_fetches_per_minute: u32,
    /// How long a failed metadata-document fetch is remembered.
    pub cimd_failure_cache: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            password_hash_concurrency: 0,
            password_hash_queue_timeout: Duration::from_secs(5),
            failure_throttle: true,
            throttle_free_failures: 5,
            throttle_max_delay: Duration::from_secs(15 * 60),
            throttle_account_max_delay: Duration::from_secs(60),
            registrations_per_minute: 10,
            cimd_fetches_per_minute: 30,
            cimd_failure_cache: Duration::from_secs(60),
        }
    }
}

/// A protected resource (an MCP server) this AS issues tokens for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The resource URI; stored and put in `aud` in canonical form.
    pub resource: ResourceUri,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub scopes: Vec<String>,
    /// Granted when a request has no `scope`. Unset = every scope of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_scopes: Option<Vec<String>>,
    /// Tokens for this resource must be DPoP-bound (RFC 9449): the token
    /// endpoint refuses a request for it without a proof.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_required: bool,
}

impl ResourceConfig {
    pub fn effective_default_scopes(&self) -> &[String] {
        self.default_scopes.as_deref().unwrap_or(&self.scopes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// A public client (native app, SPA, CLI): PKCE only, no secret.
    #[default]
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuthMethod::None => "none",
            TokenEndpointAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuthMethod::ClientSecretPost => "client_secret_post",
        }
    }

    pub fn is_confidential(self) -> bool {
        self != TokenEndpointAuthMethod::None
    }
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

/// A pre-registered OAuth client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Hex SHA-256 digest of the client secret (confidential clients only).
    /// The secret itself never appears in configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_sha256: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<RedirectUri>,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<GrantType>,
    /// Resources this client may ask for. Empty: for user grants, any
    /// registered resource the user consents to; for `client_credentials`,
    /// none (a machine token needs the resource listed here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_resources: Vec<ResourceUri>,
    /// Scopes this client may be granted; empty = any scope of the resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_scopes: Vec<String>,
    /// RFC 9449 §5.2: this client always uses DPoP; a token request without
    /// a proof is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// Upstreams (ids, with `store_tokens`) whose tokens this confidential
    /// client may obtain for a user with RFC 8693 token exchange.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_upstreams: Vec<String>,
}

/// A local user for the built-in login page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// The stable subject (`sub`); defaults to the username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An argon2id PHC string (`authserver util hash-password` prints one).
    pub password_hash: Secret<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl UserConfig {
    pub fn subject(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.username)
    }
}

/// An identity provider people sign in through: OpenID Connect (`issuer`,
/// discovery at `<issuer>/.well-known/openid-configuration`) or plain OAuth 2
/// (`authorization_endpoint`, `token_endpoint` and `userinfo_endpoint`, e.g.
/// GitHub). The redirect URI to register at the provider is
/// `<server.issuer>/ui/upstream/<id>/callback`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Lowercase letters, digits and `-`; part of URLs and user ids.
    pub id: String,
    /// The button text: "Continue with <display_name>". Defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// OIDC issuer; its discovery document supplies the endpoints and JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Claims are read from here too when set (required without `issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret<String>>,
    /// A file holding the secret (a mounted Secret); read at each use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<String>,
    /// How the secret is sent to the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_method: UpstreamAuthMethod,
    #[serde(default = "default_upstream_scopes")]
    pub scopes: Vec<String>,
    /// Which claims name the user.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// When non-empty, only these email domains may sign in (the email
    /// claim is required, and `email_verified: false` is refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_email_domains: Vec<String>,
    /// When non-empty, the user must be in every one of these groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_groups: Vec<String>,
    /// Keep the provider's tokens for the token broker (encrypted at rest).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_tokens: bool,
}

impl UpstreamConfig {
    pub fn label(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.id)
    }

    /// OpenID Connect (an ID token is required and verified) or plain OAuth 2.
    pub fn is_oidc(&self) -> bool {
        self.issuer.is_some()
    }
}

fn default_upstream_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// Claim names in the ID token or userinfo answer. A numeric subject (GitHub's
/// `id`) is used as its decimal text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMapping {
    pub subject: String,
    pub email: String,
    pub name: String,
    pub groups: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping { subject: "sub".into(), email: "email".into(), name: "name".into(), groups: "groups".into() }
    }
}

/// A configuration problem, printed as one line naming key, value and fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key (`server.issuer`), with the env var when it came from there.
    pub key: String,
    pub value: Option<String>,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)?;
        if let Some(v) = &self.value {
            write!(f, " = {v:?}")?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, " (fix: {})", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, value: Option<&str>, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), value: value.map(str::to_owned), problem: problem.into(), fix: fix.into() }
}

/// An IP address or CIDR range (`10.0.0.0/8`, `192.0.2.7`, `::1`).
pub fn parse_net(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = match s.trim().split_once('/') {
        Some((ip, len)) => (ip.parse::<std::net::IpAddr>().ok()?, Some(len.parse::<u8>().ok()?)),
        None => (s.trim().parse::<std::net::IpAddr>().ok()?, None),
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}

impl Config {
    /// Phase 2 → 3 of key rotation (ARCHITECTURE §3): the longest access-token
    /// lifetime plus the SDK's JWKS cache time (5 min) plus clock skew (30 s).
    pub fn retire_after(&self) -> Duration {
        self.signing.retire_after.unwrap_or(Duration::from_secs(self.oauth.access_token_ttl.as_secs() + 300 + 30))
    }

    /// Union of every declared resource's scopes, sorted.
    pub fn scopes_supported(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.resources.iter().flat_map(|r| r.scopes.iter()).collect();
        set.into_iter().cloned().collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Accepts a plain level, or a filter directive whose default is a level
    /// (`info,authplane_server=debug`).
    pub fn parse(s: &str) -> Option<LogLevel> {
        let first = s.split(',').find(|p| !p.contains('=')).unwrap_or("info");
        match first.trim().to_ascii_lowercase().as_str() {
            "error" => Some(LogLevel::Error),
            "warn" | "warning" => Some(LogLevel::Warn),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            "trace" => Some(LogLevel::Trace),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    #[test]
    fn defaults_are_valid() {
        let l = Config::load(None, vec![]).unwrap();
        assert_eq!(l.config.server.issuer, "http://localhost:9000");
        assert_eq!(l.config.signing.key_store, KeyStoreKind::File);
    }

    #[test]
    fn env_wins_over_the_file_and_is_typed_by_the_schema() {
        let yaml = "server:\n  issuer: http://localhost:9000\noauth:\n  require_scope: false\n";
        let l = Config::load(
            Some(("dev.yaml", yaml)),
            env(&[
                ("AUTHPLANE_SERVER_ISSUER", "https://auth.example.com"),
                ("AUTHPLANE_OAUTH_REQUIRE_SCOPE", "true"),
                ("AUTHPLANE_DATABASE_MAX_CONNECTIONS", "3"),
                ("AUTHPLANE_OAUTH_ACCESS_TOKEN_TTL", "15m"),
                ("AUTHPLANE_TOOLS_DIR", "/not/ours"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(l.config.server.issuer, "https://auth.example.com");
        assert!(l.config.oauth.require_scope);
        assert_eq!(l.config.database.max_connections, 3);
        assert_eq!(l.config.oauth.access_token_ttl.as_secs(), 900);
        assert!(l.from_env.contains(&("server.issuer".into(), "AUTHPLANE_SERVER_ISSUER".into())));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::load(Some(("c.yaml", "server:\n  isuer: x\n")), vec![]).unwrap_err();
        assert_eq!(e.key, "server.isuer");
        assert!(e.problem.contains("unknown field"), "{e}");
        let e = Config::load(None, env(&[("AUTHPLANE_SERVER_ISUER", "x")])).unwrap_err();
        assert!(e.to_string().contains("AUTHPLANE_SERVER_ISUER"), "{e}");
        let e = Config::load(None, env(&[("AUTHPLANE_OAUTH_REQUIRE_SCOPE", "yes")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "AUTHPLANE_OAUTH_REQUIRE_SCOPE (oauth.require_scope) = \"yes\": not a boolean (fix: use true or false)"
        );
    }

    #[test]
    fn malformed_yaml_is_one_line() {
        let e = Config::load(Some(("c.yaml", "server: [unclosed\n")), vec![]).unwrap_err();
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("c.yaml: not valid YAML"), "{line}");
    }

    #[test]
    fn issuer_rules() {
        for (bad, needle) in [
            ("https://auth.example.com/?x=1", "query"),
            ("https://auth.example.com#f", "fragment"),
            ("http://auth.example.com", "loopback"),
            ("https://auth.example.com/", "slash"),
            ("auth.example.com", "absolute"),
        ] {
            let e = Config::load(None, env(&[("AUTHPLANE_SERVER_ISSUER", bad)])).unwrap_err();
            assert!(e.to_string().contains(needle), "{bad}: {e}");
            assert!(e.key.contains("server.issuer"));
        }
        assert!(Config::load(None, env(&[("AUTHPLANE_SERVER_ISSUER", "https://auth.example.com/tenant-a")])).is_ok());
    }

    #[test]
    fn registry_rules() {
        let base = |extra: &str| {
            format!(
                "resources:\n  - resource: https://mcp.example.com/mcp\n    scopes: [tools/read, tools/write]\n{extra}"
            )
        };
        let ok = base(&format!(
            "clients:\n  - client_id: c1\n    redirect_uris: [\"http://127.0.0.1:1/cb\"]\nusers:\n  - username: alice\n    password_hash: \"{HASH}\"\n"
        ));
        let l = Config::load(Some(("c", &ok)), vec![]).unwrap();
        assert_eq!(l.config.scopes_supported(), vec!["tools/read", "tools/write"]);
        assert_eq!(l.config.users[0].subject(), "alice");

        for (yaml, needle) in [
            (base("  - resource: https://MCP.example.com/mcp/\n    scopes: [a]\n"), "declared twice"),
            (base("    default_scopes: [tools/admin]\n"), "not one of the resource's scopes"),
            ("resources:\n  - resource: https://x.test\n    scopes: [\"a b\"]\n".into(), "scope token"),
            ("resources:\n  - resource: https://x.test#f\n    scopes: [a]\n".into(), "fragment"),
            ("clients:\n  - client_id: c\n    redirect_uris: [\"javascript:alert(1)\"]\n".into(), "scheme"),
            ("clients:\n  - client_id: c\n    token_endpoint_auth_method: client_secret_basic\n    grant_types: [client_credentials]\n".into(), "missing for a confidential client"),
            ("clients:\n  - client_id: c\n    grant_types: [client_credentials]\n".into(), "needs a confidential client"),
            ("clients:\n  - client_id: c\n".into(), "redirect_uris"),
            ("users:\n  - username: a\n    password_hash: plaintext\n".into(), "argon2id"),
        ] {
            let e = Config::load(Some(("c", &yaml)), vec![]).unwrap_err();
            assert!(e.to_string().contains(needle), "{yaml}\n=> {e}");
        }
    }

    #[test]
    fn postgres_tls_keys_parse_and_are_checked() {
        let pg = ("AUTHPLANE_DATABASE_URL", "postgres://app:s3cret@db:5432/authplane");
        let l = Config::load(
            None,
            env(&[pg, ("AUTHPLANE_DATABASE_SSLMODE", "verify-full"), ("AUTHPLANE_DATABASE_SSLROOTCERT", "/ca.pem")]),
        )
        .unwrap();
        assert_eq!(l.config.database.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(l.config.database.sslrootcert.as_deref(), Some("/ca.pem"));
        let yaml = "database:\n  url: postgres://db/x\n  sslmode: verify-ca\n  acquire_timeout: 2s\n";
        let l = Config::load(Some(("c.yaml", yaml)), vec![]).unwrap();
        assert_eq!(l.config.database.sslmode, Some(SslMode::VerifyCa));
        assert_eq!(l.config.database.acquire_timeout, Duration::from_secs(2));

        let e = Config::load(None, env(&[pg, ("AUTHPLANE_DATABASE_SSLMODE", "verify_full")])).unwrap_err();
        assert!(e.key.contains("AUTHPLANE_DATABASE_SSLMODE"), "{e}");
        let e = Config::load(None, env(&[("AUTHPLANE_DATABASE_SSLMODE", "require")])).unwrap_err();
        assert!(e.to_string().contains("only applies to postgres"), "{e}");
        let e = Config::load(
            None,
            env(&[pg, ("AUTHPLANE_DATABASE_SSLMODE", "require"), ("AUTHPLANE_DATABASE_SSLROOTCERT", "/ca.pem")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("verify-full"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = Config::load(None, env(&[pg, ("AUTHPLANE_DATABASE_ACQUIRE_TIMEOUT", "0s")])).unwrap_err();
        assert!(e.key.contains("database.acquire_timeout"), "{e}");
    }

    #[test]
    fn database_url_is_redacted() {
        let l =
            Config::load(None, env(&[("AUTHPLANE_DATABASE_URL", "postgres://app:s3cret@db:5432/authplane")])).unwrap();
        assert_eq!(l.config.database.kind(), DatabaseKind::Postgres);
        assert!(!l.config.database.redacted_url().contains("s3cret"));
        let e = Config::load(None, env(&[("AUTHPLANE_DATABASE_URL", "mysql://app:s3cret@db/x")])).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn config_round_trips_through_yaml() {
        let yaml = format!(
            "server:\n  issuer: https://auth.example.com\nresources:\n  - resource: https://mcp.example.com/mcp\n    scopes: [tools/read]\nusers:\n  - username: a\n    password_hash: \"{HASH}\"\n"
        );
        let l = Config::load(Some(("c", &yaml)), vec![]).unwrap();
        let out = serde_saphyr::to_string(&l.config).unwrap();
        let again = Config::load(Some(("c", &out)), vec![]).unwrap();
        assert_eq!(again.config.server.issuer, "https://auth.example.com");
        assert_eq!(again.config.resources, l.config.resources);
        assert_eq!(again.config.users, l.config.users);
    }

    #[test]
    fn otel_comes_from_the_environment_with_its_types() {
        let l = Config::load(
            None,
            env(&[
                ("AUTHPLANE_OTEL_ENDPOINT", "http://127.0.0.1:4317"),
                ("AUTHPLANE_OTEL_PROTOCOL", "grpc"),
                ("AUTHPLANE_OTEL_SAMPLE_RATIO", "0.1"),
            ]),
        )
        .unwrap();
        assert!(l.config.otel.enabled());
        assert_eq!(l.config.otel.protocol, OtelProtocol::Grpc);
        assert!((l.config.otel.sample_ratio - 0.1).abs() < 1e-12);
        assert_eq!(l.config.otel.service_name, "authplane");
        assert!(!Config::default().otel.enabled());
    }

    #[test]
    fn bad_otel_settings_name_the_variable_and_the_fix() {
        let cases = [
            (
                vec![("AUTHPLANE_OTEL_SAMPLE_RATIO", "lots")],
                "AUTHPLANE_OTEL_SAMPLE_RATIO (otel.sample_ratio) = \"lots\": not a number",
            ),
            (vec![("AUTHPLANE_OTEL_SAMPLE_RATIO", "1.5")], "outside 0.0–1.0"),
            (vec![("AUTHPLANE_OTEL_ENDPOINT", "collector:4317")], "not an http(s) URL"),
            (vec![("AUTHPLANE_OTEL_PROTOCOL", "thrift")], "otel.protocol"),
            (
                vec![("AUTHPLANE_OTEL_ENDPOINT", "https://c.example.com"), ("AUTHPLANE_OTEL_PROTOCOL", "grpc")],
                "https is not supported with otel.protocol grpc",
            ),
        ];
        for (vars, want) in cases {
            let e = Config::load(None, env(&vars)).unwrap_err().to_string();
            assert!(e.contains(want), "{vars:?}: {e}");
        }
    }

    const ISSUE_14_SHAPE: &str = r#"
upstreams:
  - id: corp
    display_name: Corp SSO
    issuer: https://idp.example.com
    client_id: authplane
    client_secret: "s3cret"
    scopes: [openid, email, profile, offline_access]
    store_tokens: true
"#;

    #[test]
    fn the_documented_upstream_shape_loads_as_written() {
        let l = Config::load(Some(("c.yaml", ISSUE_14_SHAPE)), vec![]).unwrap();
        let u = &l.config.upstreams[0];
        assert_eq!((u.id.as_str(), u.label(), u.is_oidc(), u.store_tokens), ("corp", "Corp SSO", true, true));
        assert_eq!(u.client_secret.as_ref().map(|s| s.expose().as_str()), Some("s3cret"));
        assert_eq!(u.claims, ClaimMapping::default());
        assert_eq!(u.token_endpoint_auth_method, UpstreamAuthMethod::ClientSecretBasic);
        assert!(!format!("{u:?}").contains("s3cret"), "the secret never reaches Debug output");
    }

    #[test]
    fn an_upstream_secret_can_come_from_the_environment() {
        let yaml = "upstreams:\n  - { id: corp-eu, issuer: 'https://idp.example.com', client_id: a, client_secret_file: /x }\n";
        let l = Config::load(
            Some(("c.yaml", yaml)),
            env(&[("AUTHPLANE_UPSTREAMS_CORP_EU_CLIENT_SECRET_FILE", "/run/secrets/corp")]),
        )
        .unwrap();
        assert_eq!(l.config.upstreams[0].client_secret_file.as_deref(), Some("/run/secrets/corp"));
        let e = Config::load(Some(("c.yaml", yaml)), env(&[("AUTHPLANE_UPSTREAMS_DEX_CLIENT_ID", "x")])).unwrap_err();
        assert!(e.to_string().starts_with("AUTHPLANE_UPSTREAMS_DEX_CLIENT_ID: names no upstream"), "{e}");
    }

    #[test]
    fn bad_upstreams_get_one_line_naming_the_field_and_the_fix() {
        let base = "id: corp, client_id: a, client_secret: b";
        let cases = [
            (
                format!("{{ {base}, issuer: 'http://idp.example.com' }}"),
                "upstreams[0].issuer = \"http://idp.example.com\": not an https URL",
            ),
            (format!("{{ {base} }}"), "upstreams[0].authorization_endpoint: missing"),
            (
                format!(
                    "{{ {base}, authorization_endpoint: 'https://gh.example/a', token_endpoint: 'https://gh.example/t' }}"
                ),
                "upstreams[0].userinfo_endpoint: missing",
            ),
            (
                "{ id: Corp, client_id: a, client_secret: b, issuer: 'https://i.example' }".into(),
                "upstreams[0].id = \"Corp\"",
            ),
            ("{ id: corp, client_id: a, issuer: 'https://i.example' }".into(), "upstreams[0].client_secret: missing"),
            (
                "{ id: corp, client_id: a, client_secret: b, client_secret_file: /f, issuer: 'https://i.example' }"
                    .into(),
                "upstreams[0].client_secret_file = \"/f\": set together",
            ),
            (format!("{{ {base}, issuer: 'https://i.example', scopes: [email] }}"), "needs the openid scope"),
            (format!("{{ {base}, issuer: 'https://i.example', allowed_email_domains: ['@x.com'] }}"), "not a domain"),
        ];
        for (entry, want) in cases {
            let yaml = format!("upstreams:\n  - {entry}\n");
            let e = Config::load(Some(("c.yaml", &yaml)), vec![]).unwrap_err().to_string();
            assert!(e.contains(want), "{entry}: {e}");
            assert!(e.contains("(fix: "), "{e}");
        }
        let twice = format!(
            "upstreams:\n  - {{ {base}, issuer: 'https://i.example' }}\n  - {{ {base}, issuer: 'https://j.example' }}\n"
        );
        let e = Config::load(Some(("c.yaml", &twice)), vec![]).unwrap_err().to_string();
        assert!(e.contains("upstreams[1].id = \"corp\": declared twice"), "{e}");
        let clash = format!(
            "upstreams:\n  - {{ {base}, issuer: 'https://i.example' }}\nusers:\n  - {{ username: a, id: 'corp:a', password_hash: '{HASH}' }}\n"
        );
        let e = Config::load(Some(("c.yaml", &clash)), vec![]).unwrap_err().to_string();
        assert!(e.contains("users[0].id = \"corp:a\""), "{e}");
        let loopback = format!("upstreams:\n  - {{ {base}, issuer: 'http://127.0.0.1:4000' }}\n");
        assert!(Config::load(Some(("c.yaml", &loopback)), vec![]).is_ok(), "plain http is fine on loopback");
    }
}
