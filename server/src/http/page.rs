//! What every HTML page the server renders shares: the security headers and
//! the issuer's host shown in the header.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;

use crate::state::AppState;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";

pub fn issuer_host(state: &AppState) -> String {
    let cfg = state.deps.config.load();
    url::Url::parse(&cfg.server.issuer).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default()
}

/// Security headers for every page.
pub fn page(status: StatusCode, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html)
}
