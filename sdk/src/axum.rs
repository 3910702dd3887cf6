//! axum and tower: [`BearerAuthLayer`] protects routes (or rmcp's
//! `StreamableHttpService`), [`prm_router`] serves the metadata,
//! [`require_scope`] guards a route, and [`Claims`] is an extractor.
//!
//! ```no_run
//! # use authplane_sdk::{ProtectedResource, Verifier, axum::{BearerAuthLayer, prm_router}};
//! # async fn handler() -> &'static str { "ok" }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let resource = ProtectedResource::new("http://localhost:8080/mcp", "http://localhost:9000")?
//!     .with_scopes(["tools/read", "tools/write"])?;
//! let verifier = Verifier::new(resource.clone());
//! let app: axum::Router = axum::Router::new()
//!     .route("/mcp", axum::routing::post(handler))
//!     .layer(BearerAuthLayer::new(verifier).tool_scope("add_note", "tools/write"))
//!     .merge(prm_router(&resource));
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Method, Request};
use http_body_util::BodyExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::bearer::is_preflight;
use crate::challenge::{self, Rejection};
use crate::cors::Cors;
use crate::mcp::{DEFAULT_MAX_BODY_BYTES, ToolScopes};
use crate::middleware::{check_tool_scopes, log_insufficient, wiring_error};
use crate::session::{MCP_SESSION_ID, Pending, Sessions};
use crate::{Claims, ProtectedResource, Verifier};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        Rejection::into_response::<Body>(self)
    }
}

/// Verifies the bearer token of every request (CORS preflights aside) and
/// puts the [`Claims`] in the request extensions; refuses with 401/403/400.
#[derive(Clone)]
pub struct BearerAuthLayer {
    cfg: Arc<Config>,
}

struct Config {
    verifier: Verifier,
    tool_scopes: ToolScopes,
    max_body: usize,
    sessions: Option<Sessions>,
    cors: Option<Cors>,
}

impl std::fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer").field("verifier", &self.cfg.verifier).finish_non_exhaustive()
    }
}

impl BearerAuthLayer {
    pub fn new(verifier: Verifier) -> Self {
        BearerAuthLayer {
            cfg: Arc::new(Config {
                verifier,
                tool_scopes: ToolScopes::default(),
                max_body: DEFAULT_MAX_BODY_BYTES,
                sessions: None,
                cors: None,
            }),
        }
    }

    /// Binds MCP sessions to the principal that created them and bounds
    /// them (see [`Sessions`]): a request in another principal's session
    /// gets 404. Needed for any MCP server that uses `Mcp-Session-Id`.
    pub fn sessions(self, sessions: Sessions) -> Self {
        let mut cfg = self.into_config();
        cfg.sessions = Some(sessions);
        BearerAuthLayer { cfg: Arc::new(cfg) }
    }

    /// Answers CORS preflights (without a token, as browsers send them) and
    /// adds the CORS headers to every answer, for browser-based MCP clients.
    pub fn cors(self, cors: Cors) -> Self {
        let mut cfg = self.into_config();
        cfg.cors = Some(cors);
        BearerAuthLayer { cfg: Arc::new(cfg) }
    }

    /// A `tools/call` of `tool` needs `scope`; without it the request gets
    /// 403 `insufficient_scope` (MCP step-up). Setting any tool scope makes
    /// the layer read POST bodies (up to [`Self::max_body_bytes`]).
    pub fn tool_scope(self, tool: impl Into<String>, scope: impl Into<String>) -> Self {
        let mut cfg = self.into_config();
        cfg.tool_scopes.insert(tool, scope);
        BearerAuthLayer { cfg: Arc::new(cfg) }
    }

    pub fn max_body_bytes(self, max: usize) -> Self {
        let mut cfg = self.into_config();
        cfg.max_body = max;
        BearerAuthLayer { cfg: Arc::new(cfg) }
    }

    fn into_config(self) -> Config {
        Arc::try_unwrap(self.cfg).unwrap_or_else(|shared| Config {
            verifier: shared.verifier.clone(),
            tool_scopes: shared.tool_scopes.clone(),
            max_body: shared.max_body,
            sessions: shared.sessions.clone(),
            cors: shared.cors.clone(),
        })
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;
    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth { inner, cfg: self.cfg.clone() }
    }
}

/// The service [`BearerAuthLayer`] wraps around `S`.
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    cfg: Arc<Config>,
}

impl<S> std::fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth").finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for BearerAuth<S>
where
    S: Service<Request<Body>, Response = http::Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The clone that was polled ready handles this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cfg = self.cfg.clone();
        Box::pin(async move {
            let req = req.map(Body::new);
            let origin = req.headers().get(http::header::ORIGIN).cloned();
            let mut res = match authenticate(&cfg, req).await {
                Ok(Authenticated::Preflight(res)) => res,
                Ok(Authenticated::Request(req, pending)) => {
                    let res = inner.call(req).await?;
                    if let Some(p) = pending {
                        p.finish(res.status().as_u16(), res.headers().get(MCP_SESSION_ID).map(|v| v.as_bytes()));
                    }
                    res.map(Body::new)
                }
                Err(rejection) => rejection.into_response(),
            };
            if let (Some(cors), Some(origin)) = (&cfg.cors, origin) {
                cors.decorate(origin.as_bytes(), res.headers_mut());
            }
            Ok(res)
        })
    }
}

enum Authenticated {
    /// A CORS preflight the layer answered itself.
    Preflight(Response),
    /// Authenticated; `Some` when the session registry awaits the response.
    Request(Request<Body>, Option<Pending>),
}

async fn authenticate(cfg: &Config, req: Request<Body>) -> Result<Authenticated, Rejection> {
    let h = req.headers();
    if is_preflight(
        req.method().as_str(),
        h.contains_key(http::header::ORIGIN),
        h.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD),
    ) {
        // Browsers never send credentials on a preflight (Fetch standard).
        return Ok(match &cfg.cors {
            Some(cors) => {
                let origin = h.get(http::header::ORIGIN).map(|v| v.as_bytes()).unwrap_or_default();
                Authenticated::Preflight(cors.preflight::<Body>(origin))
            }
            None => Authenticated::Request(req, None),
        });
    }
    let ch = cfg.verifier.challenge();
    let claims = crate::middleware::authenticate(
        &cfg.verifier,
        h.get_all(http::header::AUTHORIZATION).iter().map(|v| v.as_bytes()),
        h.get_all("dpop").iter().map(|v| v.as_bytes()),
        req.method().as_str(),
        req.uri().path(),
    )
    .await?;
    // Another principal's session is 404 before anything else about it shows.
    let pending = match &cfg.sessions {
        Some(s) => {
            Some(s.before(req.method().as_str(), req.headers().get(MCP_SESSION_ID).map(|v| v.as_bytes()), &claims)?)
        }
        None => None,
    };

    let (mut parts, body) = req.into_parts();
    let body = if parts.method == Method::POST && !cfg.tool_scopes.is_empty() {
        let bytes = match http_body_util::Limited::new(body, cfg.max_body).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(challenge::body_too_large()),
            Err(_) => return Err(challenge::invalid_request(ch, "The request body could not be read")),
        };
        check_tool_scopes(&cfg.tool_scopes, &bytes, &claims, ch)?;
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(claims);
    Ok(Authenticated::Request(Request::from_parts(parts, body), pending))
}

/// A layer for routes that need `scope` (after [`BearerAuthLayer`]):
/// `.route_layer(require_scope("tools/write"))`.
pub fn require_scope(scope: impl Into<String>) -> RequireScopeLayer {
    RequireScopeLayer { scope: Arc::from(scope.into()) }
}

#[derive(Debug, Clone)]
pub struct RequireScopeLayer {
    scope: Arc<str>,
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;
    fn layer(&self, inner: S) -> RequireScope<S> {
        RequireScope { inner, scope: self.scope.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct RequireScope<S> {
    inner: S,
    scope: Arc<str>,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RequireScope<S>
where
    S: Service<Request<ReqB>, Response = http::Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let scope = self.scope.clone();
        Box::pin(async move {
            let verdict = match req.extensions().get::<Claims>() {
                None => Err(wiring_error()),
                Some(c) => c.require_scope(&scope).inspect_err(|_| log_insufficient(c, &scope)),
            };
            match verdict {
                Ok(()) => inner.call(req).await.map(|res| res.map(Body::new)),
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Claims>().cloned().ok_or_else(wiring_error)
    }
}

/// Serves the PRM document at [`ProtectedResource::metadata_paths`], with
/// CORS, outside any authentication.
pub fn prm_router<S: Clone + Send + Sync + 'static>(resource: &ProtectedResource) -> axum::Router<S> {
    let mut router = axum::Router::new();
    for path in resource.metadata_paths() {
        let resource = resource.clone();
        router = router.route(
            path,
            axum::routing::any(move |method: Method| {
                let res = crate::prm::respond(&resource, &method);
                async move {
                    let mut out = http::Response::new(Body::from(res.body));
                    *out.status_mut() = res.status;
                    out.headers_mut().extend(res.headers);
                    Ok::<_, Infallible>(out)
                }
            }),
        );
    }
    router
}
