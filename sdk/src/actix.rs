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

use crate::bearer::{Credentials, credentials, is_preflight};
use crate::challenge::{self, Rejection};
use crate::mcp::{DEFAULT_MAX_BODY_BYTES, ToolScopes};
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
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth").field("verifier", &self.cfg.verifier).finish_non_exhaustive()
    }
}

impl BearerAuth {
    pub fn new(verifier: Verifier) -> Self {
        BearerAuth {
            cfg: Arc::new(Config { verifier, tool_scopes: ToolScopes::default(), max_body: DEFAULT_MAX_BODY_BYTES }),
        }
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
            match authenticate(&cfg, req).await {
                Ok(req) => service.call(req).await.map(ServiceResponse::map_into_left_body),
                Err((req, rejection)) => Ok(ServiceResponse::new(req, to_actix(&rejection)).map_into_right_body()),
            }
        })
    }
}

async fn authenticate(cfg: &Config, mut req: ServiceRequest) -> Result<ServiceRequest, (HttpRequest, Rejection)> {
    let h = req.headers();
    if is_preflight(
        req.method().as_str(),
        h.contains_key(actix_web::http::header::ORIGIN),
        h.contains_key(actix_web::http::header::ACCESS_CONTROL_REQUEST_METHOD),
    ) {
        return Ok(req);
    }
    let ch = cfg.verifier.challenge().clone();
    let verdict = match credentials(h.get_all(actix_web::http::header::AUTHORIZATION).map(|v| v.as_bytes())) {
        Credentials::Bearer(t) => Ok(cfg.verifier.verify(t).await.map_err(|e| challenge::invalid_token(&ch, &e))),
        Credentials::None => {
            tracing::debug!(resource = cfg.verifier.resource().resource(), "no bearer token");
            Err(challenge::missing_token(&ch))
        }
        Credentials::Invalid(why) => {
            tracing::warn!(error = "ErrInvalidRequest", code = "invalid_request", detail = why, "token rejected");
            Err(challenge::invalid_request(&ch, why))
        }
    };
    let claims = match verdict.and_then(|r| r) {
        Ok(c) => c,
        Err(rejection) => return Err((req.into_parts().0, rejection)),
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
    Ok(req)
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
