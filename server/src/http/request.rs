//! What every handler reads from a request (its ids, the client's address)
//! and how a refused request is counted and logged.

use actix_web::{HttpMessage, HttpRequest};

use super::observe::RequestContext;
use crate::oauth::error::Error;
use crate::oauth::token::RequestIds;
use crate::state::AppState;

pub const MAX_FORM: usize = 16 * 1024;

pub fn ids(req: &HttpRequest) -> RequestIds {
    let ext = req.extensions();
    let c = ext.get::<RequestContext>();
    RequestIds { request_id: c.map(|c| c.request_id.clone()), trace_id: c.map(|c| c.trace_id.clone()) }
}

/// The client's address for throttling and rate limits: the peer, or the
/// forwarded address when the peer is one of `server.trusted_proxies`.
pub fn client_addr(state: &AppState, req: &HttpRequest) -> Option<std::net::IpAddr> {
    let cfg = state.deps.config.load();
    let forwarded: Vec<&str> = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    crate::limits::client_ip(req.peer_addr().map(|a| a.ip()), forwarded.as_deref(), &cfg.server.trusted_proxies)
}

pub fn denied(state: &AppState, e: &Error, msg: &'static str, client_id: Option<&str>, resource: Option<&str>) {
    state.metrics.deny(e.kind.reason());
    let client_id = client_id.unwrap_or("-");
    let resource = resource.unwrap_or("-");
    // The checklist's step-8 line: level=ERROR msg="token issuance failed" error=… code=… client_id=… resource=…
    tracing::error!(error = e.name(), code = e.kind.code(), client_id, resource, detail = %e.description, "{msg}");
}
