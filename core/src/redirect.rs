//! Redirect URIs: what may be registered (RFC 8252, RFC 9700 §2.1) and how a
//! requested URI matches a registered one.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::{Host, Url};

/// A redirect URI that passed the registration rules.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedirectUri(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectUriError {
    #[error("'{0}' is not an absolute URI")]
    NotAbsolute(String),
    #[error("'{0}' must not contain a fragment (RFC 6749 §3.1.2)")]
    Fragment(String),
    #[error("'{0}' must not contain a wildcard; register each URI exactly")]
    Wildcard(String),
    #[error(
        "'{0}' uses http on a non-loopback host; use https (http is allowed only for 127.0.0.1, [::1] and localhost, RFC 8252 §7.3)"
    )]
    InsecureHttp(String),
    #[error("'{0}' uses a scheme that can run code or read local data")]
    DangerousScheme(String),
    #[error("'{0}' must not contain user information")]
    UserInfo(String),
    #[error("'{0}' is longer than 2000 characters")]
    TooLong(String),
    #[error("'{0}' contains a control character, a space or a backslash")]
    BadCharacter(String),
    #[error("'{0}' is not in canonical form; register it as '{1}'")]
    NotCanonical(String, String),
    #[error(
        "'{0}' uses a network scheme that is not a redirect target (https, loopback http, or a private-use scheme)"
    )]
    UnsupportedScheme(String),
}

const DANGEROUS_SCHEMES: &[&str] = &["javascript", "data", "vbscript", "file", "about", "blob", "filesystem"];
/// Well-known network schemes that are neither https nor private-use (RFC
/// 8252 §7.1): a browser would hand them to another program or protocol.
const NETWORK_SCHEMES: &[&str] = &[
    "ftp",
    "ftps",
    "sftp",
    "ws",
    "wss",
    "gopher",
    "mailto",
    "tel",
    "sms",
    "news",
    "nntp",
    "telnet",
    "ssh",
    "smb",
    "ldap",
    "ldaps",
    "irc",
    "ircs",
    "git",
    "svn",
    "rtsp",
    "sip",
    "sips",
    "xmpp",
    "urn",
    "view-source",
    "chrome",
    "intent",
    "ms-settings",
];

impl RedirectUri {
    pub fn parse(input: &str) -> Result<Self, RedirectUriError> {
        let owned = || input.to_owned();
        if input.len() > 2000 {
            return Err(RedirectUriError::TooLong(input.chars().take(64).collect()));
        }
        if input.contains('*') {
            return Err(RedirectUriError::Wildcard(owned()));
        }
        if input.contains('#') {
            return Err(RedirectUriError::Fragment(owned()));
        }
        // Before parsing: the WHATWG parser silently drops tabs and newlines
        // and reads `\` as `/`, so what was checked would not be what a
        // browser is later sent to.
        if input.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
            return Err(RedirectUriError::BadCharacter(input.escape_default().to_string()));
        }
        let url = Url::parse(input).map_err(|_| RedirectUriError::NotAbsolute(owned()))?;
        let scheme = url.scheme();
        if DANGEROUS_SCHEMES.contains(&scheme) {
            return Err(RedirectUriError::DangerousScheme(owned()));
        }
        if NETWORK_SCHEMES.contains(&scheme) {
            return Err(RedirectUriError::UnsupportedScheme(owned()));
        }
        // Accepted input is canonical: exactly what the parser serialises
        // (a bare origin may omit the final `/`). This refuses `https:cb`,
        // upper-case hosts and schemes, raw non-ASCII hosts (which would go
        // out unencoded in `Location`), dot segments and the like.
        let canonical = url.as_str();
        let bare_origin = url.path() == "/" && url.query().is_none() && canonical.strip_suffix('/') == Some(input);
        if canonical != input && !bare_origin {
            return Err(RedirectUriError::NotCanonical(owned(), canonical.to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::UserInfo(owned()));
        }
        match scheme {
            "https" if url.host_str().is_none_or(str::is_empty) => return Err(RedirectUriError::NotAbsolute(owned())),
            "http" if !is_loopback_http(input) => return Err(RedirectUriError::InsecureHttp(owned())),
            // https with a host, loopback http, and private-use URI schemes
            // (RFC 8252 §7.1), e.g. `cursor://…`, `com.example.app:/cb`.
            _ => {}
        }
        Ok(RedirectUri(input.to_owned()))
    }

    /// A URI read back from our own storage: it passed the rules in force
    /// when it was registered, and a stricter rule added since must not make
    /// the stored client unreadable.
    pub fn stored(s: String) -> Self {
        RedirectUri(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `https` (any host) or loopback `http`: what a web application may
    /// register (OpenID Connect Registration §2 `application_type`).
    pub fn is_web(&self) -> bool {
        self.0.starts_with("https://") || is_loopback_http(&self.0)
    }

    /// RFC 9700 §4.1.3: exact string match, except that for a loopback `http`
    /// URI the port may differ (RFC 8252 §7.3: native apps pick a free port).
    pub fn matches(&self, requested: &str) -> bool {
        if self.0 == requested {
            return true;
        }
        if !is_loopback_http(&self.0) || !is_loopback_http(requested) {
            return false;
        }
        match (Url::parse(&self.0), Url::parse(requested)) {
            (Ok(a), Ok(b)) => {
                // Compare the raw strings with the port removed so that no
                // normalisation (`..`, `%2e`, case) can widen the match.
                strip_port(&self.0, &a) == strip_port(requested, &b)
            }
            _ => false,
        }
    }
}

/// Removes `:port` from the authority of an `http://host:port/...` string,
/// leaving every other byte as the client sent it.
fn strip_port(raw: &str, parsed: &Url) -> Option<String> {
    let rest = raw.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match parsed.port() {
        Some(p) => authority.strip_suffix(&format!(":{p}"))?,
        // An explicit `:80` is dropped by the parser; accept it on the raw side too.
        None => authority.strip_suffix(":80").unwrap_or(authority),
    };
    Some(format!("http://{host}{tail}"))
}

/// True for `http://127.0.0.1…`, `http://[::1]…` and `http://localhost…`.
pub fn is_loopback_http(uri: &str) -> bool {
    let Ok(url) = Url::parse(uri) else { return false };
    if url.scheme() != "http" {
        return false;
    }
    // Reject `http://127.0.0.1@evil.test/` and friends: no user info at all.
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match url.host() {
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        Some(Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for RedirectUri {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RedirectUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RedirectUri::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RedirectUri {
        RedirectUri::parse(s).unwrap()
    }

    #[test]
    fn registration_accepts_what_mcp_clients_use() {
        for ok in [
            "https://app.example.com/callback",
            "http://127.0.0.1:33418/",
            "http://localhost:6274/oauth/callback",
            "http://[::1]:8080/cb",
            "cursor://anysphere.cursor-retrieval/oauth/user-mcp/callback",
            "com.example.app:/oauth2redirect",
            "https://app.example.com",
            "https://xn--bcher-kva.example/cb",
        ] {
            assert!(RedirectUri::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn registration_refuses_the_dangerous_ones() {
        use RedirectUriError::*;
        type IsExpected = fn(&RedirectUriError) -> bool;
        let cases: &[(&str, IsExpected)] = &[
            ("javascript:alert(1)", |e| matches!(e, DangerousScheme(_))),
            ("data:text/html,hi", |e| matches!(e, DangerousScheme(_))),
            ("https://app.example.com/cb#frag", |e| matches!(e, Fragment(_))),
            ("https://*.example.com/cb", |e| matches!(e, Wildcard(_))),
            ("http://app.example.com/cb", |e| matches!(e, InsecureHttp(_))),
            ("http://127.0.0.1@evil.test/cb", |e| matches!(e, UserInfo(_))),
            ("https://user:pw@app.example.com/cb", |e| matches!(e, UserInfo(_))),
            ("/relative/cb", |e| matches!(e, NotAbsolute(_))),
            // Found by the black-box probe (issue 11, finding 5).
            ("https://app.example.com/c\rb", |e| matches!(e, BadCharacter(_))),
            ("https://app.example.com/c\nb", |e| matches!(e, BadCharacter(_))),
            ("https://app.example.com/c\0b", |e| matches!(e, BadCharacter(_))),
            ("https://app.example.com/c\u{7f}b", |e| matches!(e, BadCharacter(_))),
            ("https://good.com\\@evil.com/cb", |e| matches!(e, BadCharacter(_))),
            ("https://bücher.example/cb", |e| matches!(e, NotCanonical(..))),
            ("https:cb", |e| matches!(e, NotCanonical(..))),
            ("https://APP.example.com/cb", |e| matches!(e, NotCanonical(..))),
            ("https://app.example.com/a/../cb", |e| matches!(e, NotCanonical(..))),
            ("ftp://files.example.com/cb", |e| matches!(e, UnsupportedScheme(_))),
            ("ws://127.0.0.1/cb", |e| matches!(e, UnsupportedScheme(_))),
            ("wss://app.example.com/cb", |e| matches!(e, UnsupportedScheme(_))),
        ];
        for (input, want) in cases {
            let err = RedirectUri::parse(input).unwrap_err();
            assert!(want(&err), "{input}: got {err:?}");
        }
    }

    #[test]
    fn matching_is_exact_except_the_loopback_port() {
        let https = r("https://app.example.com/callback");
        assert!(https.matches("https://app.example.com/callback"));
        for bad in [
            "https://app.example.com/callback/",
            "https://APP.example.com/callback",
            "https://app.example.com/Callback",
            "https://app.example.com/callback/..;/",
            "https://app.example.com/callback?x=1",
            "https://app.example.com:8443/callback",
            "https://app.example.com@evil.test/callback",
            "https://app.example.com.evil.test/callback",
            "https://app.example.com/callback/extra",
        ] {
            assert!(!https.matches(bad), "{bad} must not match");
        }

        let loopback = r("http://127.0.0.1:33418/callback");
        assert!(loopback.matches("http://127.0.0.1:51000/callback"));
        assert!(loopback.matches("http://127.0.0.1/callback"));
        assert!(!loopback.matches("http://127.0.0.1:51000/callback/x"));
        assert!(!loopback.matches("http://localhost:51000/callback"), "hosts are not interchangeable");
        assert!(!loopback.matches("http://127.0.0.1:51000/%2e%2e/callback"));
        assert!(!loopback.matches("https://127.0.0.1:51000/callback"));

        let v6 = r("http://[::1]:1/cb");
        assert!(v6.matches("http://[::1]:2/cb"));
        let localhost = r("http://localhost/cb");
        assert!(localhost.matches("http://localhost:9999/cb"));
        assert!(!localhost.matches("http://localhost.evil.test:9999/cb"));
        // A bare loopback origin (found by the redirect_uri fuzz target,
        // which expected the canonical spelling to match as well): the raw
        // strings are compared without the port, so `:80` and any other
        // port match, and an added `/` does not — exact match, as registered.
        let bare = r("http://localhost:8");
        assert!(bare.matches("http://localhost:80"));
        assert!(bare.matches("http://localhost:51000"));
        assert!(bare.matches("http://localhost"));
        assert!(!bare.matches("http://localhost/"), "a path the registration does not have");
        assert!(!bare.matches("http://localhost:80/"));
    }
}
