//! OAuth endpoints on the public listener: token, register, revoke,
//! introspect (authorize and the pages are in `ui.rs`). Errors are RFC 6749
//! §5.2 JSON with `Cache-Control: no-store`; each failure is counted by
//! reason and logged as `error=<ErrName> code=<oauth code>`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use sea_orm::TransactionTrait;

use super::error::error_json;
use super::request::{MAX_FORM, client_addr, denied, ids};
use crate::metrics::GrantLabels;
use crate::oauth::error::{Error, Kind};
use crate::oauth::form::Form;
use crate::oauth::token::{self, Outcome};
use crate::oauth::{client_auth, register, revoke};
use crate::state::AppState;
use crate::store::audit::{self, AuditEvent};
use crate::store::registry::{self as rows, Source};
use crate::{clock, random};

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
        Ok(form) => token::exchange(&state.deps, form, auth, &dpop, client_addr(&state, &req), &ids, now).await,
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
    let now = clock::now();
    let cfg = state.deps.config.load_full();
    let fail = |e: Error| {
        denied(&state, &e, "client registration failed", None, None);
        cors(error_json(&e, false))
    };
    use authplane_core::config::{GrantType, RegistrationPolicy};
    // Open registration is for MCP clients acting for a person: user grants only.
    let mut allowed_grants = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
    match cfg.oauth.registration {
        RegistrationPolicy::Off => {
            return fail(Error::new(
                Kind::RegistrationDisabled,
                "dynamic client registration is disabled on this server",
            ));
        }
        RegistrationPolicy::Token => {
            // Rate-limited before the token check too: guesses at the
            // initial access token count against the same allowance.
            if let Err(e) = registration_rate(&state, &req, &cfg) {
                return fail(e);
            }
            let presented = authorization(&req).and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
            let ok = cfg
                .oauth
                .initial_access_token
                .as_ref()
                .is_some_and(|t| random::secure_eq(presented.as_bytes(), t.expose().as_bytes()));
            if !ok {
                let e = Error::new(Kind::InvalidToken, "an initial access token is required (Authorization: Bearer …)");
                denied(&state, &e, "client registration failed", None, None);
                return cors(error_json(&e, false));
            }
            allowed_grants.clone_from(&cfg.oauth.initial_access_token_grant_types);
        }
        RegistrationPolicy::Open => {
            if let Err(e) = registration_rate(&state, &req, &cfg) {
                return fail(e);
            }
        }
    }
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return fail(Error::new(
            Kind::InvalidClientMetadata,
            "expected Content-Type: application/json (RFC 7591 §3.1)",
        ));
    }
    if body.len() > 64 * 1024 {
        return fail(Error::new(Kind::InvalidClientMetadata, "registration request larger than 64 KiB"));
    }
    if cfg.oauth.registration_max_clients > 0 {
        match rows::count_clients(&state.deps.db, Source::Dcr).await {
            Ok(n) if n >= cfg.oauth.registration_max_clients => {
                tracing::warn!(clients = n, "dynamic registration refused: oauth.registration_max_clients reached");
                return fail(
                    Error::new(
                        Kind::RateLimited,
                        "this server holds the most dynamically registered clients it keeps; retry later",
                    )
                    .retry_after(3600),
                );
            }
            Ok(_) => {}
            Err(e) => return fail(e.into()),
        }
    }
    let request: register::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return fail(Error::new(Kind::InvalidClientMetadata, format!("invalid JSON: {e}"))),
    };
    let client_id = random::id("dcr_");
    let secret = || {
        let s = random::secret_token();
        let d = random::sha256_hex(s.as_bytes());
        Some((s, d))
    };
    let (client, extras, mut response, secret) = match register::validate(request, &allowed_grants, client_id, secret) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let registry = state.deps.registry.get();
    if let Some(r) = client.allowed_resources.iter().find(|r| !registry.resources.iter().any(|x| &x.resource == *r)) {
        return fail(Error::new(Kind::InvalidTarget, format!("allowed_resources: {r} is not a registered resource")));
    }
    let ids = ids(&req);
    let stored = async {
        let txn = state.deps.db.begin().await?;
        rows::insert_client(&txn, &client, Source::Dcr, now, Some(&extras)).await?;
        audit::record(
            &txn,
            clock::now_ms(),
            AuditEvent {
                event_type: "client_registered",
                outcome: "success",
                client_id: Some(client.client_id.clone()),
                request_id: ids.request_id.clone(),
                trace_id: ids.trace_id.clone(),
                detail: serde_json::json!({"via": "dcr", "client_name": client.client_name, "token_endpoint_auth_method": client.token_endpoint_auth_method.as_str(), "redirect_uris": client.redirect_uris}),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok::<(), crate::store::StoreError>(())
    }
    .await;
    if let Err(e) = stored {
        return fail(e.into());
    }
    response.client_id_issued_at = now;
    response.client_secret = secret;
    tracing::info!(client_id = %client.client_id, method = client.token_endpoint_auth_method.as_str(), "client registered");
    cors(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(response))
}

/// `limits.registrations_per_minute` for the caller's address.
fn registration_rate(state: &AppState, req: &HttpRequest, cfg: &authplane_core::config::Config) -> Result<(), Error> {
    state.registration_rate.check(client_addr(state, req), cfg.limits.registrations_per_minute).map_err(|secs| {
        Error::new(Kind::RateLimited, "too many registrations from this address; register once and keep the client id")
            .retry_after(secs)
    })
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
