//! Resource indicators (RFC 8707) in canonical form.
//!
//! Clients send the same resource in several spellings (MCP-CLIENTS.md quirk 3:
//! a trailing slash on a bare origin, upper-case hosts, explicit default ports).
//! Everything that compares or stores a resource goes through [`ResourceUri`].
//!
//! # The audience rule
//!
//! Written down once, here, and used on both sides: the AS canonicalises the
//! `resource` parameter (RFC 8707 §2) with [`ResourceUri::parse`] and writes
//! that canonical string into `aud`; a resource server (the SDK) accepts a
//! token when one `aud` value [`ResourceUri::is_same_resource`] as its own
//! canonical URI. Two spellings name the same resource when their canonical
//! forms are equal, and the canonical form is the WHATWG URL parse (the `url`
//! crate) of the input, then:
//!
//! | spelling | canonical | why |
//! |---|---|---|
//! | `HTTP://x.test/mcp`, `http://X.TEST/mcp`, `http://LOCALHOST:8080/mcp` | `http://x.test/mcp`, `http://localhost:8080/mcp` | scheme and host are case-insensitive (RFC 3986 §6.2.2.1) |
//! | `https://x.test:443/mcp`, `http://x.test:80/mcp` | port dropped | default port (RFC 3986 §6.2.3) |
//! | `https://x.test/mcp/`, `https://x.test/` | `https://x.test/mcp`, `https://x.test` | one trailing slash: clients and SDKs add one to a bare origin (MCP-CLIENTS.md quirk 3; MCP: canonical URI has no trailing slash) |
//! | `https://x.test/./mcp`, `https://x.test/a/../mcp` | `https://x.test/mcp` | dot segments removed (RFC 3986 §5.2.4) |
//! | `  https://x.test/mcp ` | `https://x.test/mcp` | leading and trailing spaces and C0 controls stripped (WHATWG URL) |
//! | `https://x.test/%7Emcp` | kept as is | percent-encoding is not decoded: `%7E` and `~` stay different (conservative) |
//! | `https://x.test/MCP` | kept as is | the path is case-sensitive |
//! | `https://x.test/mcp//` | refused | one trailing slash is ignored, two are an error: keeping one would give a canonical form that is not canonical again (`…/mcp/` parses to `…/mcp`, another resource; found by `fuzz/` `resource_uri`), removing both would widen |
//!
//! Anything else differs: another scheme, host, port, path or query. A
//! fragment or user information is refused outright (RFC 8707 §2), so no
//! token can name such an audience. The point of accepting the spellings above
//! is that every one of them denotes the same server endpoint, so a client
//! that sent one of them asked for exactly this resource; nothing else is
//! widened.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// A canonical resource URI: absolute `http`/`https`, scheme and host
/// lower-cased, default port dropped, no fragment, one trailing slash removed
/// (and two refused)
/// (so a bare origin has no path at all).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceUri(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceUriError {
    #[error("'{0}' is not an absolute URI")]
    NotAbsolute(String),
    #[error("'{0}' must use https (or http on a loopback host)")]
    Scheme(String),
    #[error("'{0}' must not contain a fragment (RFC 8707 §2)")]
    Fragment(String),
    #[error("'{0}' must not contain user information")]
    UserInfo(String),
    #[error("'{0}' ends in more than one '/'; at most one trailing slash is ignored")]
    TrailingSlashes(String),
}

impl ResourceUri {
    pub fn parse(input: &str) -> Result<Self, ResourceUriError> {
        let url = Url::parse(input).map_err(|_| ResourceUriError::NotAbsolute(input.to_owned()))?;
        match url.scheme() {
            "https" => {}
            "http" => {}
            _ => return Err(ResourceUriError::Scheme(input.to_owned())),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ResourceUriError::NotAbsolute(input.to_owned()));
        }
        if url.fragment().is_some() {
            return Err(ResourceUriError::Fragment(input.to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ResourceUriError::UserInfo(input.to_owned()));
        }
        // `Url` has already lower-cased scheme and host and dropped a default port.
        let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        if let Some(port) = url.port() {
            out.push(':');
            out.push_str(&port.to_string());
        }
        let path = url.path();
        let path = path.strip_suffix('/').unwrap_or(path);
        // The canonical form must parse to itself: with a second slash left
        // over it would not (`/a/` names `/a`).
        if path.ends_with('/') {
            return Err(ResourceUriError::TrailingSlashes(input.to_owned()));
        }
        out.push_str(path);
        if let Some(q) = url.query() {
            out.push('?');
            out.push_str(q);
        }
        Ok(ResourceUri(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The audience rule (see the module documentation): true when `other`
    /// (an `aud` value, a `resource` parameter) is a spelling of this
    /// resource. An exact string match is tried first, since the AS writes
    /// the canonical form.
    pub fn is_same_resource(&self, other: &str) -> bool {
        other == self.0 || ResourceUri::parse(other).is_ok_and(|o| o.0 == self.0)
    }

    /// True for `http` on a loopback host, the only place plain HTTP is allowed.
    pub fn is_insecure_http(&self) -> bool {
        self.0.starts_with("http://") && !crate::redirect::is_loopback_http(&self.0)
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for ResourceUri {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ResourceUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ResourceUri::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        ResourceUri::parse(s).unwrap().to_string()
    }

    #[test]
    fn canonicalises_the_spellings_clients_send() {
        assert_eq!(canon("https://MCP.Example.com/mcp"), "https://mcp.example.com/mcp");
        assert_eq!(canon("https://mcp.example.com:443/mcp/"), "https://mcp.example.com/mcp");
        assert_eq!(canon("HTTPS://mcp.example.com/"), "https://mcp.example.com");
        assert_eq!(canon("https://mcp.example.com"), "https://mcp.example.com");
        assert_eq!(canon("http://localhost:8080/mcp"), "http://localhost:8080/mcp");
        assert_eq!(canon("http://localhost:80/mcp"), "http://localhost/mcp");
        // Only one trailing slash is ignored; two are refused (the canonical
        // form parses to itself); the path is otherwise kept as is.
        assert!(matches!(ResourceUri::parse("https://x.test/a//"), Err(ResourceUriError::TrailingSlashes(_))));
        assert!(matches!(ResourceUri::parse("http:ht//"), Err(ResourceUriError::TrailingSlashes(_))));
        assert_eq!(canon("https://x.test/a/?q=/"), "https://x.test/a?q=/");
        assert_eq!(canon("https://x.test/MCP"), "https://x.test/MCP");
    }

    #[test]
    fn the_audience_rule_as_documented() {
        let r = ResourceUri::parse("http://localhost:8080/mcp").unwrap();
        for same in [
            "http://localhost:8080/mcp",
            "http://localhost:8080/mcp/",
            "http://LOCALHOST:8080/mcp",
            "HTTP://localhost:8080/mcp",
            "http://localhost:8080/./mcp",
            "http://localhost:8080/a/../mcp",
            "  http://localhost:8080/mcp ",
            "\thttp://localhost:8080/mcp\n",
        ] {
            assert!(r.is_same_resource(same), "{same:?} should be the same resource");
        }
        for other in [
            "https://localhost:8080/mcp",
            "http://localhost:8081/mcp",
            "http://localhost/mcp",
            "http://127.0.0.1:8080/mcp",
            "http://localhost:8080/MCP",
            "http://localhost:8080/mcp//",
            "http://localhost:8080/mcp?x=1",
            "http://localhost:8080/mcp#f",
            "http://u@localhost:8080/mcp",
            "http://localhost:8080/%6Dcp",
            "http://localhost:8080",
            "localhost:8080/mcp",
            "",
        ] {
            assert!(!r.is_same_resource(other), "{other:?} should be another resource");
        }
        let https = ResourceUri::parse("https://mcp.example.com").unwrap();
        assert!(https.is_same_resource("https://MCP.example.com:443/"));
    }

    #[test]
    fn refuses_what_rfc_8707_forbids() {
        assert!(matches!(ResourceUri::parse("https://x.test/mcp#frag"), Err(ResourceUriError::Fragment(_))));
        assert!(matches!(ResourceUri::parse("/mcp"), Err(ResourceUriError::NotAbsolute(_))));
        assert!(matches!(ResourceUri::parse("ftp://x.test/"), Err(ResourceUriError::Scheme(_))));
        assert!(matches!(ResourceUri::parse("https://u:p@x.test/"), Err(ResourceUriError::UserInfo(_))));
    }

    #[test]
    fn knows_insecure_http() {
        assert!(ResourceUri::parse("http://mcp.example.com/mcp").unwrap().is_insecure_http());
        assert!(!ResourceUri::parse("http://127.0.0.1:8080/mcp").unwrap().is_insecure_http());
        assert!(!ResourceUri::parse("https://mcp.example.com").unwrap().is_insecure_http());
    }
}
