//! Compact JWS parsing and the header rules of RFC 8725 and RFC 9068. Pure:
//! no keys, no time. The signature is checked by the caller with the key the
//! header's `kid` names, and only then is the payload parsed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::VerifyError;

/// Tokens longer than this are refused before any decoding (an AuthPlane
/// access token is well under 1 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A compact JWS whose header passed every rule.
#[derive(Debug)]
pub(crate) struct Jws<'a> {
    pub kid: String,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, what the signature covers.
    pub signing_input: &'a [u8],
    pub payload_b64: &'a str,
    /// The raw 64-byte `R || S` ES256 signature (RFC 7518 §3.4).
    pub signature: [u8; 64],
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    // RFC 8725 §3.10: never fetch or trust a key named by the token itself.
    jku: Option<IgnoredAny>,
    jwk: Option<IgnoredAny>,
    x5u: Option<IgnoredAny>,
    x5c: Option<IgnoredAny>,
    // RFC 7515 §4.1.11: we understand no extension, so any `crit` is fatal.
    crit: Option<IgnoredAny>,
}

pub(crate) fn parse(token: &str) -> Result<Jws<'_>, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed("token too long"));
    }
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(VerifyError::Malformed("expected three dot-separated parts"));
    };
    if h.is_empty() || p.is_empty() {
        return Err(VerifyError::Malformed("empty header or payload"));
    }
    let header_json = URL_SAFE_NO_PAD.decode(h).map_err(|_| VerifyError::Malformed("header is not base64url"))?;
    let header: Header =
        serde_json::from_slice(&header_json).map_err(|_| VerifyError::Malformed("header is not a JSON object"))?;

    // RFC 8725 §3.1: the algorithm is fixed; `none`, HS* (key confusion) and
    // anything else are refused before a key is even looked at.
    match header.alg.as_deref() {
        Some("ES256") => {}
        Some(other) => return Err(VerifyError::UnsupportedAlg(other.into())),
        None => return Err(VerifyError::UnsupportedAlg(String::new())),
    }
    for (present, name) in [
        (header.jku.is_some(), "jku"),
        (header.jwk.is_some(), "jwk"),
        (header.x5u.is_some(), "x5u"),
        (header.x5c.is_some(), "x5c"),
        (header.crit.is_some(), "crit"),
    ] {
        if present {
            return Err(VerifyError::ForbiddenHeader(name));
        }
    }
    // RFC 9068 §4: `at+jwt` (or its full media type); media types compare
    // case-insensitively (RFC 7515 §4.1.9). Missing typ is refused so an ID
    // token or another JWT from the same issuer cannot pass as an access token.
    let typ_ok = header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt"));
    if !typ_ok {
        return Err(VerifyError::WrongType(header.typ));
    }
    let kid = match header.kid {
        Some(k) if !k.is_empty() => k,
        _ => return Err(VerifyError::MissingKid),
    };

    let mut signature = [0u8; 64];
    match URL_SAFE_NO_PAD.decode_slice(s, &mut signature) {
        Ok(64) => {}
        _ => return Err(VerifyError::Malformed("signature is not a 64-byte base64url ES256 signature")),
    }
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    Ok(Jws { kid, signing_input, payload_b64: p, signature })
}

/// Decodes the payload; called only after the signature verified.
pub(crate) fn decode_payload(payload_b64: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| VerifyError::Malformed("payload is not base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(r#"{"sub":"u"}"#), URL_SAFE_NO_PAD.encode([7u8; 64]))
    }

    #[test]
    fn accepts_an_es256_at_jwt_header() {
        let t = token(r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#);
        let jws = parse(&t).unwrap();
        assert_eq!(jws.kid, "k1");
        assert_eq!(jws.signature, [7u8; 64]);
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
        assert!(parse(&token(r#"{"alg":"ES256","typ":"application/AT+JWT","kid":"k1"}"#)).is_ok());
    }

    #[test]
    fn refuses_other_algorithms() {
        for alg in ["none", "HS256", "RS256", "PS256", "ES384", "EdDSA", "es256"] {
            let t = token(&format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"k1"}}"#));
            assert_eq!(parse(&t).unwrap_err(), VerifyError::UnsupportedAlg(alg.into()), "{alg}");
        }
        assert_eq!(
            parse(&token(r#"{"typ":"at+jwt","kid":"k1"}"#)).unwrap_err(),
            VerifyError::UnsupportedAlg("".into())
        );
    }

    #[test]
    fn refuses_key_carrying_headers_and_crit() {
        for (param, value) in [
            ("jku", r#""https://evil.test/jwks""#),
            ("jwk", r#"{"kty":"EC"}"#),
            ("x5u", r#""https://evil.test/cert""#),
            ("x5c", r#"["MII"]"#),
            ("crit", r#"["exp"]"#),
        ] {
            let t = token(&format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"k1","{param}":{value}}}"#));
            assert!(matches!(parse(&t).unwrap_err(), VerifyError::ForbiddenHeader(p) if p == param), "{param}");
        }
    }

    #[test]
    fn refuses_wrong_or_missing_typ_and_kid() {
        assert_eq!(parse(&token(r#"{"alg":"ES256","kid":"k1"}"#)).unwrap_err(), VerifyError::WrongType(None));
        assert_eq!(
            parse(&token(r#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#)).unwrap_err(),
            VerifyError::WrongType(Some("JWT".into()))
        );
        assert_eq!(parse(&token(r#"{"alg":"ES256","typ":"at+jwt"}"#)).unwrap_err(), VerifyError::MissingKid);
        assert_eq!(parse(&token(r#"{"alg":"ES256","typ":"at+jwt","kid":""}"#)).unwrap_err(), VerifyError::MissingKid);
    }

    #[test]
    fn refuses_malformed_compact_serialisations() {
        for t in ["", "a", "a.b", "a.b.c.d", ".b.c", "!!.b.c", &format!("{}.e30.", b64(r#"{"alg":"ES256"}"#))] {
            assert!(matches!(parse(t).unwrap_err(), VerifyError::Malformed(_) | VerifyError::WrongType(_)), "{t:?}");
        }
        let short_sig = format!("{}.{}.{}", b64(r#"{"alg":"ES256","typ":"at+jwt","kid":"k"}"#), b64("{}"), b64("x"));
        assert!(matches!(parse(&short_sig).unwrap_err(), VerifyError::Malformed(_)));
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(parse(&huge).unwrap_err(), VerifyError::Malformed("token too long"));
        // JSON that is not an object (a JSON array or string header).
        assert!(matches!(parse(&token(r#"["ES256"]"#)).unwrap_err(), VerifyError::Malformed(_)));
    }
}
