//! AuthServer + its ProtectedResources and OAuthClients → the server's config
//! file, as `authplane_core::config::Config` (the one schema; no copy here).
//!
//! Every entry is checked with core's own per-entry rules first, so one bad
//! ProtectedResource or OAuthClient is left out with a reason on its status
//! instead of breaking the whole AuthServer. Conflicts (two objects claiming
//! the same resource URI or client id) go to the older object.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use authplane_core::config::{
    ClaimMapping, ClientConfig, Config, ConfigError, GrantType, KeyStoreKind, LogFormat, RegistrationPolicy,
    ResourceConfig, SslMode, TokenEndpointAuthMethod, UpstreamAuthMethod, UpstreamConfig, validate_client,
    validate_resource,
};
use authplane_core::redirect::RedirectUri;
use authplane_core::{Duration, ResourceUri, Secret};
use authplane_crds::authserver::{self, AuthServerSpec, PostgresSslMode, Registration};
use authplane_crds::oauthclient::{self, AuthMethod, ClientType, OAuthClientSpec};
use authplane_crds::protectedresource::ProtectedResourceSpec;
use k8s_openapi::jiff::Timestamp;

use super::paths;

/// A ProtectedResource as the renderer needs it.
#[derive(Debug, Clone, Copy)]
pub struct ResourceIn<'a> {
    pub name: &'a str,
    pub created: Option<Timestamp>,
    pub spec: &'a ProtectedResourceSpec,
}

/// An OAuthClient as the renderer needs it; `digest` is the hex SHA-256 of
/// its client secret, when known.
#[derive(Debug, Clone)]
pub struct ClientIn<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub created: Option<Timestamp>,
    pub spec: &'a OAuthClientSpec,
    pub digest: Option<String>,
    /// The client id is its own already (status says it is in the config):
    /// it keeps the id against an older object that claims it later.
    pub holds_id: bool,
    /// It waited as a duplicate and has not been told to adopt the id
    /// (`authplane.io/adopt-client-id`): a freed id is not handed over.
    pub awaits_adoption: bool,
}

impl<'a> ResourceIn<'a> {
    pub fn of(r: &'a authplane_crds::ProtectedResource) -> Self {
        ResourceIn {
            name: r.metadata.name.as_deref().unwrap_or_default(),
            created: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            spec: &r.spec,
        }
    }
}

impl<'a> ClientIn<'a> {
    /// An OAuthClient in `namespace` that claims client id `id`, with the
    /// digest of its secret when known.
    pub fn of(c: &'a authplane_crds::OAuthClient, namespace: &'a str, id: &str, digest: Option<String>) -> Self {
        let (holds_id, awaits_adoption) = id_claim(c, id);
        ClientIn {
            name: c.metadata.name.as_deref().unwrap_or_default(),
            namespace,
            created: c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            spec: &c.spec,
            digest,
            holds_id,
            awaits_adoption,
        }
    }
}

/// Whether an object made it into the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected { reason: &'static str, message: String },
}

impl Verdict {
    fn reject(reason: &'static str, message: impl Into<String>) -> Verdict {
        Verdict::Rejected { reason, message: message.into() }
    }
}

/// The resources and clients of one AuthServer after the per-entry rules.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub resources: Vec<ResourceConfig>,
    pub clients: Vec<ClientConfig>,
    /// Object name of each entry of `resources` and `clients`, same order.
    pub resource_names: Vec<String>,
    pub client_names: Vec<String>,
    /// By object name.
    pub resource_verdicts: BTreeMap<String, Verdict>,
    pub client_verdicts: BTreeMap<String, Verdict>,
}

/// Annotation on an OAuthClient that waited as `DuplicateClientId`: set to
/// the client id to take it over once its holder is gone.
pub const ADOPT_ANNOTATION: &str = "authplane.io/adopt-client-id";

/// The effective `client_id` of an OAuthClient: `spec.clientId` or `<namespace>.<name>`.
pub fn client_id(namespace: &str, name: &str, spec: &OAuthClientSpec) -> String {
    spec.client_id.clone().unwrap_or_else(|| format!("{namespace}.{name}"))
}

/// Whether `client_id(namespace, name, spec) == id`, without allocating:
/// reconciles scan every sibling with it, 10,000 of them at scale.
pub fn has_client_id(namespace: &str, name: &str, spec: &OAuthClientSpec, id: &str) -> bool {
    match &spec.client_id {
        Some(c) => c == id,
        None => id.strip_prefix(namespace).and_then(|rest| rest.strip_prefix('.')).is_some_and(|rest| rest == name),
    }
}

/// The credential Secret of an OAuthClient: `spec.secretName` or `<name>-oauth-client`.
pub fn client_secret_name(name: &str, spec: &OAuthClientSpec) -> String {
    spec.secret_name.clone().unwrap_or_else(|| format!("{name}-oauth-client"))
}

/// Older first; the name breaks ties, so the order is total and stable.
fn by_age<T>(items: &mut [T], key: impl Fn(&T) -> (Option<Timestamp>, &str)) {
    items.sort_by(|a, b| key(a).cmp(&key(b)));
}

pub fn registry(resources: &[ResourceIn<'_>], clients: &[ClientIn<'_>]) -> Registry {
    let mut out = Registry::default();

    let mut resources: Vec<&ResourceIn<'_>> = resources.iter().collect();
    by_age(&mut resources, |r| (r.created, r.name));
    let mut owners: BTreeMap<ResourceUri, &str> = BTreeMap::new();
    for r in resources {
        let verdict = match resource_config(r.spec) {
            Err(v) => v,
            Ok(rc) => match owners.get(&rc.resource) {
                Some(owner) => Verdict::reject(
                    "DuplicateResource",
                    format!(
                        "resource {} is already registered by ProtectedResource {owner}; one resource URI, one object",
                        rc.resource
                    ),
                ),
                None => {
                    owners.insert(rc.resource.clone(), r.name);
                    out.resources.push(rc);
                    out.resource_names.push(r.name.to_owned());
                    Verdict::Accepted
                }
            },
        };
        out.resource_verdicts.insert(r.name.to_owned(), verdict);
    }
    let known: HashSet<ResourceUri> = owners.into_keys().collect();

    let mut clients: Vec<&ClientIn<'_>> = clients.iter().collect();
    by_age(&mut clients, |c| (c.created, c.name));
    // The current holder of a client id keeps it, whatever its age: an older
    // object that turns valid later must not take the id over.
    clients.sort_by_key(|c| !c.holds_id);
    let mut ids: BTreeMap<String, &str> = BTreeMap::new();
    for c in clients {
        let verdict = match client_config(c, &known) {
            Err(v) => v,
            Ok(cc) if c.awaits_adoption && !ids.contains_key(&cc.client_id) => Verdict::reject(
                "AdoptionRequired",
                format!(
                    "client_id {id} was held by another OAuthClient and is free now; it is not handed over \
                     silently. To take it over, annotate this object {ADOPT_ANNOTATION}={id}",
                    id = cc.client_id
                ),
            ),
            Ok(cc) => match ids.get(&cc.client_id) {
                Some(owner) => Verdict::reject(
                    "DuplicateClientId",
                    format!(
                        "client_id {} is already used by OAuthClient {owner}; set a different spec.clientId",
                        cc.client_id
                    ),
                ),
                None => {
                    ids.insert(cc.client_id.clone(), c.name);
                    out.clients.push(cc);
                    out.client_names.push(c.name.to_owned());
                    Verdict::Accepted
                }
            },
        };
        out.client_verdicts.insert(c.name.to_owned(), verdict);
    }
    out
}

fn resource_config(spec: &ProtectedResourceSpec) -> Result<ResourceConfig, Verdict> {
    let resource = ResourceUri::parse(&spec.resource)
        .map_err(|e| Verdict::reject("InvalidResource", format!("spec.resource = {:?}: {e}", spec.resource)))?;
    let rc = ResourceConfig {
        resource,
        name: spec.display_name.clone(),
        scopes: spec.scopes.clone(),
        default_scopes: spec.default_scopes.clone(),
        dpop_required: spec.dpop_required,
    };
    validate_resource("spec", &rc).map_err(|e| Verdict::reject("InvalidResource", e.to_string()))?;
    Ok(rc)
}

fn client_config(c: &ClientIn<'_>, known: &HashSet<ResourceUri>) -> Result<ClientConfig, Verdict> {
    let spec = c.spec;
    let method = match (spec.type_, spec.token_endpoint_auth_method) {
        (ClientType::Public, _) => TokenEndpointAuthMethod::None,
        (ClientType::Confidential, Some(AuthMethod::ClientSecretPost)) => TokenEndpointAuthMethod::ClientSecretPost,
        (ClientType::Confidential, _) => TokenEndpointAuthMethod::ClientSecretBasic,
    };
    let digest = if method.is_confidential() {
        match &c.digest {
            Some(d) => Some(d.clone()),
            None => {
                return Err(Verdict::reject(
                    "SecretPending",
                    format!("waiting for the client secret in Secret {}", client_secret_name(c.name, spec)),
                ));
            }
        }
    } else {
        None
    };
    let mut redirect_uris = Vec::with_capacity(spec.redirect_uris.len());
    for u in &spec.redirect_uris {
        redirect_uris.push(
            RedirectUri::parse(u)
                .map_err(|e| Verdict::reject("InvalidClient", format!("spec.redirectUris: {u:?}: {e}")))?,
        );
    }
    let mut allowed_resources = Vec::with_capacity(spec.allowed_resources.len());
    for r in &spec.allowed_resources {
        let uri = ResourceUri::parse(r)
            .map_err(|e| Verdict::reject("InvalidClient", format!("spec.allowedResources: {r:?}: {e}")))?;
        if !known.contains(&uri) {
            return Err(Verdict::reject(
                "UnknownResource",
                format!(
                    "spec.allowedResources: {r} is not a Ready ProtectedResource of this AuthServer; create it, or remove it here"
                ),
            ));
        }
        allowed_resources.push(uri);
    }
    let cc = ClientConfig {
        client_id: client_id(c.namespace, c.name, spec),
        client_name: spec.client_name.clone(),
        token_endpoint_auth_method: method,
        client_secret_sha256: digest,
        redirect_uris,
        grant_types: spec.grant_types.iter().map(|g| grant_type(*g)).collect(),
        allowed_resources,
        allowed_scopes: spec.allowed_scopes.clone(),
        dpop_bound_access_tokens: spec.dpop_bound_access_tokens,
        broker_upstreams: spec.broker_upstreams.clone(),
    };
    validate_client("spec", &cc, |r| known.contains(r)).map_err(|e| Verdict::reject("InvalidClient", e.to_string()))?;
    Ok(cc)
}

fn grant_type(g: oauthclient::GrantType) -> GrantType {
    match g {
        oauthclient::GrantType::AuthorizationCode => GrantType::AuthorizationCode,
        oauthclient::GrantType::RefreshToken => GrantType::RefreshToken,
        oauthclient::GrantType::ClientCredentials => GrantType::ClientCredentials,
    }
}

/// An AuthServer spec the server would refuse, with the message for its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// A spec duration (`90d`, `30s`, `0`) in seconds.
pub fn seconds(value: &str) -> Option<i64> {
    Duration::from_str(value).ok().map(|d| d.as_secs() as i64)
}

fn duration(field: &str, value: &str) -> Result<Duration, SpecError> {
    Duration::from_str(value).map_err(|e| SpecError(format!("{field}: {e}")))
}

/// The rendered config file, and the rotation interval the operator enforces.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub config: Config,
    /// `spec.signing.rotationInterval`; the server gets `0` because the
    /// operator owns rotation (the key directory is a read-only Secret).
    pub rotation_interval: Duration,
}

/// Renders the config file of an AuthServer and checks it with the server's
/// own loader (`Config::load`), so a config the server would refuse is never
/// written.
pub fn render(spec: &AuthServerSpec, registry: &mut Registry) -> Result<Rendered, SpecError> {
    let mut c = Config::default();
    c.server.issuer = spec.issuer.clone();
    c.server.listen = format!("0.0.0.0:{}", paths::PUBLIC_PORT);
    c.server.allow_insecure_http = spec.allow_insecure_http;
    c.admin.listen = format!("0.0.0.0:{}", paths::ADMIN_PORT);
    c.admin.api_key_file = spec.admin_api_key_secret_ref.as_ref().map(|_| paths::admin_key_file());
    match &spec.database.postgres {
        Some(pg) => {
            // The URL comes from AUTHPLANE_DATABASE_URL (a secretKeyRef); the
            // placeholder only says where to look.
            c.database.url = Secret::new(paths::POSTGRES_PLACEHOLDER.into());
            if let Some(n) = pg.max_connections {
                c.database.max_connections = u32::try_from(n).unwrap_or(10);
            }
            // A CA is given to be checked against: verify-full unless told otherwise.
            c.database.sslmode = match (pg.ssl_mode, &pg.ca_secret_ref) {
                (Some(m), _) => Some(ssl_mode(m)),
                (None, Some(_)) => Some(SslMode::VerifyFull),
                (None, None) => None,
            };
            c.database.sslrootcert = pg.ca_secret_ref.as_ref().map(|_| paths::postgres_ca_file());
        }
        None => c.database.url = Secret::new(paths::sqlite_url()),
    }
    c.signing.key_store = KeyStoreKind::File;
    c.signing.key_dir = paths::KEYS_DIR.into();
    c.signing.publish_ahead = duration("spec.signing.publishAhead", &spec.signing.publish_ahead)?;
    c.signing.retire_after =
        spec.signing.overlap.as_deref().map(|o| duration("spec.signing.overlap", o)).transpose()?;
    let rotation_interval = duration("spec.signing.rotationInterval", &spec.signing.rotation_interval)?;

    c.oauth.require_scope = spec.oauth.require_scope;
    c.oauth.access_token_ttl = duration("spec.oauth.accessTokenTtl", &spec.oauth.access_token_ttl)?;
    c.oauth.refresh_token_ttl = duration("spec.oauth.refreshTokenTtl", &spec.oauth.refresh_token_ttl)?;
    c.oauth.authorization_code_ttl = duration("spec.oauth.authorizationCodeTtl", &spec.oauth.authorization_code_ttl)?;
    c.oauth.registration = match spec.oauth.registration {
        Registration::Open => RegistrationPolicy::Open,
        Registration::Token => RegistrationPolicy::Token,
        Registration::Off => RegistrationPolicy::Off,
    };
    c.oauth.client_id_metadata_documents = spec.oauth.client_id_metadata_documents;
    c.upstreams = spec.upstreams.iter().map(upstream_config).collect::<Result<_, _>>()?;
    if c.upstreams.iter().any(|u| u.store_tokens) {
        c.broker.encryption_key_file = Some(paths::broker_keys_file());
    }
    // A client may broker only upstreams of this AuthServer that keep
    // tokens; one that names another is left out with its reason, instead
    // of failing the whole config.
    let mut i = 0;
    while i < registry.clients.len() {
        match broker_refusal(&registry.clients[i].broker_upstreams, spec) {
            None => i += 1,
            Some(v) => {
                registry.clients.remove(i);
                let name = registry.client_names.remove(i);
                registry.client_verdicts.insert(name, v);
            }
        }
    }
    c.log.level = spec.log.level.as_str().into();
    c.log.format = match spec.log.format {
        authserver::LogFormat::Logfmt => LogFormat::Logfmt,
        authserver::LogFormat::Json => LogFormat::Json,
    };

    // Check what the server will load, with the rotation interval the
    // operator enforces so that core's timing rule applies to it too. The
    // registry reaches the server as fragments (`shards`), which it merges
    // and validates with the file as one config: so does this check.
    let mut check = c.clone();
    check.signing.rotation_interval = rotation_interval;
    let text = serde_saphyr::to_string(&check).map_err(|e| SpecError(format!("cannot render YAML: {e}")))?;
    let mut loaded =
        Config::load(Some(("config.yaml", &text)), check_env(spec)).map_err(|e| SpecError(spec_error(&e)))?;
    // Borrowed into the check and handed back, not cloned: at 10,000 clients
    // a copy per render was a large part of the operator's peak memory.
    loaded.config.resources = std::mem::take(&mut registry.resources);
    loaded.config.clients = std::mem::take(&mut registry.clients);
    let checked = loaded.config.validate(&loaded.from_env).map_err(|e| SpecError(spec_error(&e)));
    registry.resources = std::mem::take(&mut loaded.config.resources);
    registry.clients = std::mem::take(&mut loaded.config.clients);
    checked?;
    Ok(Rendered { config: c, rotation_interval })
}

/// Why an OAuthClient's `brokerUpstreams` cannot be honoured by `server`.
pub fn broker_refusal(broker_upstreams: &[String], server: &AuthServerSpec) -> Option<Verdict> {
    let missing: Vec<&str> = broker_upstreams
        .iter()
        .filter(|id| !server.upstreams.iter().any(|u| &u.id == *id && u.store_tokens))
        .map(String::as_str)
        .collect();
    (!missing.is_empty()).then(|| {
        Verdict::reject(
            "UnknownUpstream",
            format!(
                "spec.brokerUpstreams names {} — not an upstream of the AuthServer with storeTokens: true",
                missing.join(", ")
            ),
        )
    })
}

/// One `spec.upstreams[]` entry; its client secret is a mounted file.
fn upstream_config(u: &authserver::UpstreamSpec) -> Result<UpstreamConfig, SpecError> {
    let mut claims = ClaimMapping::default();
    for (k, v) in u.claims.iter().flatten() {
        match k.as_str() {
            "subject" => claims.subject.clone_from(v),
            "email" => claims.email.clone_from(v),
            "name" => claims.name.clone_from(v),
            "groups" => claims.groups.clone_from(v),
            other => {
                return Err(SpecError(format!(
                    "spec.upstreams[{}].claims.{other}: unknown claim mapping (use subject, email, name, groups)",
                    u.id
                )));
            }
        }
    }
    Ok(UpstreamConfig {
        id: u.id.clone(),
        display_name: u.display_name.clone(),
        issuer: u.issuer.clone(),
        authorization_endpoint: u.authorization_endpoint.clone(),
        token_endpoint: u.token_endpoint.clone(),
        userinfo_endpoint: u.userinfo_endpoint.clone(),
        client_id: u.client_id.clone(),
        client_secret: None,
        client_secret_file: Some(paths::upstream_secret_file(&u.id)),
        token_endpoint_auth_method: match u.token_endpoint_auth_method {
            Some(authserver::UpstreamAuthMethod::ClientSecretPost) => UpstreamAuthMethod::ClientSecretPost,
            _ => UpstreamAuthMethod::ClientSecretBasic,
        },
        scopes: u.scopes.clone().unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
        claims,
        allowed_email_domains: u.allowed_email_domains.clone(),
        required_groups: u.required_groups.clone(),
        store_tokens: u.store_tokens,
    })
}

fn ssl_mode(m: PostgresSslMode) -> SslMode {
    match m {
        PostgresSslMode::Disable => SslMode::Disable,
        PostgresSslMode::Prefer => SslMode::Prefer,
        PostgresSslMode::Require => SslMode::Require,
        PostgresSslMode::VerifyCa => SslMode::VerifyCa,
        PostgresSslMode::VerifyFull => SslMode::VerifyFull,
    }
}

/// Values the pods get from the environment (Secrets the operator never
/// reads), stood in for so that validation sees a complete config.
fn check_env(spec: &AuthServerSpec) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if spec.database.postgres.is_some() {
        env.push(("AUTHPLANE_DATABASE_URL".into(), "postgres://user:pass@db:5432/authplane".into()));
    }
    if spec.oauth.initial_access_token_secret_ref.is_some() {
        env.push(("AUTHPLANE_OAUTH_INITIAL_ACCESS_TOKEN".into(), "x".repeat(32)));
    }
    env
}

/// Names the CR field for the config keys a person sets on the AuthServer.
fn spec_error(e: &ConfigError) -> String {
    let field = match e.key.as_str() {
        "server.issuer" => "spec.issuer",
        "database.sslmode" | "database.sslrootcert" => "spec.database.postgres.sslMode",
        "signing.rotation_interval" => "spec.signing.rotationInterval",
        "signing.publish_ahead" => "spec.signing.publishAhead",
        "signing.retire_after" => "spec.signing.overlap",
        "oauth.access_token_ttl" => "spec.oauth.accessTokenTtl",
        "oauth.refresh_token_ttl" => "spec.oauth.refreshTokenTtl",
        "oauth.authorization_code_ttl" => "spec.oauth.authorizationCodeTtl",
        _ => return e.to_string(),
    };
    format!("{field} (config key {e})")
}

/// The config file's text: a header naming its source, then the YAML.
pub fn to_yaml(namespace: &str, name: &str, spec: &AuthServerSpec, config: &Config) -> Result<String, SpecError> {
    let body = serde_saphyr::to_string(config).map_err(|e| SpecError(format!("cannot render YAML: {e}")))?;
    let mut header = format!(
        "# Rendered by authplane-operator from AuthServer {namespace}/{name}. Do not edit: change the\n\
         # AuthServer, ProtectedResources and OAuthClients instead. The server re-reads this file on change.\n"
    );
    if let Some(pg) = &spec.database.postgres {
        // Escaped: the reference is whatever the AuthServer says (the CRD
        // bounds only its length), and a newline or control character in a
        // comment would end it or break the YAML (found by `fuzz/`
        // `operator_render`).
        header.push_str(&format!(
            "# database.url is overridden by AUTHPLANE_DATABASE_URL from Secret {} key {}.\n",
            pg.url_secret_ref.name.escape_default(),
            pg.url_secret_ref.key.escape_default()
        ));
    }
    Ok(format!("{header}{body}"))
}

/// `(holds_id, awaits_adoption)` of an OAuthClient for `id`, from what its
/// status last said and its adoption annotation (see [`ClientIn`]).
pub fn id_claim(client: &authplane_crds::OAuthClient, id: &str) -> (bool, bool) {
    let Some(status) = client.status.as_ref() else { return (false, false) };
    if status.client_id.as_deref() != Some(id) {
        return (false, false);
    }
    let reason = status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.reason.as_str());
    let holds = matches!(reason, Some("Registered" | "PendingConfig" | "ConfigTooLarge"));
    let adopt = client.metadata.annotations.as_ref().and_then(|a| a.get(ADOPT_ANNOTATION)).map(String::as_str);
    let waits = matches!(reason, Some("DuplicateClientId" | "AdoptionRequired")) && adopt != Some(id);
    (holds, waits)
}
