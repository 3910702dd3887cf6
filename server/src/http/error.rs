//! The one place where errors become HTTP responses. JSON bodies follow the
//! RFC 6749 §5.2 shape (`error`, `error_description`) on every endpoint.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};

use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        ApiError { status, error, description: description.into() }
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
        match e {
            StoreError::Conflict(what) => ApiError::conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Db(e) => {
                tracing::error!(error = "ErrDatabase", detail = %crate::store::one_line(&e.to_string()), "database error");
                ApiError::unavailable("the database is unavailable; retry later")
            }
            StoreError::Corrupt(detail) => {
                tracing::error!(error = "ErrCorruptRow", %detail, "stored data cannot be read");
                ApiError::internal()
            }
        }
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
