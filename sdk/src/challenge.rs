//! The HTTP answers of a protected resource: 401 and 403 with
//! `WWW-Authenticate` (RFC 6750 §3, RFC 9728 §5.1), built once per resource
//! and rendered identically by the axum and actix adapters.

use http::header::{ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::{Claims, ProtectedResource, VerifyError};

/// Which `WWW-Authenticate` scheme a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    /// RFC 9449 §7.1.
    Dpop,
}

/// The parts of a challenge that depend only on the resource.
#[derive(Debug)]
pub struct Challenge {
    resource_metadata: String,
    default_scope: String,
    /// Bearer is not offered: only DPoP-bound tokens are accepted.
    dpop_required: bool,
    /// `algs` of the DPoP challenge (RFC 9449 §7.1).
    dpop_algs: String,
    /// `Retry-After` of a 503 when keys could not be had.
    retry_after: u32,
    /// Samples and counts the WARN lines of this resource's refusals (the
    /// verifier's and the middleware's alike).
    pub(crate) logs: crate::logs::LogSampler,
}

impl Challenge {
    pub(crate) fn new(resource: &ProtectedResource) -> Self {
        Challenge {
            resource_metadata: resource.metadata_url().to_owned(),
            default_scope: resource.default_scopes().join(" "),
            dpop_required: resource.dpop_required(),
            dpop_algs: authplane_core::dpop::SUPPORTED_ALGS.join(" "),
            retry_after: 30,
            logs: crate::logs::LogSampler::default(),
        }
    }

    pub(crate) fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after = secs;
        self
    }

    /// The challenges of a 401: `Bearer …` (unless DPoP is required) and
    /// `DPoP algs="…", …`; the error goes into the challenge of `scheme`
    /// (into DPoP's when Bearer is not offered).
    fn headers(&self, scope: &str, error: Option<(&str, &str)>, scheme: Scheme) -> Vec<HeaderValue> {
        let mut out = Vec::with_capacity(2);
        let error_on_dpop = scheme == Scheme::Dpop || self.dpop_required;
        if !self.dpop_required {
            out.push(self.header(Scheme::Bearer, scope, if error_on_dpop { None } else { error }));
        }
        out.push(self.header(Scheme::Dpop, scope, if error_on_dpop { error } else { None }));
        out
    }

    /// `Bearer resource_metadata="…", scope="…"[, error="…", error_description="…"]`,
    /// or `DPoP algs="…", resource_metadata="…", …`.
    fn header(&self, scheme: Scheme, scope: &str, error: Option<(&str, &str)>) -> HeaderValue {
        let mut v = String::with_capacity(160);
        match scheme {
            Scheme::Bearer => v.push_str("Bearer resource_metadata="),
            Scheme::Dpop => {
                v.push_str("DPoP algs=");
                push_quoted(&mut v, &self.dpop_algs);
                v.push_str(", resource_metadata=");
            }
        }
        push_quoted(&mut v, &self.resource_metadata);
        if !scope.is_empty() {
            v.push_str(", scope=");
            push_quoted(&mut v, scope);
        }
        if let Some((code, description)) = error {
            v.push_str(", error=");
            push_quoted(&mut v, code);
            v.push_str(", error_description=");
            push_quoted(&mut v, description);
        }
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// RFC 9110 §5.6.4 quoted-string; values outside visible ASCII are dropped
/// (RFC 6750 §3 allows none in `error_description` or `scope`).
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
}

/// An HTTP refusal: status, headers and a small JSON body
/// (`{"error":…,"error_description":…}`).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: bytes::Bytes,
    /// The stable error name (`ErrTokenExpired`, …) also used in the log line.
    pub err_name: &'static str,
}

impl Rejection {
    fn new(
        status: StatusCode,
        www_authenticate: Vec<HeaderValue>,
        code: &str,
        description: &str,
        err_name: &'static str,
    ) -> Self {
        let mut headers = Vec::with_capacity(6);
        if !www_authenticate.is_empty() {
            for w in www_authenticate {
                headers.push((WWW_AUTHENTICATE, w));
            }
            // Browser-based MCP clients must be able to read the challenge.
            headers.push((ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("WWW-Authenticate")));
        }
        headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        headers.push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
        let body = if code.is_empty() {
            serde_json::json!({"error": "unauthorized", "error_description": description})
        } else {
            serde_json::json!({"error": code, "error_description": description})
        };
        Rejection { status, headers, body: serde_json::to_vec(&body).unwrap_or_default().into(), err_name }
    }

    /// The first `WWW-Authenticate` value, if any.
    pub fn www_authenticate(&self) -> Option<&HeaderValue> {
        self.headers.iter().find(|(k, _)| k == WWW_AUTHENTICATE).map(|(_, v)| v)
    }

    /// Every `WWW-Authenticate` value (Bearer and DPoP challenges).
    pub fn www_authenticate_all(&self) -> impl Iterator<Item = &HeaderValue> {
        self.headers.iter().filter(|(k, _)| k == WWW_AUTHENTICATE).map(|(_, v)| v)
    }

    /// As an `http::Response` with any body type built from bytes.
    pub fn into_response<B: From<bytes::Bytes>>(self) -> http::Response<B> {
        let mut res = http::Response::new(B::from(self.body));
        *res.status_mut() = self.status;
        for (k, v) in self.headers {
            res.headers_mut().append(k, v);
        }
        res
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.err_name)
    }
}

/// 401 to a request without a bearer token: no `error` (RFC 6750 §3.1), just
/// where to find the metadata and which scopes to ask for.
pub(crate) fn missing_token(ch: &Challenge) -> Rejection {
    Rejection::new(
        StatusCode::UNAUTHORIZED,
        ch.headers(&ch.default_scope, None, Scheme::Bearer),
        "",
        if ch.dpop_required {
            "A DPoP-bound access token and a DPoP proof are required"
        } else {
            "A bearer access token is required"
        },
        "ErrMissingToken",
    )
}

/// 400 to a request with a malformed Authorization header (RFC 6750 §3.1).
pub(crate) fn invalid_request(ch: &Challenge, description: &'static str) -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        ch.headers(&ch.default_scope, Some(("invalid_request", description)), Scheme::Bearer),
        "invalid_request",
        description,
        "ErrInvalidRequest",
    )
}

/// 500 when a handler asks for claims on a route the middleware does not
/// protect: a wiring bug, reported loudly rather than treated as anonymous.
pub(crate) fn not_wired() -> Rejection {
    Rejection::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        vec![],
        "server_error",
        "Authentication middleware is not configured for this route",
        "ErrAuthNotWired",
    )
}

/// 404 for an MCP session that is not the caller's or does not exist: the
/// same status and body rmcp gives a session it does not have, so a caller
/// cannot tell another principal's session from none.
pub(crate) fn session_not_found() -> Rejection {
    Rejection {
        status: StatusCode::NOT_FOUND,
        headers: vec![
            (CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body: bytes::Bytes::from_static(b"Not Found: Session not found"),
        err_name: "ErrSessionNotFound",
    }
}

/// 503 when the session registry is full; the client may retry.
pub(crate) fn too_many_sessions(retry_after: u32) -> Rejection {
    let mut r = Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        vec![],
        "temporarily_unavailable",
        "Too many open sessions; retry later",
        "ErrSessionLimit",
    );
    r.headers.push((RETRY_AFTER, HeaderValue::from(retry_after)));
    r
}

/// 413 when a body that must be inspected for tool scopes is too large.
pub(crate) fn body_too_large() -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        vec![],
        "invalid_request",
        "The request body is too large",
        "ErrBodyTooLarge",
    )
}

/// 401 `invalid_token` (or `invalid_dpop_proof`) for a refused token, in
/// the challenge of the scheme it was presented with; 503 when keys could
/// not be had.
pub(crate) fn invalid_token(ch: &Challenge, e: &VerifyError, presented: Scheme) -> Rejection {
    if e.is_unavailable() {
        let mut r = Rejection::new(StatusCode::SERVICE_UNAVAILABLE, vec![], e.code(), e.description(), e.err_name());
        r.headers.push((RETRY_AFTER, HeaderValue::from(ch.retry_after)));
        return r;
    }
    let scheme = if e.is_dpop() { Scheme::Dpop } else { presented };
    Rejection::new(
        StatusCode::UNAUTHORIZED,
        ch.headers(&ch.default_scope, Some((e.code(), e.description())), scheme),
        e.code(),
        e.description(),
        e.err_name(),
    )
}

/// 403 `insufficient_scope` (RFC 6750 §3.1). The `scope` lists what the
/// token already has plus what is missing, so the client's step-up
/// authorization does not lose the scopes it holds (MCP step-up).
pub(crate) fn insufficient_scope(ch: Option<&Challenge>, claims: &Claims, required: &[&str]) -> Rejection {
    let mut scopes: Vec<&str> = claims.scope.iter().map(String::as_str).filter(|s| *s != "offline_access").collect();
    for r in required {
        if !scopes.contains(r) {
            scopes.push(r);
        }
    }
    let scope = scopes.join(" ");
    let description = "The access token lacks a scope this request needs";
    let scheme = if claims.dpop_jkt.is_some() { Scheme::Dpop } else { Scheme::Bearer };
    let header = match ch {
        Some(ch) => ch.header(scheme, &scope, Some(("insufficient_scope", description))),
        None => {
            let mut v = String::from("Bearer scope=");
            push_quoted(&mut v, &scope);
            v.push_str(", error=\"insufficient_scope\", error_description=");
            push_quoted(&mut v, description);
            HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
        }
    };
    Rejection::new(StatusCode::FORBIDDEN, vec![header], "insufficient_scope", description, "ErrInsufficientScope")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge() -> Challenge {
        let r = ProtectedResource::new("http://localhost:8080/mcp", "http://localhost:9000")
            .unwrap()
            .with_scopes(["tools/read", "tools/write"])
            .unwrap()
            .with_default_scopes(["tools/read"])
            .unwrap();
        Challenge::new(&r)
    }

    fn header(r: &Rejection) -> &str {
        r.www_authenticate().unwrap().to_str().unwrap()
    }

    #[test]
    fn missing_token_has_no_error() {
        let r = missing_token(&challenge());
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r),
            r#"Bearer resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp", scope="tools/read""#
        );
        assert!(r.headers.iter().any(|(k, v)| k == ACCESS_CONTROL_EXPOSE_HEADERS && v == "WWW-Authenticate"));
    }

    #[test]
    fn invalid_token_names_the_error() {
        let r = invalid_token(&challenge(), &VerifyError::BadSignature, Scheme::Bearer);
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r),
            "Bearer resource_metadata=\"http://localhost:8080/.well-known/oauth-protected-resource/mcp\", \
             scope=\"tools/read\", error=\"invalid_token\", error_description=\"The access token signature is invalid\""
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        for e in [
            VerifyError::KeysUnavailable("down".into()),
            VerifyError::KeysRefreshTimeout { timeout_ms: 2000 },
            VerifyError::KeysStale { age: 90_000, max_age: 86_400 },
        ] {
            let r = invalid_token(&challenge(), &e, Scheme::Bearer);
            assert_eq!(r.status, 503, "{e}");
            assert!(r.www_authenticate().is_none());
            assert!(r.headers.iter().any(|(k, v)| k == RETRY_AFTER && v == "30"), "{e}");
        }
    }

    fn all(r: &Rejection) -> Vec<&str> {
        r.www_authenticate_all().map(|v| v.to_str().unwrap()).collect()
    }

    #[test]
    fn dpop_is_offered_beside_bearer_and_alone_when_required() {
        let algs = "algs=\"ES256 ES384 EdDSA Ed25519 RS256 PS256\"";
        let r = missing_token(&challenge());
        let h = all(&r);
        assert_eq!(h.len(), 2);
        assert!(h[0].starts_with("Bearer resource_metadata="), "{h:?}");
        assert!(h[1].starts_with(&format!("DPoP {algs}, resource_metadata=")), "{h:?}");
        // A proof problem is reported in the DPoP challenge.
        let e = VerifyError::Dpop(authplane_core::dpop::DpopError::new(authplane_core::dpop::Reason::Ath, "x"));
        let h: Vec<String> =
            all(&invalid_token(&challenge(), &e, Scheme::Dpop)).into_iter().map(str::to_owned).collect();
        assert!(!h[0].contains("error="), "{h:?}");
        assert!(h[1].contains("error=\"invalid_dpop_proof\""), "{h:?}");

        let required = ProtectedResource::new("http://localhost:8080/mcp", "http://localhost:9000")
            .unwrap()
            .with_dpop_required(true);
        let ch = Challenge::new(&required);
        let r = invalid_token(&ch, &VerifyError::DpopRequired, Scheme::Bearer);
        let h = all(&r);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h[0].starts_with(&format!("DPoP {algs}")) && h[0].contains("error=\"invalid_token\""), "{h:?}");
    }

    #[test]
    fn quoting_escapes_and_drops() {
        let mut s = String::new();
        push_quoted(&mut s, "a\"b\\c\nd é");
        assert_eq!(s, r#""a\"b\\cd ""#);
    }
}
