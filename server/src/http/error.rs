//! The one place where errors become HTTP responses. JSON bodies follow the
//! RFC 6749 §5.2 shape (`error`, `error_description`) on every endpoint.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, CACHE_CONTROL, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use askama::Template;

use super::page::{issuer_host, page};
use super::request::ids;
use crate::oauth::error::{Error, Kind};
use crate::state::AppState;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// What failed underneath: its log name and detail, logged when the
    /// response is built; never sent.
    pub cause: Option<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        ApiError { status, error, description: description.into(), cause: None }
    }

    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", description)
    }

    pub fn conflict(description: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", description)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid admin API key (Authorization: Bearer $AUTHPLANE_ADMIN_API_KEY)",
        )
    }

    pub fn unavailable(description: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", description)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error; see the server log for this request_id",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some((name, detail)) = &self.cause {
            tracing::error!(error = *name, detail = %detail, "request failed: {}", self.description);
        }
        let mut b = HttpResponse::build(self.status);
        b.insert_header((CACHE_CONTROL, "no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            b.insert_header((WWW_AUTHENTICATE, "Bearer realm=\"authplane-admin\""));
        }
        b.json(serde_json::json!({"error": self.error, "error_description": self.description}))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let detail = crate::store::one_line(&e.to_string());
        match e {
            StoreError::Conflict(what) => ApiError::conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Db(_) => ApiError {
                cause: Some(("ErrDatabase", detail)),
                ..ApiError::unavailable("the database is unavailable; retry later")
            },
            StoreError::Corrupt(_) => ApiError { cause: Some(("ErrCorruptRow", detail)), ..ApiError::internal() },
        }
    }
}

/// A transaction's `begin`/`commit` in a handler.
impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        StoreError::from(e).into()
    }
}

impl From<authplane_core::config::ConfigError> for ApiError {
    fn from(e: authplane_core::config::ConfigError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// JSON bodies that do not parse, are too large or have the wrong type.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let api = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "request body larger than 64 KiB")
        }
        J::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "expected Content-Type: application/json",
        ),
        J::Deserialize(e) => ApiError::bad_request(format!("invalid JSON body: {e}")),
        other => ApiError::bad_request(format!("invalid JSON body: {other}")),
    };
    api.into()
}

/// Query strings that do not parse.
pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid query: {err}")).into()
}

/// Logs what failed underneath an OAuth error (a storage failure), once,
/// where the answer is built.
pub fn log_cause(e: &Error) {
    if let Some((name, detail)) = e.cause.as_deref() {
        tracing::error!(error = *name, detail = %detail, "storage failed during an OAuth request");
    }
}

/// RFC 6749 §5.2 JSON for `e`.
pub fn error_json(e: &Error, basic_auth_used: bool) -> HttpResponse {
    log_cause(e);
    let mut b = HttpResponse::build(StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST));
    b.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
    if let Some(secs) = e.retry_after {
        b.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    if e.kind == Kind::InvalidClient {
        // RFC 6749 §5.2: 401 with the scheme the client tried.
        b.insert_header((
            header::WWW_AUTHENTICATE,
            if basic_auth_used { "Basic realm=\"authplane\"" } else { "Bearer realm=\"authplane\"" },
        ));
    }
    if let Some(n) = &e.dpop_nonce {
        b.insert_header(("DPoP-Nonce", n.as_str()));
    }
    b.json(serde_json::json!({"error": e.kind.code(), "error_description": e.description}))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    issuer_host: &'a str,
    description: &'a str,
    code: &'a str,
    request_id: &'a str,
}

/// The HTML error page for a browser (an authorization request that cannot
/// be redirected back to the client, a login or consent failure).
pub fn error_page(state: &AppState, req: &HttpRequest, e: &Error) -> HttpResponse {
    log_cause(e);
    let rid = ids(req).request_id.unwrap_or_default();
    let html = ErrorPage {
        issuer_host: &issuer_host(state),
        description: &e.description,
        code: e.kind.code(),
        request_id: &rid,
    }
    .render()
    .unwrap_or_default();
    let status = if e.kind.status() >= 500 {
        StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        StatusCode::BAD_REQUEST
    };
    page(status, html)
}
