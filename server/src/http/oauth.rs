//! OAuth endpoints on the public listener: token, register, revoke,
//! introspect (authorize and the pages are in `ui.rs`). Errors are RFC 6749
//! §5.2 JSON with `Cache-Control: no-store`; each failure is counted by
//! reason and logged as `error=<ErrName> code=<oauth code>`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};

use super::error::error_json;
use super::request::{MAX_FORM, client_addr, denied, ids};
use crate::clock;
use crate::metrics::GrantLabels;
use crate::oauth::error::{Error, Kind};
use crate::oauth::form::Form;
use crate::oauth::token::{self, Outcome};
use crate::oauth::{client_auth, register, revoke};
use crate::state::AppState;

pub fn cors(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    // Browser clients must read the nonce (RFC 9449 §8.2).
    res.headers_mut()
        .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("DPoP-Nonce, WWW-Authenticate"));
    res
}

/// CORS preflight for the endpoints browser-based clients call.
pub async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "authorization, content-type, mcp-protocol-version, dpop",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}

fn form_body(req: &HttpRequest, body: &Bytes) -> Result<Form, Error> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(Error::new(Kind::InvalidRequest, "expected Content-Type: application/x-www-form-urlencoded"));
    }
    if body.len() > MAX_FORM {
        return Err(Error::new(Kind::InvalidRequest, "request body too large"));
    }
    Form::parse(body)
}

fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

pub async fn token(req: HttpRequest, body: Bytes, state: web::Data<AppState>) -> HttpResponse {
    let now = clock::now();
    let ids = ids(&req);
    let auth = authorization(&req);
    let basic = auth.is_some_and(|a| a.to_ascii_lowercase().starts_with("basic "));
    let dpop: Vec<&str> = req.headers().get_all("dpop").map(|v| v.to_str().unwrap_or("")).collect();
    let (result, outcome) = match form_body(&req, &body) {
        Ok(form) if form.get("grant_type") == Some(crate::oauth::broker::GRANT_TYPE) => {
            let request =
                token::TokenRequest { form, authorization: auth, dpop: &dpop, addr: client_addr(&state, &req) };
            return match token::exchange_upstream(&state.deps, request, &ids, now).await {
                (Ok(answer), outcome) => {
                    state.metrics.tokens_issued.get_or_create(&GrantLabels { grant_type: "token_exchange" }).inc();
                    tracing::info!(
                        client_id = outcome.client_id.as_deref().unwrap_or("-"),
                        grant_type = "token_exchange",
                        user_id = outcome.user_id.as_deref().unwrap_or("-"),
                        resource = outcome.resource.as_deref().unwrap_or("-"),
                        "upstream token issued"
                    );
                    let mut ok = HttpResponse::Ok();
                    ok.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
                    cors(ok.json(answer))
                }
                (Err(e), outcome) => {
                    denied(
                        &state,
                        &e,
                        "token issuance failed",
                        outcome.client_id.as_deref(),
                        outcome.resource.as_deref(),
                    );
                    cors(error_json(&e, basic))
                }
            };
        }
        Ok(form) => {
            let request =
                token::TokenRequest { form, authorization: auth, dpop: &dpop, addr: client_addr(&state, &req) };
            token::exchange(&state.deps, request, &ids, now).await
        }
        Err(e) => (Err(e), Outcome::default()),
    };
    match result {
        Ok(tokens) => {
            if let Some(g) = outcome.grant_type {
                state.metrics.tokens_issued.get_or_create(&GrantLabels { grant_type: g.as_str() }).inc();
            }
            if outcome.dpop_jkt.is_some() {
                state.metrics.dpop_validated.inc();
            }
            tracing::info!(client_id = outcome.client_id.as_deref().unwrap_or("-"), grant_type = outcome.grant_type.map_or("-", |g| g.as_str()), resource = outcome.resource.as_deref().unwrap_or("-"), scope = %tokens.scope, token_type = tokens.token_type, "token issued");
            let mut ok = HttpResponse::Ok();
            ok.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
            if let Some(n) = &outcome.dpop_nonce {
                ok.insert_header(("DPoP-Nonce", n.as_str()));
            }
            cors(ok.json(tokens))
        }
        Err(e) => {
            denied(&state, &e, "token issuance failed", outcome.client_id.as_deref(), outcome.resource.as_deref());
            if let Some(reason) = e.dpop {
                state
                    .metrics
                    .dpop_rejected
                    .get_or_create(&crate::metrics::ReasonLabels { reason: reason.label() })
                    .inc();
            }
            cors(error_json(&e, basic))
        }
    }
}

#[tracing::instrument(name = "oauth.register", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn register(req: HttpRequest, body: Bytes, state: web::Data<AppState>) -> HttpResponse {
    let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let call = register::Call {
        bearer: header(header::AUTHORIZATION).and_then(|h| h.strip_prefix("Bearer ")),
        content_type: header(header::CONTENT_TYPE).unwrap_or(""),
        body: &body,
        addr: client_addr(&state, &req),
    };
    match register::register(&state.deps, call, &ids(&req), clock::now()).await {
        Ok((client, response)) => {
            tracing::info!(client_id = %client.client_id, method = client.token_endpoint_auth_method.as_str(), "client registered");
            cors(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(response))
        }
        Err(e) => {
            denied(&state, &e, "client registration failed", None, None);
            cors(error_json(&e, false))
        }
    }
}

/// Authenticates the caller of revoke/introspect (RFC 7009 §2.1, RFC 7662 §2.1).
async fn authenticated_client(
    state: &AppState,
    req: &HttpRequest,
    form: &Form,
    now: i64,
) -> Result<authplane_core::config::ClientConfig, Error> {
    let p = client_auth::presented(authorization(req), form.get("client_id"), form.get("client_secret"))?;
    Ok(token::authenticate(&state.deps, &p, client_addr(state, req), now).await?.spec)
}

pub async fn revoke_endpoint(req: HttpRequest, body: Bytes, state: web::Data<AppState>) -> HttpResponse {
    let now = clock::now();
    let basic = authorization(&req).is_some_and(|a| a.to_ascii_lowercase().starts_with("basic "));
    let result = async {
        let form = form_body(&req, &body)?;
        let client = authenticated_client(&state, &req, &form, now).await?;
        let token = form.get("token").ok_or_else(|| Error::new(Kind::InvalidRequest, "token is required"))?;
        revoke::revoke(&state.deps, &client.client_id, token, form.get("token_type_hint"), &ids(&req), now).await?;
        Ok::<String, Error>(client.client_id)
    }
    .await;
    match result {
        Ok(client_id) => {
            tracing::info!(client_id = %client_id, "revocation request handled");
            cors(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish())
        }
        Err(e) => {
            denied(&state, &e, "revocation failed", None, None);
            cors(error_json(&e, basic))
        }
    }
}

pub async fn introspect_endpoint(req: HttpRequest, body: Bytes, state: web::Data<AppState>) -> HttpResponse {
    let now = clock::now();
    let basic = authorization(&req).is_some_and(|a| a.to_ascii_lowercase().starts_with("basic "));
    let result = async {
        let form = form_body(&req, &body)?;
        let client = authenticated_client(&state, &req, &form, now).await?;
        // RFC 7662 §4: only authenticated callers; public clients cannot
        // probe tokens they hold.
        if !client.token_endpoint_auth_method.is_confidential() {
            return Err(Error::new(Kind::InvalidClient, "introspection needs a confidential client"));
        }
        let token = form.get("token").ok_or_else(|| Error::new(Kind::InvalidRequest, "token is required"))?;
        revoke::introspect(&state.deps, token, now).await
    }
    .await;
    match result {
        Ok(v) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(v),
        Err(e) => {
            denied(&state, &e, "introspection failed", None, None);
            error_json(&e, basic)
        }
    }
}
