//! CORS for browser-based MCP clients (the Inspector, web apps;
//! MCP-CLIENTS.md quirk 8). A preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) never carries a token (Fetch standard), so
//! the bearer-auth middleware answers it itself, before any token check;
//! other answers — 401 and 403 included — get the headers a page needs to
//! read them (`WWW-Authenticate`, `Mcp-Session-Id`).
//!
//! Why not `tower-http`'s `CorsLayer` or `actix-cors`: the preflight must be
//! answered in front of the bearer check in both frameworks with the same
//! MCP header list, and the rules are these few lines; one policy type
//! serves both adapters.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, VARY,
};
use http::{HeaderName, HeaderValue, StatusCode};

/// Request headers an MCP client sends (streamable HTTP transport).
const ALLOW_HEADERS: &str = "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id";
/// Response headers an MCP client must read.
const EXPOSE_HEADERS: &str = "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// Which origins may call the MCP endpoint from a browser.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Origins,
    max_age: u32,
}

#[derive(Debug, Clone)]
enum Origins {
    Any,
    List(Vec<String>),
}

impl Cors {
    /// Any origin. Safe for a bearer-token API: the token is not a cookie,
    /// so a page can only use a token it already holds.
    pub fn any_origin() -> Self {
        Cors { origins: Origins::Any, max_age: 600 }
    }

    /// Only these origins (`scheme://host[:port]`, compared exactly).
    pub fn allow_origins<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cors { origins: Origins::List(origins.into_iter().map(Into::into).collect()), max_age: 600 }
    }

    /// How long a browser may cache a preflight answer (default 600 s).
    pub fn max_age(mut self, secs: u32) -> Self {
        self.max_age = secs;
        self
    }

    fn allow_origin(&self, origin: &[u8]) -> Option<HeaderValue> {
        match &self.origins {
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::List(list) => {
                list.iter().find(|o| o.as_bytes() == origin).and_then(|o| HeaderValue::from_str(o).ok())
            }
        }
    }

    /// The answer to a preflight from `origin`: 204, with the allow headers
    /// when the origin is allowed (without them the browser stops).
    pub(crate) fn preflight_parts(&self, origin: &[u8]) -> (StatusCode, Vec<(HeaderName, HeaderValue)>) {
        let mut h = vec![(VARY, HeaderValue::from_static("Origin"))];
        if let Some(o) = self.allow_origin(origin) {
            h.push((ACCESS_CONTROL_ALLOW_ORIGIN, o));
            h.push((ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS)));
            h.push((ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS)));
            h.push((ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age)));
        }
        (StatusCode::NO_CONTENT, h)
    }

    #[cfg(feature = "axum")]
    pub(crate) fn preflight<B: From<bytes::Bytes>>(&self, origin: &[u8]) -> http::Response<B> {
        let (status, headers) = self.preflight_parts(origin);
        let mut res = http::Response::new(B::from(bytes::Bytes::new()));
        *res.status_mut() = status;
        res.headers_mut().extend(headers);
        res
    }

    /// The headers for an actual (non-preflight) answer to `origin`.
    pub(crate) fn response_headers(&self, origin: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = vec![(VARY, HeaderValue::from_static("Origin"))];
        if let Some(o) = self.allow_origin(origin) {
            h.push((ACCESS_CONTROL_ALLOW_ORIGIN, o));
            h.push((ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS)));
        }
        h
    }

    #[cfg(feature = "axum")]
    pub(crate) fn decorate(&self, origin: &[u8], headers: &mut http::HeaderMap) {
        for (k, v) in self.response_headers(origin) {
            if k == VARY {
                headers.append(k, v);
            } else {
                headers.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(h: &'a [(HeaderName, HeaderValue)], k: &HeaderName) -> Option<&'a str> {
        h.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn preflights_name_the_mcp_headers() {
        let (status, h) = Cors::any_origin().preflight_parts(b"http://localhost:6274");
        assert_eq!(status, 204);
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        let allowed = get(&h, &ACCESS_CONTROL_ALLOW_HEADERS).unwrap();
        for name in ["authorization", "mcp-session-id", "mcp-protocol-version", "last-event-id"] {
            assert!(allowed.contains(name), "{name}");
        }
        assert!(get(&h, &ACCESS_CONTROL_ALLOW_METHODS).unwrap().contains("DELETE"));

        let list = Cors::allow_origins(["http://localhost:6274"]);
        assert_eq!(
            get(&list.preflight_parts(b"http://localhost:6274").1, &ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("http://localhost:6274")
        );
        let (_, other) = list.preflight_parts(b"http://evil.example");
        assert_eq!(get(&other, &ACCESS_CONTROL_ALLOW_ORIGIN), None);
        let r = list.response_headers(b"http://localhost:6274");
        assert_eq!(get(&r, &ACCESS_CONTROL_EXPOSE_HEADERS), Some(EXPOSE_HEADERS));
    }
}
