//! Resource indicators (RFC 8707) in canonical form.
//!
//! Clients send the same resource in several spellings (MCP-CLIENTS.md quirk 3:
//! a trailing slash on a bare origin, upper-case hosts, explicit default ports).
//! Everything that compares or stores a resource goes through [`ResourceUri`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// A canonical resource URI: absolute `http`/`https`, scheme and host
/// lower-cased, default port dropped, no fragment, one trailing slash removed
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
        // Only one trailing slash is ignored; the path is otherwise kept as is.
        assert_eq!(canon("https://x.test/a//"), "https://x.test/a/");
        assert_eq!(canon("https://x.test/MCP"), "https://x.test/MCP");
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
