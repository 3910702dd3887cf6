//! The claims of a verified access token (RFC 9068 §2.2) and the checks on
//! them. Parsing happens only after the signature has verified.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::VerifyError;
use crate::challenge::{Challenge, Rejection};

/// A verified access token's claims, placed in the request's extensions by
/// the middleware and read by handlers through the extractor.
#[derive(Clone, Serialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    /// Every audience of the token; one of them is this resource.
    pub aud: Vec<String>,
    pub client_id: String,
    /// The granted scopes, split from the space-delimited `scope` claim.
    pub scope: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// RFC 9449 §6.1 `cnf.jkt`: the thumbprint of the key a DPoP-bound token
    /// is bound to (`None` for a bearer token).
    #[serde(skip)]
    pub dpop_jkt: Option<String>,
    /// Claims this SDK does not interpret.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// How to answer a 403 for this resource (`require_scope`).
    #[serde(skip)]
    pub(crate) challenge: Option<Arc<Challenge>>,
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("exp", &self.exp)
            .field("jti", &self.jti)
            .finish_non_exhaustive()
    }
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }

    /// `DPoP` for a DPoP-bound token, `Bearer` otherwise.
    pub fn token_type(&self) -> &'static str {
        if self.dpop_jkt.is_some() { "DPoP" } else { "Bearer" }
    }

    /// The `scope` claim as sent (space-delimited).
    pub fn scope_string(&self) -> String {
        self.scope.join(" ")
    }

    /// `Ok` when the token grants `scope`; otherwise a 403
    /// `insufficient_scope` rejection that handlers return as is (it
    /// implements axum's `IntoResponse` and actix's `ResponseError`).
    pub fn require_scope(&self, scope: &str) -> Result<(), Rejection> {
        if self.has_scope(scope) {
            return Ok(());
        }
        Err(crate::challenge::insufficient_scope(self.challenge.as_deref(), self, &[scope]))
    }
}

/// The raw claims set; every RFC 9068 claim is optional here so a missing one
/// is reported by name rather than as a JSON error.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    client_id: Option<String>,
    scope: Option<String>,
    iat: Option<NumericDate>,
    exp: Option<NumericDate>,
    nbf: Option<NumericDate>,
    jti: Option<String>,
    cnf: Option<Confirmation>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Confirmation {
    jkt: Option<String>,
}

/// What the claims must match, fixed at start-up.
#[derive(Debug)]
pub(crate) struct Expectations<'a> {
    pub issuer: &'a str,
    pub resource: &'a authplane_core::ResourceUri,
    pub leeway: i64,
}

/// Parses and checks a verified payload at `now` (Unix seconds).
pub(crate) fn check(payload: &[u8], want: &Expectations<'_>, now: i64) -> Result<Claims, VerifyError> {
    let raw: RawClaims =
        serde_json::from_slice(payload).map_err(|_| VerifyError::Malformed("payload is not a JSON claims set"))?;
    let leeway = want.leeway;

    let iss = raw.iss.ok_or(VerifyError::MissingClaim("iss"))?;
    // RFC 9068 §4: exact match with the issuer the resource trusts.
    if iss != want.issuer {
        return Err(VerifyError::WrongIssuer { got: iss, expected: want.issuer.into() });
    }
    let Audience(aud) = raw.aud.ok_or(VerifyError::MissingClaim("aud"))?;
    // RFC 8707 / RFC 9068 §4: this resource must be an audience. AuthPlane
    // writes the canonical URI; another spelling of the same URI is accepted
    // by the one rule the AS also canonicalises with (authplane_core::resource).
    if !aud.iter().any(|a| want.resource.is_same_resource(a)) {
        return Err(VerifyError::WrongAudience { got: aud, expected: want.resource.as_str().into() });
    }
    let NumericDate(exp) = raw.exp.ok_or(VerifyError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(VerifyError::Expired { exp, now, leeway });
    }
    if let Some(NumericDate(nbf)) = raw.nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(VerifyError::NotYetValid { nbf, now, leeway });
    }
    let NumericDate(iat) = raw.iat.ok_or(VerifyError::MissingClaim("iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(VerifyError::IssuedInFuture { iat, now, leeway });
    }
    let sub = raw.sub.ok_or(VerifyError::MissingClaim("sub"))?;
    let client_id = raw.client_id.ok_or(VerifyError::MissingClaim("client_id"))?;
    let jti = raw.jti.ok_or(VerifyError::MissingClaim("jti"))?;
    let dpop_jkt = raw.cnf.and_then(|c| c.jkt);
    let scope = raw.scope.as_deref().map(authplane_core::scope::split).unwrap_or_default();
    Ok(Claims {
        iss,
        sub,
        aud,
        client_id,
        scope: scope.into_iter().map(str::to_owned).collect(),
        iat,
        exp,
        nbf: raw.nbf.map(|n| n.0),
        jti,
        dpop_jkt,
        extra: raw.extra,
        challenge: None,
    })
}

/// RFC 7519 §4.1.3: a single string or an array of strings.
struct Audience(Vec<String>);

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Audience(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// RFC 7519 §2: seconds since the epoch, possibly fractional.
#[derive(Clone, Copy)]
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                i64::try_from(v).map(NumericDate).map_err(|_| E::custom("NumericDate out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() && v.abs() < 1e15 {
                    // Truncation toward the past is the conservative choice for exp.
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(NumericDate(v.floor() as i64))
                } else {
                    Err(E::custom("NumericDate out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn resource() -> &'static authplane_core::ResourceUri {
        static R: std::sync::OnceLock<authplane_core::ResourceUri> = std::sync::OnceLock::new();
        R.get_or_init(|| authplane_core::ResourceUri::parse("http://localhost:8080/mcp").unwrap())
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "iss": "http://localhost:9000", "sub": "user-42", "aud": ["http://localhost:8080/mcp"],
            "client_id": "dev-client", "scope": "tools/read tools/write", "iat": NOW - 10, "exp": NOW + 300,
            "jti": "j1"
        })
    }

    fn check_with(edit: impl FnOnce(&mut serde_json::Value), now: i64) -> Result<Claims, VerifyError> {
        let mut v = good();
        edit(&mut v);
        let want = Expectations { issuer: "http://localhost:9000", resource: resource(), leeway: 30 };
        check(&serde_json::to_vec(&v).unwrap(), &want, now)
    }

    /// What the AS writes (the core type it mints from) is what the SDK reads.
    #[test]
    fn reads_exactly_what_the_server_writes() {
        use authplane_core::token::{AccessClaims, Confirmation};
        let written = AccessClaims {
            iss: "http://localhost:9000".into(),
            sub: "user-42".into(),
            aud: vec!["http://localhost:8080/mcp".into(), "https://other.example/mcp".into()],
            client_id: "dev-client".into(),
            scope: "tools/read tools/write".into(),
            iat: NOW - 10,
            exp: NOW + 300,
            jti: "j1".into(),
            cnf: Some(Confirmation { jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into() }),
        };
        let want = Expectations { issuer: "http://localhost:9000", resource: resource(), leeway: 30 };
        let read = check(&serde_json::to_vec(&written).unwrap(), &want, NOW).unwrap();
        assert_eq!(
            (read.iss.as_str(), read.sub.as_str(), read.client_id.as_str()),
            ("http://localhost:9000", "user-42", "dev-client")
        );
        assert_eq!(read.aud, written.aud);
        assert_eq!(read.scope_string(), written.scope);
        assert_eq!((read.iat, read.exp, read.jti.as_str()), (written.iat, written.exp, "j1"));
        assert_eq!(read.dpop_jkt.as_deref(), Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"));
        assert!(read.extra.is_empty(), "every claim the server writes is one the SDK knows: {:?}", read.extra);
    }

    #[test]
    fn accepts_a_good_token() {
        let c = check_with(|_| {}, NOW).unwrap();
        assert_eq!(c.sub, "user-42");
        assert_eq!(c.scope, ["tools/read", "tools/write"]);
        assert!(c.has_scope("tools/write"));
        assert!(!c.has_scope("tools"));
        assert_eq!(c.scope_string(), "tools/read tools/write");
    }

    #[test]
    fn issuer_is_compared_exactly() {
        let e = check_with(|v| v["iss"] = "http://localhost:9000/".into(), NOW).unwrap_err();
        assert_eq!(e.err_name(), "ErrWrongIssuer");
    }

    #[test]
    fn audience_must_contain_the_resource() {
        let e = check_with(|v| v["aud"] = serde_json::json!(["http://localhost:8080/other"]), NOW).unwrap_err();
        assert_eq!(e.err_name(), "ErrWrongAudience");
        assert!(check_with(|v| v["aud"] = "http://localhost:8080/mcp".into(), NOW).is_ok(), "a single string");
        // The audience rule of authplane_core::resource, one spelling each.
        for spelling in [
            "HTTP://LOCALHOST:8080/mcp/",
            "http://localhost:8080/mcp/",
            "http://LOCALHOST:8080/mcp",
            "HTTP://localhost:8080/mcp",
            "http://localhost:8080/./mcp",
            " http://localhost:8080/mcp  ",
        ] {
            assert!(check_with(|v| v["aud"] = serde_json::json!(["x", spelling]), NOW).is_ok(), "{spelling:?}");
        }
        for other in ["http://localhost:8080/MCP", "https://localhost:8080/mcp", "http://localhost:8080/mcp//"] {
            let e = check_with(|v| v["aud"] = serde_json::json!([other]), NOW).unwrap_err();
            assert_eq!(e.err_name(), "ErrWrongAudience", "{other:?}");
        }
        let e = check_with(|v| v["aud"] = serde_json::json!([]), NOW).unwrap_err();
        assert_eq!(e.err_name(), "ErrWrongAudience");
        let e = check_with(|v| v["aud"] = serde_json::json!(7), NOW).unwrap_err();
        assert_eq!(e.err_name(), "ErrMalformedToken");
    }

    #[test]
    fn time_claims_allow_thirty_seconds_of_skew() {
        // exp: within skew accepted, beyond refused.
        assert!(check_with(|v| v["exp"] = (NOW - 29).into(), NOW).is_ok());
        assert_eq!(check_with(|v| v["exp"] = (NOW - 30).into(), NOW).unwrap_err().err_name(), "ErrTokenExpired");
        assert_eq!(check_with(|v| v["exp"] = (NOW - 3600).into(), NOW).unwrap_err().err_name(), "ErrTokenExpired");
        // nbf
        assert!(check_with(|v| v["nbf"] = (NOW + 30).into(), NOW).is_ok());
        assert_eq!(check_with(|v| v["nbf"] = (NOW + 31).into(), NOW).unwrap_err().err_name(), "ErrTokenNotYetValid");
        // iat
        assert!(check_with(|v| v["iat"] = (NOW + 30).into(), NOW).is_ok());
        assert_eq!(check_with(|v| v["iat"] = (NOW + 31).into(), NOW).unwrap_err().err_name(), "ErrTokenIssuedInFuture");
        // Fractional NumericDate.
        assert!(check_with(|v| v["exp"] = serde_json::json!((NOW + 10) as f64 + 0.5), NOW).is_ok());
        assert_eq!(
            check_with(|v| v["exp"] = serde_json::json!("soon"), NOW).unwrap_err().err_name(),
            "ErrMalformedToken"
        );
    }

    #[test]
    fn rfc_9068_claims_are_required() {
        for claim in ["iss", "aud", "exp", "iat", "sub", "client_id", "jti"] {
            let e = check_with(|v| _ = v.as_object_mut().unwrap().remove(claim), NOW).unwrap_err();
            assert_eq!(e, VerifyError::MissingClaim(claim), "{claim}");
        }
        // scope is optional (the AS may apply defaults).
        let c = check_with(|v| _ = v.as_object_mut().unwrap().remove("scope"), NOW).unwrap();
        assert!(c.scope.is_empty());
    }

    #[test]
    fn the_dpop_binding_is_read_from_cnf() {
        let c = check_with(|v| v["cnf"] = serde_json::json!({"jkt": "abc"}), NOW).unwrap();
        assert_eq!((c.dpop_jkt.as_deref(), c.token_type()), (Some("abc"), "DPoP"));
        let c = check_with(|_| {}, NOW).unwrap();
        assert_eq!((c.dpop_jkt.as_deref(), c.token_type()), (None, "Bearer"));
    }

    #[test]
    fn extra_claims_are_kept() {
        let c = check_with(|v| v["tenant"] = "t1".into(), NOW).unwrap();
        assert_eq!(c.extra.get("tenant").and_then(|v| v.as_str()), Some("t1"));
        assert!(!c.extra.contains_key("sub"));
    }
}
