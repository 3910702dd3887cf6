//! An MCP server protected by AuthPlane.
//!
//! Tools: `list_notes` needs the scope `tools/read`, `add_note` needs
//! `tools/write`. With `--broker-upstream`, `upstream_whoami` (tools/read)
//! shows the token broker end to end: it exchanges the caller's token for
//! their token at that upstream and calls the upstream's userinfo endpoint
//! with it. Defaults match `config/dev.yaml`: resource
//! `http://localhost:8080/mcp`, issuer `http://localhost:9000`.
//!
//! ```text
//! cargo run -p authplane-example-mcp-server -- --help
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authplane_sdk::axum::{BearerAuthLayer, prm_router};
use authplane_sdk::{
    BrokerError, CachePolicy, Claims, Cors, ProtectedResource, SessionLimits, Sessions, UpstreamTokens, Verifier,
};
use clap::Parser;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use tower_layer::Layer;
use tracing_subscriber::prelude::*;

#[derive(Parser, Debug)]
#[command(version, about = "An MCP server protected by AuthPlane")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MCP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// This server's MCP endpoint as clients call it (the resource in AuthPlane).
    #[arg(long, env = "AUTHPLANE_RESOURCE", default_value = "http://localhost:8080/mcp")]
    resource: String,
    /// The AuthPlane issuer (AUTHPLANE_SERVER_ISSUER of the AS).
    #[arg(long, env = "AUTHPLANE_ISSUER", default_value = "http://localhost:9000")]
    issuer: String,
    /// Fetch the AS metadata from here instead of the issuer (e.g. an in-cluster URL).
    #[arg(long, env = "AUTHPLANE_AS_METADATA_URL")]
    as_metadata_url: Option<String>,
    /// Fetch keys from this JWKS URL and skip discovery.
    #[arg(long, env = "AUTHPLANE_JWKS_URI")]
    jwks_uri: Option<String>,
    /// MCP sessions one principal (iss, sub, client_id) may hold; one more
    /// closes its least recently used session.
    #[arg(long, env = "MCP_SESSIONS_PER_PRINCIPAL", default_value_t = 8)]
    sessions_per_principal: usize,
    /// MCP sessions open at once; beyond it, initialize gets 503.
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 1000)]
    max_sessions: usize,
    /// Seconds without a request after which a session is closed.
    #[arg(long, env = "MCP_SESSION_IDLE_TIMEOUT", default_value_t = 300)]
    session_idle_timeout: i64,
    /// Browser origins allowed to call the server (CORS), comma-separated;
    /// `*` for any (tokens are not cookies), empty for no CORS.
    #[arg(long, env = "MCP_CORS_ORIGINS", default_value = "*")]
    cors_origins: String,
    /// Milliseconds a request with an unknown key id waits for the JWKS
    /// refetch before it is answered 503.
    #[arg(long, env = "AUTHPLANE_JWKS_UNKNOWN_KID_TIMEOUT_MS", default_value_t = 2000)]
    jwks_unknown_kid_timeout_ms: u64,
    /// Seconds cached keys are trusted after the last successful JWKS fetch.
    #[arg(long, env = "AUTHPLANE_JWKS_MAX_KEY_AGE", default_value_t = 86_400)]
    jwks_max_key_age: i64,
    /// Accept only DPoP-bound access tokens with a DPoP proof (RFC 9449);
    /// register the resource with `dpop_required: true` at AuthPlane too.
    #[arg(long, env = "MCP_DPOP_REQUIRED")]
    dpop_required: bool,
    /// Seconds between background refreshes of the key set; must stay below
    /// the AS's `signing.publish_ahead` so a scheduled key is known before it
    /// signs (the fault suite shortens both).
    #[arg(long, env = "AUTHPLANE_JWKS_REFRESH_INTERVAL", default_value_t = 300)]
    jwks_refresh_interval: i64,
    /// The token broker: the upstream id whose token `upstream_whoami` obtains.
    #[arg(long, env = "MCP_BROKER_UPSTREAM", requires_all = ["broker_client_id", "broker_client_secret", "broker_userinfo_url"])]
    broker_upstream: Option<String>,
    /// This server's confidential client at AuthPlane (with broker_upstreams).
    #[arg(long, env = "MCP_BROKER_CLIENT_ID")]
    broker_client_id: Option<String>,
    #[arg(long, env = "MCP_BROKER_CLIENT_SECRET", hide_env_values = true)]
    broker_client_secret: Option<String>,
    /// The upstream API `upstream_whoami` calls with the user's upstream token.
    #[arg(long, env = "MCP_BROKER_USERINFO_URL")]
    broker_userinfo_url: Option<String>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info,rmcp=warn")]
    log: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddNote {
    /// The note's text.
    text: String,
}

/// The MCP server: a shared list of notes.
#[derive(Clone)]
struct Notes {
    notes: Arc<Mutex<Vec<String>>>,
    broker: Option<Arc<Broker>>,
    tool_router: ToolRouter<Self>,
}

/// What `upstream_whoami` needs: the broker client, which upstream, and the
/// upstream API to call.
struct Broker {
    tokens: UpstreamTokens,
    upstream: String,
    userinfo_url: String,
    http: reqwest::Client,
}

/// The verified token of the HTTP request that carried this tool call.
fn claims(parts: &http::request::Parts) -> Result<&Claims, ErrorData> {
    parts.extensions.get::<Claims>().ok_or_else(|| ErrorData::internal_error("request was not authenticated", None))
}

#[tool_router]
impl Notes {
    fn new(notes: Arc<Mutex<Vec<String>>>, broker: Option<Arc<Broker>>) -> Self {
        let mut tool_router = Self::tool_router();
        // Without a broker the tool could only ever fail: do not offer it.
        if broker.is_none() {
            tool_router.remove_route("upstream_whoami");
        }
        Notes { notes, broker, tool_router }
    }

    #[tool(
        description = "Who you are at the upstream, asked with your upstream token from AuthPlane's token broker (scope tools/read)"
    )]
    async fn upstream_whoami(&self, Extension(parts): Extension<http::request::Parts>) -> Result<String, ErrorData> {
        if !claims(&parts)?.has_scope("tools/read") {
            return Err(ErrorData::invalid_request("scope tools/read required", None));
        }
        let Some(b) = &self.broker else {
            return Err(ErrorData::invalid_request("this server has no broker configured (--broker-upstream)", None));
        };
        // The token this request carried (verified by the middleware).
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim()))
            .ok_or_else(|| ErrorData::internal_error("request carried no token", None))?;
        let upstream = b.tokens.upstream_token(token, &b.upstream).await.map_err(|e| match e {
            BrokerError::SignInAgain(d) => ErrorData::invalid_request(format!("sign in again: {d}"), None),
            other => ErrorData::internal_error(other.to_string(), None),
        })?;
        let res = b
            .http
            .get(&b.userinfo_url)
            .bearer_auth(&upstream.access_token)
            .send()
            .await
            .map_err(|e| ErrorData::internal_error(format!("upstream call failed: {}", e.without_url()), None))?;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(ErrorData::internal_error(format!("upstream answered {status}"), None));
        }
        Ok(body)
    }

    #[tool(description = "List the notes (scope tools/read)")]
    fn list_notes(&self, Extension(parts): Extension<http::request::Parts>) -> Result<String, ErrorData> {
        // The middleware already enforced the scope; checking again here
        // keeps the tool safe if it is ever mounted without the tool map.
        if !claims(&parts)?.has_scope("tools/read") {
            return Err(ErrorData::invalid_request("scope tools/read required", None));
        }
        let notes = self.notes.lock().map_err(|_| ErrorData::internal_error("notes lock poisoned", None))?;
        Ok(if notes.is_empty() { "(no notes)".to_owned() } else { notes.join("\n") })
    }

    #[tool(description = "Add a note (scope tools/write)")]
    fn add_note(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(AddNote { text }): Parameters<AddNote>,
    ) -> Result<String, ErrorData> {
        let c = claims(&parts)?;
        if !c.has_scope("tools/write") {
            return Err(ErrorData::invalid_request("scope tools/write required", None));
        }
        let mut notes = self.notes.lock().map_err(|_| ErrorData::internal_error("notes lock poisoned", None))?;
        notes.push(format!("{} (by {})", text, c.sub));
        Ok(format!("added note {}", notes.len()))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "A notes server protected by AuthPlane: list_notes needs tools/read, add_note tools/write; with --broker-upstream, upstream_whoami (tools/read) uses the token broker.",
        )
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::try_new(&args.log)?)
        .with(authplane_sdk::logfmt::layer())
        .init();

    // --- AuthPlane: the resource, its verifier, PRM and the bearer layer. ---
    let mut resource = ProtectedResource::new(&args.resource, &args.issuer)?
        .with_scopes(["tools/read", "tools/write"])?
        .with_default_scopes(["tools/read"])?
        .with_resource_name("Example MCP server")
        .with_dpop_required(args.dpop_required);
    if let Some(url) = &args.as_metadata_url {
        resource = resource.with_as_metadata_url(url)?;
    }
    if let Some(url) = &args.jwks_uri {
        resource = resource.with_jwks_uri(url)?;
    }
    let policy = CachePolicy {
        unknown_kid_timeout_ms: args.jwks_unknown_kid_timeout_ms,
        max_key_age: args.jwks_max_key_age,
        refresh_interval: args.jwks_refresh_interval,
        ..CachePolicy::default()
    };
    let verifier = Verifier::builder(resource.clone()).cache_policy(policy).build();
    if let Err(e) = verifier.warm_up().await {
        // Not fatal: the AS may start after us; the first request retries.
        tracing::warn!(error = e.err_name(), detail = %e, "AuthPlane not reachable yet");
    }

    // Sessions: each bound to the principal that created it (another
    // principal gets 404), and bounded. rmcp's own idle timeout is a little
    // longer, so the registry closes sessions first, through `on_close`.
    let limits = SessionLimits {
        per_principal: args.sessions_per_principal,
        max_sessions: args.max_sessions,
        idle_timeout_secs: args.session_idle_timeout,
        ..SessionLimits::default()
    };
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive =
        Some(Duration::from_secs(u64::try_from(args.session_idle_timeout).unwrap_or(300).saturating_add(60)));
    let manager = Arc::new(manager);
    let closer = manager.clone();
    let sessions = Sessions::new(limits).on_close(move |id| {
        let m = closer.clone();
        tokio::spawn(async move {
            let _ = m.close_session(&id.into()).await;
        });
    });
    let reaper = sessions.clone();
    tokio::spawn(async move {
        // Frees idle sessions even when no request comes to trigger a sweep.
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            reaper.reap_idle();
        }
    });

    let broker =
        match (&args.broker_upstream, &args.broker_client_id, &args.broker_client_secret, &args.broker_userinfo_url) {
            (Some(upstream), Some(id), Some(secret), Some(url)) => Some(Arc::new(Broker {
                tokens: UpstreamTokens::new(&args.issuer, id, secret),
                upstream: upstream.clone(),
                userinfo_url: url.clone(),
                http: reqwest::Client::new(),
            })),
            _ => None,
        };

    let mut auth = BearerAuthLayer::new(verifier)
        .tool_scope("upstream_whoami", "tools/read")
        .tool_scope("list_notes", "tools/read")
        .tool_scope("add_note", "tools/write")
        .sessions(sessions);
    match args.cors_origins.trim() {
        "" => {}
        "*" => auth = auth.cors(Cors::any_origin()),
        list => auth = auth.cors(Cors::allow_origins(list.split(',').map(str::trim).filter(|o| !o.is_empty()))),
    }
    // -------------------------------------------------------------------------

    let mut allowed_hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Some(host) = url_host(resource.resource()) {
        allowed_hosts.push(host);
    }
    let notes = Arc::new(Mutex::new(Vec::new()));
    let mcp = StreamableHttpService::new(
        move || Ok(Notes::new(notes.clone(), broker.clone())),
        manager,
        StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts),
    );
    let path = resource_path(resource.resource());
    let app = axum::Router::new().route_service(&path, auth.layer(mcp)).merge(prm_router(&resource));

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        resource = resource.resource(),
        resource_metadata = resource.metadata_url(),
        issuer = resource.issuer(),
        "mcp server started"
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

/// The path part of the canonical resource URI (`/mcp`), where the MCP endpoint is served.
fn resource_path(resource: &str) -> String {
    let after_scheme = resource.find("://").map_or(0, |i| i + 3);
    match resource[after_scheme..].find('/') {
        Some(i) => resource[after_scheme + i..].to_owned(),
        None => "/".to_owned(),
    }
}

fn url_host(resource: &str) -> Option<String> {
    let after_scheme = resource.find("://")? + 3;
    let authority = resource[after_scheme..].split('/').next()?;
    Some(authority.to_owned())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}
