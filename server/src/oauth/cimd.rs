//! Client ID Metadata Documents: an https `client_id` names a JSON document
//! describing the client. Fetched with the SSRF rules of ARCHITECTURE §3:
//! https only, no redirects, only public addresses (loopback only with
//! `oauth.cimd_allow_loopback`), 64 KiB, 5 s, cached.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use authplane_core::config::{ClientConfig, GrantType, OAuthConfig, TokenEndpointAuthMethod};
use authplane_core::redirect::RedirectUri;
use serde::Deserialize;

const MAX_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_TTL: i64 = 300;
const MAX_TTL: i64 = 86_400;

#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    pub client_id: String,
    #[serde(default)]
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// RFC 9449 §5.2.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
}

impl Document {
    pub fn into_client_config(self) -> ClientConfig {
        ClientConfig {
            client_id: self.client_id,
            client_name: self.client_name,
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            client_secret_sha256: None,
            redirect_uris: self.redirect_uris.iter().filter_map(|u| RedirectUri::parse(u).ok()).collect(),
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            allowed_resources: vec![],
            allowed_scopes: vec![],
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            broker_upstreams: vec![],
        }
    }
}

#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, (i64, Document)>>,
    /// Recent failures, so that `?n=1`, `?n=2`… cannot force a fetch per
    /// request for the same broken id.
    failures: Mutex<HashMap<String, i64>>,
}

/// Why a metadata document cannot be used. The detail of a fetch failure
/// (addresses, connection errors, status codes) goes to the log only: told to
/// the caller it would map the server's network for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// Over `limits.cimd_fetches_per_minute`; seconds to wait.
    RateLimited(u64),
    /// Not usable; the text is safe to show the caller.
    Unusable(String),
}

/// A fetch failure: `detail` for the log, and whether it may be shown.
#[derive(Debug)]
struct FetchError {
    detail: String,
    public: bool,
}

fn hidden(detail: impl Into<String>) -> FetchError {
    FetchError { detail: detail.into(), public: false }
}

fn shown(detail: impl Into<String>) -> FetchError {
    FetchError { detail: detail.into(), public: true }
}

impl From<String> for FetchError {
    fn from(detail: String) -> Self {
        hidden(detail)
    }
}

impl From<&str> for FetchError {
    fn from(detail: &str) -> Self {
        hidden(detail)
    }
}

const GENERIC: &str = "the client metadata document could not be fetched from its URL (https, a public address, 64 KiB, 5 s, no redirects)";

/// True for addresses a CIMD fetch must never reach (RFC 6890 special-use,
/// private, link-local, loopback unless allowed).
pub fn forbidden_ip(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                return !allow_loopback;
            }
            let o = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..=127).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..=19).contains(&o[1]))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                return !allow_loopback;
            }
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_ip(IpAddr::V4(v4), allow_loopback);
            }
            let s = v6.segments();
            v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[0] == 0x2001 && s[1] == 0x0db8
                // Addresses that embed or tunnel to an IPv4 address, which
                // could be a private one: IPv4-compatible ::a.b.c.d (::/96),
                // NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16,
                // Teredo 2001::/32; and the discard prefix 100::/64.
                || s[..6] == [0; 6]
                || (s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0; 4] || s[2] == 1))
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0)
                || (s[0] == 0x100 && s[1..4] == [0; 3])
        }
    }
}

impl Cache {
    /// The client behind `client_id`, from the cache or fetched. `rate` is
    /// asked only when a fetch is about to happen.
    pub async fn resolve(
        &self,
        client_id: &str,
        cfg: &OAuthConfig,
        failure_ttl: i64,
        now: i64,
        rate: impl FnOnce() -> Result<(), u64>,
    ) -> Result<Document, ResolveError> {
        if let Some((exp, c)) = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(client_id)
            && *exp > now
        {
            return Ok(c.clone());
        }
        let failed_recently = {
            let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            map.get(client_id).is_some_and(|exp| *exp > now)
        };
        if failed_recently {
            return Err(ResolveError::Unusable(format!("{GENERIC}; it failed recently, retry later")));
        }
        rate().map_err(ResolveError::RateLimited)?;
        let (doc, ttl) = match fetch(client_id, cfg.cimd_allow_loopback).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(client_id, detail = %e.detail, "client metadata document refused");
                if failure_ttl > 0 {
                    let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
                    if map.len() > 10_000 {
                        map.retain(|_, exp| *exp > now);
                    }
                    if map.len() <= 10_000 {
                        map.insert(client_id.to_owned(), now + failure_ttl);
                    }
                }
                return Err(ResolveError::Unusable(if e.public { e.detail } else { GENERIC.to_owned() }));
            }
        };
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (exp, _)| *exp > now);
        }
        map.insert(client_id.to_owned(), (now + ttl, doc.clone()));
        Ok(doc)
    }
}

/// A CLIENT span in the request's trace. The client's host is a third party:
/// no `traceparent` goes out with the request.
#[tracing::instrument(name = "cimd.fetch", level = "debug", skip_all, fields(authplane.layer = "service", otel.kind = "client", url.full = %client_id))]
async fn fetch(client_id: &str, allow_loopback: bool) -> Result<(Document, i64), FetchError> {
    let url = url::Url::parse(client_id).map_err(|_| shown("the client_id is not a URL"))?;
    let loopback_http = allow_loopback && url.scheme() == "http";
    if url.scheme() != "https" && !loopback_http {
        return Err(shown("the client_id must be an https URL"));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(shown("the client_id must not contain a fragment or user information"));
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(shown("the client_id URL must have a path"));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    // An IP literal (IPv6 in brackets included) is checked as it is; a name is
    // resolved once, every address checked, and the connection pinned to a
    // checked one so that DNS cannot rebind between the check and the fetch.
    let (host, addrs): (String, Vec<SocketAddr>) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Some(url::Host::Ipv6(ip)) => (format!("[{ip}]"), vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(url::Host::Domain(d)) => {
            let addrs = tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((d, port)))
                .await
                .map_err(|_| "DNS lookup timed out".to_owned())?
                .map_err(|e| format!("DNS lookup failed: {e}"))?
                .collect();
            (d.to_owned(), addrs)
        }
        None => return Err(shown("the client_id URL has no host")),
    };
    let Some(addr) = addrs.first().copied() else { return Err("host has no address".into()) };
    if let Some(bad) = addrs.iter().find(|a| forbidden_ip(a.ip(), allow_loopback)) {
        return Err(hidden(format!("host resolves to a forbidden address {}", bad.ip())));
    }
    if loopback_http && !addr.ip().is_loopback() {
        return Err("http is allowed only for loopback hosts".into());
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .resolve(&host, addr)
        .build()
        .map_err(|e| e.to_string())?;
    let mut res = http
        .get(url.clone())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("fetch failed: {e}"))?;
    if !res.status().is_success() {
        return Err(hidden(format!("fetch answered {}", res.status().as_u16())));
    }
    let max_age = max_age(res.headers().get("cache-control").and_then(|v| v.to_str().ok()));
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| format!("fetch failed: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BYTES {
            return Err("document larger than 64 KiB".into());
        }
    }
    // From here on the problem is in the document the client published:
    // safe, and useful, to tell.
    let doc = parse_document(&body, client_id).map_err(shown)?;
    Ok((doc, max_age))
}

/// `Cache-Control: max-age` of a document response, clamped to [60 s, 1 day];
/// 5 minutes when absent or unreadable.
pub fn max_age(cache_control: Option<&str>) -> i64 {
    cache_control
        .and_then(|v| v.split(',').find_map(|d| d.trim().strip_prefix("max-age=").and_then(|n| n.parse::<i64>().ok())))
        .unwrap_or(DEFAULT_TTL)
        .clamp(60, MAX_TTL)
}

/// The rules a fetched document must pass, on its bytes: a JSON client
/// metadata document naming `client_id` (its own URL), with registrable
/// redirect URIs and no client authentication. The error is safe to show the
/// client (it describes the document it published). Pure, so the fuzz
/// target (`fuzz/`) reaches it without a network.
pub fn parse_document(body: &[u8], client_id: &str) -> Result<Document, String> {
    let doc: Document = serde_json::from_slice(body)
        .map_err(|e| format!("not a client metadata document: {}", crate::store::one_line(&e.to_string())))?;
    if doc.client_id != client_id {
        return Err("client_id in the document differs from its URL".into());
    }
    if doc.redirect_uris.is_empty() {
        return Err("redirect_uris in the document is empty".into());
    }
    for u in &doc.redirect_uris {
        RedirectUri::parse(u).map_err(|e| format!("redirect_uris in the document: {e}"))?;
    }
    match doc.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(_) => {
            return Err(
                "token_endpoint_auth_method in the document is not supported for metadata-document clients (use none)"
                    .into(),
            );
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "::10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:a00:1::1",
            "2001:0:4136:e378::1",
            "100::1",
        ] {
            assert!(forbidden_ip(ip.parse().unwrap(), false), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(!forbidden_ip(ip.parse().unwrap(), false), "{ip}");
        }
        assert!(!forbidden_ip("127.0.0.1".parse().unwrap(), true));
        assert!(forbidden_ip("10.0.0.1".parse().unwrap(), true), "allow_loopback allows loopback only");
    }
}
