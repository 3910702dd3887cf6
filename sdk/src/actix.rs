//! actix-web 4: [`BearerAuth`] middleware, [`prm`] service configuration,
//! [`require_scope`] middleware and a [`Claims`] extractor.
//!
//! ```no_run
//! # use actix_web::{App, web};
//! # use authplane_sdk::{ProtectedResource, Verifier, Claims, actix::{BearerAuth, prm}};
//! # async fn handler(claims: Claims) -> String { claims.sub }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let resource = ProtectedResource::new("http://localhost:8080/mcp", "http://localhost:9000")?;
//! let verifier = Verifier::new(resource.clone());
//! let app = App::new()
//!     .configure(prm(&resource))
//!     .service(web::resource("/mcp").wrap(BearerAuth::new(verifier)).route(web::post().to(handler)));
//! # Ok(()) }
//! ```

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;

use crate::bearer::is_preflight;
use crate::challenge::{self, Rejection};
use crate::cors::Cors;
use crate::mcp::{DEFAULT_MAX_BODY_BYTES, ToolScopes};
use crate::session::{MCP_SESSION_ID, Pending, Sessions};
use crate::{Claims, ProtectedResource, Verifier};

fn to_actix(r: &Rejection) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(r.status.as_u16())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut b = HttpResponse::build(status);
    for (k, v) in &r.headers {
        if let Ok(v) = v.to_str() {
            b.append_header((k.as_str(), v));
        }
    }
    b.body(r.body.clone())
}

impl ResponseError for Rejection {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::from_u16(self.status.as_u16())
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        to_actix(self)
    }
}

/// Verifies the bearer token of every request (CORS preflights aside) and
/// puts the [`Claims`] in the request extensions; refuses with 401/403/400.
#[derive(Clone)]
pub struct BearerAuth {
    cfg: Arc<Config>,
}

struct Config {
    verifier: Verifier,
    tool_scopes: ToolScopes,
    max_body: usize,
    sessions: Option<Sessions>,
    cors: Option<Cors>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth").field("verifier", &self.cfg.verifier).finish_non_exhaustive()
    }
}

impl BearerAuth {
    pub fn new(verifier: Verifier) -> Self {
        BearerAuth {
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
    /// them (see [`Sessions`]; the axum layer has the same option).
    pub fn sessions(self, sessions: Sessions) -> Self {
        let mut cfg = self.into_config();
        cfg.sessions = Some(sessions);
        BearerAuth { cfg: Arc::new(cfg) }
    }

    /// Answers CORS preflights without a token and adds CORS headers to
    /// every answer (see [`Cors`]).
    pub fn cors(self, cors: Cors) -> Self {
        let mut cfg = self.into_config();
        cfg.cors = Some(cors);
        BearerAuth { cfg: Arc::new(cfg) }
    }

    /// A `tools/call` of `tool` needs `scope` (see the axum layer).
    pub fn tool_scope(self, tool: impl Into<String>, scope: impl Into<String>) -> Self {
        let mut cfg = self.into_config();
        cfg.tool_scopes.insert(tool, scope);
        BearerAuth { cfg: Arc::new(cfg) }
    }

    pub fn max_body_bytes(self, max: usize) -> Self {
        let mut cfg = self.into_config();
        cfg.max_body = max;
        BearerAuth { cfg: Arc::new(cfg) }
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

impl<S, B> Transform<S, ServiceRequest> for BearerAuth
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = BearerAuthMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(BearerAuthMiddleware { service: Rc::new(service), cfg: self.cfg.clone() }))
    }
}

pub struct BearerAuthMiddleware<S> {
    service: Rc<S>,
    cfg: Arc<Config>,
}

impl<S, B> Service<ServiceRequest> for BearerAuthMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let cfg = self.cfg.clone();
        Box::pin(async move {
            let origin = req.headers().get(actix_web::http::header::ORIGIN).map(|v| v.as_bytes().to_vec());
            let mut res = match authenticate(&cfg, req).await {
                Ok(Authenticated::Preflight(req, preflight)) => {
                    ServiceResponse::new(req, preflight).map_into_right_body()
                }
                Ok(Authenticated::Request(req, pending)) => {
                    let res = service.call(req).await?;
                    if let Some(p) = pending {
                        let session = res.headers().get(MCP_SESSION_ID).map(|v| v.as_bytes());
                        p.finish(res.status().as_u16(), session);
                    }
                    res.map_into_left_body()
                }
                Err((req, rejection)) => ServiceResponse::new(req, to_actix(&rejection)).map_into_right_body(),
            };
            if let (Some(cors), Some(origin)) = (&cfg.cors, origin) {
                for (k, v) in cors.response_headers(&origin) {
                    set_header(res.headers_mut(), &k, &v);
                }
            }
            Ok(res)
        })
    }
}

fn set_header(h: &mut actix_web::http::header::HeaderMap, k: &http::HeaderName, v: &http::HeaderValue) {
    use actix_web::http::header::{HeaderName, HeaderValue};
    if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_str().as_bytes()), HeaderValue::from_bytes(v.as_bytes())) {
        if k == actix_web::http::header::VARY {
            h.append(k, v);
        } else {
            h.insert(k, v);
        }
    }
}

enum Authenticated {
    /// A CORS preflight the middleware answered itself.
    Preflight(HttpRequest, HttpResponse),
    /// Authenticated; `Some` when the session registry awaits the response.
    Request(ServiceRequest, Option<Pending>),
}

async fn authenticate(cfg: &Config, mut req: ServiceRequest) -> Result<Authenticated, (HttpRequest, Rejection)> {
    let h = req.headers();
    if is_preflight(
        req.method().as_str(),
        h.contains_key(actix_web::http::header::ORIGIN),
        h.contains_key(actix_web::http::header::ACCESS_CONTROL_REQUEST_METHOD),
    ) {
        // Browsers never send credentials on a preflight (Fetch standard).
        let Some(cors) = &cfg.cors else { return Ok(Authenticated::Request(req, None)) };
        let origin = h.get(actix_web::http::header::ORIGIN).map(|v| v.as_bytes()).unwrap_or_default();
        let (status, headers) = cors.preflight_parts(origin);
        let status =
            actix_web::http::StatusCode::from_u16(status.as_u16()).unwrap_or(actix_web::http::StatusCode::NO_CONTENT);
        let mut res = HttpResponse::build(status).finish();
        for (k, v) in &headers {
            set_header(res.headers_mut(), k, v);
        }
        return Ok(Authenticated::Preflight(req.into_parts().0, res));
    }
    let ch = cfg.verifier.challenge().clone();
    let verdict = crate::middleware::authenticate(
        &cfg.verifier,
        h.get_all(actix_web::http::header::AUTHORIZATION).map(|v| v.as_bytes()),
        h.get_all("dpop").map(|v| v.as_bytes()),
        req.method().as_str(),
        req.path(),
    )
    .await;
    let claims = match verdict {
        Ok(c) => c,
        Err(rejection) => return Err((req.into_parts().0, rejection)),
    };
    // Another principal's session is 404 before anything else about it shows.
    let pending = match &cfg.sessions {
        None => None,
        Some(s) => {
            let session = req.headers().get(MCP_SESSION_ID).map(|v| v.as_bytes());
            match s.before(req.method().as_str(), session, &claims) {
                Ok(p) => Some(p),
                Err(rejection) => return Err((req.into_parts().0, rejection)),
            }
        }
    };

    if req.method() == actix_web::http::Method::POST && !cfg.tool_scopes.is_empty() {
        let mut payload = req.take_payload();
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let Ok(chunk) = chunk else {
                let r = challenge::invalid_request(&ch, "The request body could not be read");
                return Err((req.into_parts().0, r));
            };
            if body.len() + chunk.len() > cfg.max_body {
                return Err((req.into_parts().0, challenge::body_too_large()));
            }
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();
        if let Err(r) = crate::middleware::check_tool_scopes(&cfg.tool_scopes, &body, &claims, &ch) {
            return Err((req.into_parts().0, r));
        }
        req.set_payload(Payload::from(body));
    }
    req.extensions_mut().insert(claims);
    Ok(Authenticated::Request(req, pending))
}

/// Middleware for resources or scopes that need `scope` (inside [`BearerAuth`]):
/// `web::resource("/admin").wrap(require_scope("admin")).wrap(BearerAuth::new(v))`.
pub fn require_scope(scope: impl Into<String>) -> RequireScope {
    RequireScope { scope: Rc::from(scope.into()) }
}

#[derive(Debug, Clone)]
pub struct RequireScope {
    scope: Rc<str>,
}

impl<S, B> Transform<S, ServiceRequest> for RequireScope
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RequireScopeMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireScopeMiddleware { service: Rc::new(service), scope: self.scope.clone() }))
    }
}

pub struct RequireScopeMiddleware<S> {
    service: Rc<S>,
    scope: Rc<str>,
}

impl<S, B> Service<ServiceRequest> for RequireScopeMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let scope = self.scope.clone();
        Box::pin(async move {
            let verdict = match req.extensions().get::<Claims>() {
                None => Err(crate::middleware::wiring_error()),
                Some(c) => c.require_scope(&scope).inspect_err(|_| crate::middleware::log_insufficient(c, &scope)),
            };
            match verdict {
                Ok(()) => service.call(req).await.map(ServiceResponse::map_into_left_body),
                Err(r) => Ok(req.into_response(to_actix(&r)).map_into_right_body()),
            }
        })
    }
}

impl FromRequest for Claims {
    type Error = Rejection;
    type Future = Ready<Result<Claims, Rejection>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Claims>().cloned().ok_or_else(crate::middleware::wiring_error))
    }
}

/// Serves the PRM document at [`ProtectedResource::metadata_paths`], with
/// CORS, outside any authentication: `App::new().configure(prm(&resource))`.
pub fn prm(resource: &ProtectedResource) -> impl FnOnce(&mut web::ServiceConfig) + use<> {
    let resource = resource.clone();
    move |cfg: &mut web::ServiceConfig| {
        for path in resource.metadata_paths() {
            let r = resource.clone();
            cfg.route(
                path,
                web::route().to(move |req: HttpRequest| {
                    let method =
                        http::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or(http::Method::GET);
                    let res = crate::prm::respond(&r, &method);
                    async move {
                        let status = actix_web::http::StatusCode::from_u16(res.status.as_u16())
                            .unwrap_or(actix_web::http::StatusCode::OK);
                        let mut b = HttpResponse::build(status);
                        for (k, v) in &res.headers {
                            if let Ok(v) = v.to_str() {
                                b.append_header((k.as_str(), v));
                            }
                        }
                        b.body(res.body)
                    }
                }),
            );
        }
    }
}
