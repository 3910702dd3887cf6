//! The public listener (:9000): health, discovery, JWKS.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use authplane_core::metadata::{AuthorizationServerMetadata, well_known_paths};

use actix_web::http::Method;

use super::{oauth, ui};
use crate::clock;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/.well-known/oauth-authorization-server", web::route().to(fallback))
        .route("/.well-known/openid-configuration", web::route().to(fallback))
        .route("/.well-known/jwks.json", web::get().to(jwks))
        .route("/.well-known/jwks.json", web::method(actix_web::http::Method::OPTIONS).to(preflight))
        .route("/oauth/authorize", web::get().to(ui::authorize))
        .route("/oauth/authorize", web::post().to(ui::authorize))
        .route("/oauth/token", web::post().to(oauth::token))
        .route("/oauth/token", web::method(Method::OPTIONS).to(oauth::preflight))
        .route("/oauth/register", web::post().to(oauth::register))
        .route("/oauth/register", web::method(Method::OPTIONS).to(oauth::preflight))
        .route("/oauth/revoke", web::post().to(oauth::revoke_endpoint))
        .route("/oauth/revoke", web::method(Method::OPTIONS).to(oauth::preflight))
        .route("/oauth/introspect", web::post().to(oauth::introspect_endpoint))
        .route("/ui/login", web::get().to(ui::login_page))
        .route("/ui/login", web::post().to(ui::login_submit))
        .route("/ui/consent", web::get().to(ui::consent_page))
        .route("/ui/consent", web::post().to(ui::consent_submit))
        .route("/ui/upstream/{id}/start", web::get().to(ui::upstream_start))
        .route("/ui/upstream/{id}/callback", web::get().to(ui::upstream_callback))
        .route("/ui/static/authplane.css", web::get().to(ui::css))
        .default_service(web::to(fallback));
}

/// `{"status":"ok","time":…,"db":"ok"}`, or 503 `degraded` / `db: error`.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let ok = state.db_healthy().await;
    #[derive(serde::Serialize)]
    struct Health {
        status: &'static str,
        time: String,
        db: &'static str,
    }
    let body = Health {
        status: if ok { "ok" } else { "degraded" },
        time: clock::rfc3339(clock::now()),
        db: if ok { "ok" } else { "error" },
    };
    let mut res = if ok { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    res.insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

pub fn metadata(state: &AppState) -> AuthorizationServerMetadata {
    let cfg = state.deps.config.load();
    let issuer = cfg.server.issuer.clone();
    // Exactly the resources' scopes (checklist step 3); `offline_access` is
    // understood on requests but not advertised (MCP 2026-07-28 clients then
    // do not add it to challenges).
    let scopes_supported = state.deps.resources.get().scopes_supported.clone();
    let auth_methods =
        || Some(vec!["client_secret_basic".to_owned(), "client_secret_post".to_owned(), "none".to_owned()]);
    use authplane_core::config::RegistrationPolicy;
    AuthorizationServerMetadata {
        authorization_endpoint: Some(format!("{issuer}/oauth/authorize")),
        token_endpoint: Some(format!("{issuer}/oauth/token")),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        registration_endpoint: (cfg.oauth.registration != RegistrationPolicy::Off)
            .then(|| format!("{issuer}/oauth/register")),
        scopes_supported,
        response_types_supported: vec!["code".into()],
        response_modes_supported: Some(vec!["query".into()]),
        grant_types_supported: Some({
            let mut g: Vec<String> =
                vec!["authorization_code".into(), "refresh_token".into(), "client_credentials".into()];
            // RFC 8693, when some upstream keeps tokens for the broker.
            if cfg.upstreams.iter().any(|u| u.store_tokens) {
                g.push(crate::oauth::broker::GRANT_TYPE.into());
            }
            g
        }),
        token_endpoint_auth_methods_supported: auth_methods(),
        revocation_endpoint: Some(format!("{issuer}/oauth/revoke")),
        revocation_endpoint_auth_methods_supported: auth_methods(),
        introspection_endpoint: Some(format!("{issuer}/oauth/introspect")),
        introspection_endpoint_auth_methods_supported: Some(vec![
            "client_secret_basic".to_owned(),
            "client_secret_post".to_owned(),
        ]),
        code_challenge_methods_supported: Some(vec!["S256".into()]),
        authorization_response_iss_parameter_supported: Some(true),
        client_id_metadata_document_supported: Some(cfg.oauth.client_id_metadata_documents),
        resource_indicators_supported: Some(true),
        issuer,
        dpop_signing_alg_values_supported: Some(
            authplane_core::dpop::SUPPORTED_ALGS.iter().map(|a| (*a).to_owned()).collect(),
        ),
    }
}

fn with_cors(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

/// CORS preflight for the discovery documents (browser-based MCP clients).
async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "*"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}

async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let body = state.deps.keys.jwks(clock::now());
    with_cors(
        HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .content_type("application/json")
            .body(body.to_string()),
    )
}

/// Metadata lives at paths that depend on the issuer's path (RFC 8414 §3,
/// OIDC discovery, and the root forms clients probe anyway), and the issuer
/// can change on config reload, so they are matched here rather than routed.
async fn fallback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let issuer_path = {
        let cfg = state.deps.config.load();
        url::Url::parse(&cfg.server.issuer).map(|u| u.path().to_owned()).unwrap_or_default()
    };
    let path = req.path();
    if path.contains("/.well-known/") && well_known_paths(&issuer_path).iter().any(|p| p == path) {
        return match *req.method() {
            actix_web::http::Method::GET | actix_web::http::Method::HEAD => with_cors(
                HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=60")).json(metadata(&state)),
            ),
            actix_web::http::Method::OPTIONS => preflight().await,
            _ => HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, "GET, HEAD, OPTIONS")).finish(),
        };
    }
    HttpResponse::NotFound()
        .json(serde_json::json!({"error": "not_found", "error_description": format!("no such endpoint: {path}")}))
}
