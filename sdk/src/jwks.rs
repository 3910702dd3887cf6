//! Fetching the AS metadata (RFC 8414) and its JWKS (RFC 7517), and turning
//! the JWKS into parsed ES256 keys. Network code is kept small and bounded:
//! timeouts, no redirects, size limits.

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use url::Url;

use crate::FetchError;

/// Metadata and JWKS documents larger than this are refused.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The HTTP client used for discovery and JWKS: short timeouts, no redirects
/// (the JWKS location comes from the issuer's own metadata, RFC 8414 §3.2).
pub fn default_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("authplane-sdk/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// The set of verification keys currently trusted, by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    pub keys: HashMap<String, ParsedPublicKey>,
}

impl KeySet {
    pub fn kids(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
}

/// Parses a JWKS, keeping the P-256 signing keys usable for ES256 and
/// reporting why any other key was skipped (an AS may publish keys for other
/// purposes; one odd key must not break verification with the others).
pub(crate) fn parse_jwks(body: &[u8], url: &str) -> Result<(KeySet, Vec<String>), FetchError> {
    let set: JwkSet =
        serde_json::from_slice(body).map_err(|e| FetchError::Json { url: url.into(), reason: e.to_string() })?;
    let mut keys = HashMap::with_capacity(set.keys.len());
    let mut skipped = Vec::new();
    for (i, jwk) in set.keys.into_iter().enumerate() {
        let name = jwk.kid.clone().unwrap_or_else(|| format!("#{i}"));
        match parse_jwk(jwk) {
            Ok((kid, key)) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(kid) {
                    slot.insert(key);
                } else {
                    skipped.push(format!("{name}: duplicate kid"));
                }
            }
            Err(why) => skipped.push(format!("{name}: {why}")),
        }
    }
    if keys.is_empty() {
        return Err(FetchError::NoUsableKeys { url: url.into() });
    }
    Ok((KeySet { keys }, skipped))
}

fn parse_jwk(jwk: Jwk) -> Result<(String, ParsedPublicKey), &'static str> {
    let kid = jwk.kid.filter(|k| !k.is_empty()).ok_or("no kid")?;
    if jwk.kty.as_deref() != Some("EC") || jwk.crv.as_deref() != Some("P-256") {
        return Err("not an EC P-256 key");
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("use is not sig");
    }
    if jwk.alg.as_deref().is_some_and(|a| a != "ES256") {
        return Err("alg is not ES256");
    }
    // SEC1 uncompressed point: 0x04 || X || Y, each coordinate 32 bytes.
    let mut point = [0u8; 65];
    point[0] = 0x04;
    let x = jwk.x.ok_or("no x")?;
    let y = jwk.y.ok_or("no y")?;
    match (URL_SAFE_NO_PAD.decode_slice(&x, &mut point[1..33]), URL_SAFE_NO_PAD.decode_slice(&y, &mut point[33..65])) {
        (Ok(32), Ok(32)) => {}
        _ => return Err("x or y is not a 32-byte base64url coordinate"),
    }
    let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(|_| "not a point on P-256")?;
    Ok((kid, key))
}

/// The authorization-server metadata members the SDK uses.
#[derive(Deserialize)]
struct AsMetadata {
    issuer: String,
    jwks_uri: String,
}

/// The RFC 8414 §3.1 metadata URL for `issuer`: the well-known path is
/// inserted between the host and the issuer's path.
pub(crate) fn metadata_urls(issuer: &str) -> Vec<Url> {
    let Ok(url) = Url::parse(issuer) else { return Vec::new() };
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    let mut out = Vec::with_capacity(2);
    if let Ok(u) = Url::parse(&format!("{origin}/.well-known/oauth-authorization-server{path}")) {
        out.push(u);
    }
    // OpenID Connect Discovery 1.0 §4: appended to the issuer.
    if let Ok(u) = Url::parse(&format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))) {
        out.push(u);
    }
    out
}

/// Discovers the JWKS URL: the first metadata URL that answers with a
/// document whose `issuer` is ours (RFC 8414 §3.3).
pub(crate) async fn discover_jwks_uri(
    http: &reqwest::Client,
    issuer: &str,
    explicit_metadata_url: Option<&Url>,
) -> Result<Url, FetchError> {
    let candidates = match explicit_metadata_url {
        Some(u) => vec![u.clone()],
        None => metadata_urls(issuer),
    };
    let mut last_err = FetchError::Http { url: issuer.into(), reason: "issuer is not a URL".into() };
    for url in candidates {
        match get_json::<AsMetadata>(http, &url).await {
            Ok(meta) => {
                if meta.issuer != issuer {
                    return Err(FetchError::IssuerMismatch {
                        url: url.to_string(),
                        got: meta.issuer,
                        expected: issuer.into(),
                    });
                }
                return Url::parse(&meta.jwks_uri).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or_else(
                    || FetchError::Json { url: url.to_string(), reason: "jwks_uri is not an http(s) URL".into() },
                );
            }
            // Only a missing document moves on to the next well-known form.
            Err(e @ FetchError::Status { status: 404, .. }) => last_err = e,
            Err(e) => return Err(e),
        }
    }
    Err(last_err)
}

/// Fetches and parses the JWKS.
pub(crate) async fn fetch_jwks(http: &reqwest::Client, url: &Url) -> Result<(KeySet, Vec<String>), FetchError> {
    let body = get_bytes(http, url).await?;
    parse_jwks(&body, url.as_str())
}

async fn get_json<T: for<'de> Deserialize<'de>>(http: &reqwest::Client, url: &Url) -> Result<T, FetchError> {
    let body = get_bytes(http, url).await?;
    serde_json::from_slice(&body).map_err(|e| FetchError::Json { url: url.to_string(), reason: e.to_string() })
}

async fn get_bytes(http: &reqwest::Client, url: &Url) -> Result<Vec<u8>, FetchError> {
    let u = || url.to_string();
    let mut res = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::Http { url: u(), reason: error_chain(&e) })?;
    if res.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status { url: u(), status: res.status().as_u16() });
    }
    if res.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return Err(FetchError::TooLarge { url: u(), limit: MAX_DOCUMENT_BYTES });
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| FetchError::Http { url: u(), reason: error_chain(&e) })? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::TooLarge { url: u(), limit: MAX_DOCUMENT_BYTES });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's top-level message is vague ("error sending request"); the
/// sources say why (connection refused, timeout, …).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real P-256 public key (RFC 7515 Appendix A.3).
    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn keeps_es256_keys_and_skips_others() {
        let body = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "good", "use": "sig", "alg": "ES256"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "noalg"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "enc", "use": "enc"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": X, "kid": "offcurve"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "good"},
        ]});
        let (set, skipped) = parse_jwks(&serde_json::to_vec(&body).unwrap(), "u").unwrap();
        assert_eq!(set.kids(), vec!["good", "noalg"]);
        assert_eq!(skipped.len(), 5, "{skipped:?}");
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        assert!(matches!(parse_jwks(br#"{"keys":[]}"#, "u"), Err(FetchError::NoUsableKeys { .. })));
        assert!(matches!(parse_jwks(b"[]", "u"), Err(FetchError::Json { .. })));
    }

    #[test]
    fn metadata_urls_follow_rfc_8414() {
        let s = |v: Vec<Url>| v.into_iter().map(|u| u.to_string()).collect::<Vec<_>>();
        assert_eq!(
            s(metadata_urls("http://localhost:9000")),
            [
                "http://localhost:9000/.well-known/oauth-authorization-server",
                "http://localhost:9000/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            s(metadata_urls("https://as.test/tenant-a")),
            [
                "https://as.test/.well-known/oauth-authorization-server/tenant-a",
                "https://as.test/tenant-a/.well-known/openid-configuration"
            ]
        );
    }
}
