//! The configuration file schema, the `AUTHPLANE_<SECTION>_<KEY>` overlay and
//! validation. One schema for the server, the operator (which renders it) and
//! the docs (`config/reference.yaml`).
//!
//! Loading is pure: the caller reads the file and hands in the environment.

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

/// Sections that may be set with `AUTHPLANE_<SECTION>_<KEY>`.
const ENV_SECTIONS: &[&str] = &["server", "admin", "database", "signing", "oauth", "log", "audit", "otel", "limits"];
/// Sections that are lists and so cannot come from the environment.
const LIST_SECTIONS: &[&str] = &["resources", "clients", "users"];
/// Variables with the prefix that are not config keys.
const NON_CONFIG_VARS: &[&str] = &["AUTHPLANE_CONFIG", "AUTHPLANE_URL"];

/// A loaded configuration with the provenance needed for error messages.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Dotted keys that the environment set, with the variable name.
    pub from_env: Vec<(String, String)>,
}

impl Config {
    /// Parses YAML text (`None` = no file: defaults), overlays `AUTHPLANE_*`
    /// variables from `env` (env wins), and validates.
    pub fn load<I>(yaml: Option<(&str, &str)>, env: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut doc = match yaml {
            Some((name, text)) if !text.trim().is_empty() => {
                let v: Value = serde_saphyr::from_str(text).map_err(|e| {
                    err(
                        name,
                        None,
                        format!("not valid YAML: {}", one_line(&e.to_string())),
                        "fix the syntax at the position shown",
                    )
                })?;
                match v {
                    Value::Object(_) => v,
                    Value::Null => Value::Object(Default::default()),
                    _ => {
                        return Err(err(
                            name,
                            None,
                            "the top level must be a mapping of sections",
                            "start the file with e.g. `server:`",
                        ));
                    }
                }
            }
            _ => Value::Object(Default::default()),
        };
        let from_env = overlay_env(&mut doc, env)?;
        let config: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            let key = env_label(&path, &from_env);
            let inner = one_line(&e.into_inner().to_string());
            let fix = if inner.contains("unknown field") {
                "remove the key or correct its spelling; see config/reference.yaml"
            } else {
                "see config/reference.yaml for the expected type"
            };
            err(key, None, inner, fix)
        })?;
        config.validate(&from_env)?;
        Ok(Loaded { config, from_env })
    }

    /// Checks cross-field rules the types cannot express.
    pub fn validate(&self, from_env: &[(String, String)]) -> Result<(), ConfigError> {
        let k = |path: &str| env_label(path, from_env);

        // server
        validate_issuer(&self.server.issuer, self.server.allow_insecure_http)
            .map_err(|(problem, fix)| err(k("server.issuer"), Some(&self.server.issuer), problem, fix))?;
        let public: SocketAddr = self.server.listen.parse().map_err(|_| {
            err(
                k("server.listen"),
                Some(&self.server.listen),
                "not a socket address",
                "write host:port, e.g. 0.0.0.0:9000",
            )
        })?;
        let admin: SocketAddr = self.admin.listen.parse().map_err(|_| {
            err(
                k("admin.listen"),
                Some(&self.admin.listen),
                "not a socket address",
                "write host:port, e.g. 0.0.0.0:9001",
            )
        })?;
        if public.port() != 0 && public.port() == admin.port() {
            return Err(err(
                k("admin.listen"),
                Some(&self.admin.listen),
                "uses the same port as server.listen",
                "give the admin listener its own port, e.g. 9001",
            ));
        }

        for (i, p) in self.server.trusted_proxies.iter().enumerate() {
            if parse_net(p).is_none() {
                return Err(err(
                    k(&format!("server.trusted_proxies[{i}]")),
                    Some(p),
                    "not an IP address or CIDR range",
                    "write e.g. 10.0.0.0/8 or 192.0.2.7",
                ));
            }
        }
        if self.server.request_read_timeout.is_zero() {
            return Err(err(k("server.request_read_timeout"), Some("0"), "must be greater than zero", "use e.g. 5s"));
        }
        if self.server.max_connections == 0 {
            return Err(err(k("server.max_connections"), Some("0"), "must be at least 1", "use e.g. 4096"));
        }

        // admin
        if let Some(key) = &self.admin.api_key
            && key.expose().len() < 16
        {
            return Err(err(
                k("admin.api_key"),
                Some("[redacted]"),
                "shorter than 16 characters",
                "use a long random key, e.g. `openssl rand -hex 32`",
            ));
        }
        if self.admin.api_key.is_some() && self.admin.api_key_file.is_some() {
            return Err(err(
                k("admin.api_key_file"),
                self.admin.api_key_file.as_deref(),
                "set together with admin.api_key",
                "set only one of them",
            ));
        }

        // database
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(err(
                k("database.url"),
                Some(&self.database.redacted_url()),
                "unsupported database URL",
                "use sqlite://path/to/file.db?mode=rwc or postgres://user:pass@host:5432/db",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(err(k("database.max_connections"), Some("0"), "must be at least 1", "set e.g. 10"));
        }
        if self.database.kind() == DatabaseKind::Sqlite {
            if let Some(mode) = self.database.sslmode {
                return Err(err(
                    k("database.sslmode"),
                    Some(mode.as_str()),
                    "only applies to postgres:// URLs",
                    "remove it, or point database.url at Postgres",
                ));
            }
            if let Some(path) = &self.database.sslrootcert {
                return Err(err(
                    k("database.sslrootcert"),
                    Some(path),
                    "only applies to postgres:// URLs",
                    "remove it, or point database.url at Postgres",
                ));
            }
        }
        if self.database.sslrootcert.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(err(
                k("database.sslrootcert"),
                Some(""),
                "empty",
                "set the path of the CA's PEM file, or remove the key",
            ));
        }
        if matches!(self.database.sslmode, Some(SslMode::Disable | SslMode::Prefer | SslMode::Require))
            && let Some(path) = &self.database.sslrootcert
        {
            return Err(err(
                k("database.sslrootcert"),
                Some(path),
                format!(
                    "is not used with database.sslmode = {}: the certificate is not verified",
                    self.database.sslmode.map(SslMode::as_str).unwrap_or_default()
                ),
                "set database.sslmode to verify-full (or verify-ca)",
            ));
        }
        if self.database.acquire_timeout.is_zero() {
            return Err(err(k("database.acquire_timeout"), Some("0s"), "must be longer than zero", "set e.g. 5s"));
        }

        // signing
        if self.signing.key_store == KeyStoreKind::File && self.signing.key_dir.trim().is_empty() {
            return Err(err(
                k("signing.key_dir"),
                Some(""),
                "empty while signing.key_store is file",
                "set a directory, e.g. ./data/keys",
            ));
        }
        if !self.signing.rotation_interval.is_zero()
            && self.signing.rotation_interval <= self.signing.publish_ahead + self.retire_after()
        {
            return Err(err(
                k("signing.rotation_interval"),
                Some(&self.signing.rotation_interval.to_string()),
                format!(
                    "must be longer than publish_ahead + retire_after ({} + {})",
                    self.signing.publish_ahead,
                    self.retire_after()
                ),
                "rotate less often, or shorten the access-token lifetime",
            ));
        }

        // oauth
        for (name, d) in [
            ("oauth.access_token_ttl", self.oauth.access_token_ttl),
            ("oauth.refresh_token_ttl", self.oauth.refresh_token_ttl),
            ("oauth.authorization_code_ttl", self.oauth.authorization_code_ttl),
        ] {
            if d.is_zero() {
                return Err(err(k(name), Some("0"), "must be greater than zero", "set a duration such as 1h"));
            }
        }
        if self.oauth.registration == RegistrationPolicy::Token {
            match &self.oauth.initial_access_token {
                Some(t) if t.expose().len() >= 16 => {}
                _ => {
                    return Err(err(
                        k("oauth.initial_access_token"),
                        None,
                        "missing or shorter than 16 characters while oauth.registration is token",
                        "set a long random token, e.g. `openssl rand -hex 32`",
                    ));
                }
            }
        }
        let age = self.oauth.dpop_proof_max_age.as_secs();
        if !(5..=600).contains(&age) {
            return Err(err(
                k("oauth.dpop_proof_max_age"),
                Some(&self.oauth.dpop_proof_max_age.to_string()),
                "must be between 5s and 10m",
                "use 60s (the default) unless clients' clocks are far off; a longer window keeps replayable proofs alive longer",
            ));
        }
        if let Some(secret) = &self.oauth.dpop_nonce_secret
            && secret.expose().len() < 32
        {
            return Err(err(
                k("oauth.dpop_nonce_secret"),
                None,
                "is shorter than 32 characters",
                "generate one with `openssl rand -base64 32` and give every replica the same value",
            ));
        }
        if self.oauth.refresh_reuse_interval.as_secs() > 300 {
            return Err(err(
                k("oauth.refresh_reuse_interval"),
                Some(&self.oauth.refresh_reuse_interval.to_string()),
                "longer than 5 minutes: a stolen spent refresh token would stay useful that long",
                "use 30s, or 0 to turn it off",
            ));
        }
        if self.limits.password_hash_queue_timeout.is_zero() {
            return Err(err(
                k("limits.password_hash_queue_timeout"),
                Some("0"),
                "must be greater than zero",
                "use e.g. 5s",
            ));
        }
        if self.oauth.authorization_code_ttl.as_secs() > 600 {
            return Err(err(
                k("oauth.authorization_code_ttl"),
                Some(&self.oauth.authorization_code_ttl.to_string()),
                "longer than 10 minutes (RFC 6749 §4.1.2)",
                "use 60s",
            ));
        }

        // log
        if LogLevel::parse(&self.log.level).is_none() {
            return Err(err(
                k("log.level"),
                Some(&self.log.level),
                "not a log level",
                "use error, warn, info, debug or trace",
            ));
        }

        // otel
        if self.otel.enabled() {
            let ep = self.otel.endpoint.trim();
            let url = url::Url::parse(ep).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if url.is_none() {
                return Err(err(
                    k("otel.endpoint"),
                    Some(ep),
                    "not an http(s) URL",
                    "write the collector's URL, e.g. http://otel-collector:4318",
                ));
            }
            if self.otel.protocol == OtelProtocol::Grpc && ep.starts_with("https:") {
                return Err(err(
                    k("otel.endpoint"),
                    Some(ep),
                    "https is not supported with otel.protocol grpc",
                    "use protocol http/protobuf for a TLS endpoint, or a plaintext in-cluster collector",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.otel.sample_ratio) {
            return Err(err(
                k("otel.sample_ratio"),
                Some(&self.otel.sample_ratio.to_string()),
                "outside 0.0–1.0",
                "use e.g. 0.1 to record one trace in ten",
            ));
        }
        if self.otel.service_name.trim().is_empty() {
            return Err(err(k("otel.service_name"), Some(""), "empty", "use e.g. authplane"));
        }

        self.validate_registry()
    }

    fn validate_registry(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for (i, r) in self.resources.iter().enumerate() {
            let key = format!("resources[{i}]");
            validate_resource(&key, r)?;
            if !seen.insert(r.resource.clone()) {
                return Err(err(
                    format!("{key}.resource"),
                    Some(r.resource.as_str()),
                    "declared twice (after canonicalisation)",
                    "keep one entry per resource",
                ));
            }
        }
        let mut ids = HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("clients[{i}]");
            validate_client(&key, c, |r| seen.contains(r))?;
            if !ids.insert(c.client_id.as_str()) {
                return Err(err(
                    format!("{key}.client_id"),
                    Some(&c.client_id),
                    "declared twice",
                    "client ids must be unique",
                ));
            }
        }
        let mut names = HashSet::new();
        let mut subs = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}]");
            validate_user(&key, u)?;
            if !names.insert(u.username.as_str()) {
                return Err(err(
                    format!("{key}.username"),
                    Some(&u.username),
                    "declared twice",
                    "usernames must be unique",
                ));
            }
            if !subs.insert(u.subject()) {
                return Err(err(format!("{key}.id"), Some(u.subject()), "declared twice", "user ids must be unique"));
            }
        }
        Ok(())
    }

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

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `server.issuer` or `AUTHPLANE_SERVER_ISSUER (server.issuer)`.
fn env_label(path: &str, from_env: &[(String, String)]) -> String {
    match from_env.iter().find(|(p, _)| p == path) {
        Some((_, var)) => format!("{var} ({path})"),
        None => path.to_owned(),
    }
}

/// Applies `AUTHPLANE_<SECTION>_<KEY>=value` to the document. The type a value
/// is parsed as comes from the schema's defaults, so `"true"` becomes a bool for
/// `oauth.require_scope` and stays a string for `server.issuer`.
fn overlay_env<I>(doc: &mut Value, env: I) -> Result<Vec<(String, String)>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let mut vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("AUTHPLANE_")).collect();
    vars.sort();
    let mut applied = Vec::new();
    for (var, raw) in vars {
        if NON_CONFIG_VARS.contains(&var.as_str()) {
            continue;
        }
        let rest = var["AUTHPLANE_".len()..].to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else { continue };
        if LIST_SECTIONS.contains(&section) {
            return Err(err(
                &var,
                None,
                format!("{section} is a list and cannot be set from the environment"),
                "declare it in the config file",
            ));
        }
        if !ENV_SECTIONS.contains(&section) {
            // Not ours (e.g. AUTHPLANE_TOOLS_DIR used by the test scripts).
            continue;
        }
        let path = format!("{section}.{key}");
        let Some(kind) = defaults.get(section).and_then(|s| s.as_object()).and_then(|s| s.get(key)) else {
            return Err(err(
                &var,
                Some(&raw),
                format!("{path} is not a configuration key"),
                "check the spelling against config/reference.yaml",
            ));
        };
        let value = match kind {
            Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(err(format!("{var} ({path})"), Some(&raw), "not a boolean", "use true or false")),
            },
            Value::Number(n) if n.is_f64() => match raw.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Value::from(f),
                _ => {
                    return Err(err(format!("{var} ({path})"), Some(&raw), "not a number", "use e.g. 0.1"));
                }
            },
            Value::Number(_) => match raw.trim().parse::<u64>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    return Err(err(format!("{var} ({path})"), Some(&raw), "not a whole number", "use digits only"));
                }
            },
            // Lists from the environment are comma-separated.
            Value::Array(_) => Value::Array(
                raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())).collect(),
            ),
            _ => Value::String(raw.clone()),
        };
        let Value::Object(root) = doc else { break };
        let section_obj = root.entry(section.to_owned()).or_insert_with(|| Value::Object(Default::default()));
        match section_obj {
            Value::Object(m) => {
                m.insert(key.to_owned(), value);
            }
            Value::Null => {
                let mut m = serde_json::Map::new();
                m.insert(key.to_owned(), value);
                *section_obj = Value::Object(m);
            }
            _ => {
                return Err(err(
                    section,
                    None,
                    "must be a mapping",
                    "write it as `section:` followed by indented keys",
                ));
            }
        }
        applied.push((path, var));
    }
    Ok(applied)
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
}
