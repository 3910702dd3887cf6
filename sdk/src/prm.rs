//! Protected Resource Metadata (RFC 9728): the document an MCP client fetches
//! after its first 401 to learn which authorization server to use.

use crate::ProtectedResource;

/// The document type and its well-known suffix are in `authplane-core`, shared
/// with the server's doctor.
pub use authplane_core::metadata::{PRM_WELL_KNOWN, ProtectedResourceMetadata};

/// A framework-neutral HTTP answer; the axum and actix adapters turn it into
/// their response types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrmResponse {
    pub status: http::StatusCode,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body: bytes::Bytes,
}

/// Answers a request for the PRM document: `GET`/`HEAD` get the JSON, an
/// `OPTIONS` preflight gets the CORS headers, anything else 405. The document
/// is public and carries no credentials, so any origin may read it.
pub fn respond(resource: &ProtectedResource, method: &http::Method) -> PrmResponse {
    use http::header::{
        ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_TYPE,
    };
    use http::{HeaderValue, Method, StatusCode};

    let mut headers = vec![
        (ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
        (ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS")),
    ];
    match *method {
        Method::GET | Method::HEAD => {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
            headers.push((CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")));
            let body = serde_json::to_vec(&resource.metadata()).unwrap_or_default();
            let body = if *method == Method::HEAD { bytes::Bytes::new() } else { bytes::Bytes::from(body) };
            PrmResponse { status: StatusCode::OK, headers, body }
        }
        Method::OPTIONS => {
            headers.push((ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*, mcp-protocol-version")));
            headers.push((ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400")));
            PrmResponse { status: StatusCode::NO_CONTENT, headers, body: bytes::Bytes::new() }
        }
        _ => {
            headers.push((ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS")));
            PrmResponse { status: StatusCode::METHOD_NOT_ALLOWED, headers, body: bytes::Bytes::new() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_fields_clients_read() {
        let r = ProtectedResource::new("http://localhost:8080/mcp", "http://localhost:9000")
            .unwrap()
            .with_scopes(["tools/read", "tools/write"])
            .unwrap()
            .with_resource_name("Example MCP server");
        let res = respond(&r, &http::Method::GET);
        assert_eq!(res.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "resource": "http://localhost:8080/mcp",
                "authorization_servers": ["http://localhost:9000"],
                "scopes_supported": ["tools/read", "tools/write"],
                "bearer_methods_supported": ["header"],
                "resource_name": "Example MCP server",
                "dpop_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "Ed25519", "RS256", "PS256"],
            })
        );
        let required = r.clone().with_dpop_required(true);
        let v: serde_json::Value = serde_json::from_slice(&respond(&required, &http::Method::GET).body).unwrap();
        assert_eq!(v["dpop_bound_access_tokens_required"], true);
        assert!(res.headers.iter().any(|(k, v)| k == "access-control-allow-origin" && v == "*"));
        assert_eq!(respond(&r, &http::Method::OPTIONS).status, 204);
        assert_eq!(respond(&r, &http::Method::POST).status, 405);
    }
}
