//! DPoP proofs (RFC 9449): the one implementation of the proof rules, shared
//! by the authorization server (`/oauth/token`) and the SDK (the resource
//! server), so the two cannot drift. Pure: the request's method and URL, the
//! current time, the access token and the nonce key come in as arguments; the
//! replay store (`jti` single use) is the caller's, because the AS keeps it in
//! its database and the SDK keeps an optional in-process cache.
//!
//! Every refusal carries one [`Reason`]: a stable metric label
//! (`authplane_dpop_proofs_rejected_total{reason}`) and an `ErrDpop…` name for
//! log lines and the error catalog.
//!
//! The signature is checked with aws-lc directly rather than through
//! `jsonwebtoken`: the key comes from the proof's own `jwk` header (which
//! `jsonwebtoken` would need converting into its `DecodingKey` per algorithm)
//! and the SDK does not otherwise depend on `jsonwebtoken`.

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

/// Proofs longer than this are refused before decoding (an RSA-4096 proof is
/// about 1.5 KiB).
pub const MAX_PROOF_LEN: usize = 8 * 1024;
/// `jti` values longer than this are refused: the AS stores them.
pub const MAX_JTI_LEN: usize = 256;

/// The asymmetric algorithms accepted in a proof's `alg` (RFC 9449 §4.3 rule
/// 5: never `none`, never a MAC), in the order metadata lists them.
/// `Ed25519` is RFC 9864's fully-specified name for EdDSA over Ed25519, which
/// oauth4webapi and openid-client send for an Ed25519 key.
pub const SUPPORTED_ALGS: &[&str] = &["ES256", "ES384", "EdDSA", "Ed25519", "RS256", "PS256"];

/// Why a proof was refused; one stable label each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The `jti` was seen before inside the window.
    Replay,
    HtuMismatch,
    HtmMismatch,
    /// `iat` outside the accepted window (too old or in the future).
    Iat,
    Signature,
    /// `alg` missing, symmetric, `none`, or not allowed for the key type.
    Alg,
    /// Nonce missing, unknown or no longer current (answered `use_dpop_nonce`).
    Nonce,
    /// `ath` missing or not the hash of the presented access token.
    Ath,
    /// The proof's key is not the one the token, code or refresh token is bound to.
    KeyMismatch,
    /// Not a well-formed proof: JWS syntax, `typ`, header `jwk` (incl. a
    /// private key), missing claims, several `DPoP` headers.
    Malformed,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Replay,
        Reason::HtuMismatch,
        Reason::HtmMismatch,
        Reason::Iat,
        Reason::Signature,
        Reason::Alg,
        Reason::Nonce,
        Reason::Ath,
        Reason::KeyMismatch,
        Reason::Malformed,
    ];

    /// The `reason` label of `authplane_dpop_proofs_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Replay => "replay",
            Reason::HtuMismatch => "htu_mismatch",
            Reason::HtmMismatch => "htm_mismatch",
            Reason::Iat => "iat",
            Reason::Signature => "signature",
            Reason::Alg => "alg",
            Reason::Nonce => "nonce",
            Reason::Ath => "ath",
            Reason::KeyMismatch => "key_mismatch",
            Reason::Malformed => "malformed",
        }
    }

    /// The `ErrDpop…` name used in log lines and the error catalog.
    pub fn err_name(self) -> &'static str {
        match self {
            Reason::Replay => "ErrDpopReplay",
            Reason::HtuMismatch => "ErrDpopHtuMismatch",
            Reason::HtmMismatch => "ErrDpopHtmMismatch",
            Reason::Iat => "ErrDpopIat",
            Reason::Signature => "ErrDpopSignature",
            Reason::Alg => "ErrDpopAlg",
            Reason::Nonce => "ErrDpopNonce",
            Reason::Ath => "ErrDpopAth",
            Reason::KeyMismatch => "ErrDpopKeyMismatch",
            Reason::Malformed => "ErrDpopMalformed",
        }
    }
}

/// A refused proof: the reason and a description that names the rule (safe to
/// return to the client: it never contains the proof, a token or a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct DpopError {
    pub reason: Reason,
    pub detail: String,
}

impl DpopError {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

fn err(reason: Reason, detail: impl Into<String>) -> DpopError {
    DpopError::new(reason, detail)
}

/// A proof that passed every stateless rule. The caller still enforces `jti`
/// single use (it knows where its replay store is) and compares `jkt` with
/// whatever the token, code or refresh token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's public key.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    pub alg: String,
    /// Whether the proof's nonce is the current one (`false` also when no
    /// nonce was required); a server sends a fresh `DPoP-Nonce` otherwise.
    pub nonce_current: bool,
}

/// What the proof must match.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The HTTP method of the request (`POST`).
    pub method: &'a str,
    /// The URL the client addressed (scheme, host, path; query and fragment
    /// are ignored on both sides).
    pub url: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
    /// How old `iat` may be, seconds.
    pub max_age: i64,
    /// How far in the future `iat` may be (clock skew), seconds.
    pub leeway: i64,
    /// The access token presented with the proof: `ath` must be its hash
    /// (RFC 9449 §4.3 rule 12). `None` at the token endpoint.
    pub access_token: Option<&'a str>,
    /// When set, the proof must carry a nonce this key issued recently.
    pub nonces: Option<&'a Nonces>,
}

#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: Option<String>,
    jwk: Option<serde_json::Map<String, serde_json::Value>>,
    crit: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<serde_json::Value>,
    htm: Option<serde_json::Value>,
    htu: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    ath: Option<serde_json::Value>,
    nonce: Option<serde_json::Value>,
}

/// RFC 9449 §4.3: checks one proof (the value of the single `DPoP` header).
pub fn verify(proof: &str, want: &Expect<'_>) -> Result<Proof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(err(Reason::Malformed, "DPoP proof is longer than 8 KiB"));
    }
    let mut parts = proof.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(err(Reason::Malformed, "DPoP proof is not a compact JWS (three dot-separated parts)"));
    };
    let header_json =
        URL_SAFE_NO_PAD.decode(h).map_err(|_| err(Reason::Malformed, "DPoP proof header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|_| err(Reason::Malformed, "DPoP proof header is not a JSON object"))?;

    // Rule 4: typ is dpop+jwt (media types compare case-insensitively).
    if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(err(Reason::Malformed, "DPoP proof header typ must be \"dpop+jwt\""));
    }
    if header.crit.is_some() {
        return Err(err(Reason::Malformed, "DPoP proof header carries crit, which is not understood"));
    }
    // Rule 5: an asymmetric algorithm from the allow-list.
    let alg = header.alg.unwrap_or_default();
    if !SUPPORTED_ALGS.contains(&alg.as_str()) {
        return Err(err(
            Reason::Alg,
            format!("DPoP proof alg {alg:?} is not allowed (allowed: {})", SUPPORTED_ALGS.join(", ")),
        ));
    }
    // Rule 7: a public key in `jwk`; a private member is refused outright.
    let jwk = header.jwk.ok_or_else(|| err(Reason::Malformed, "DPoP proof header has no jwk"))?;
    let key = PublicJwk::parse(&jwk)?;

    // Rule 6: the signature, with the key of the header, for the declared alg.
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| err(Reason::Malformed, "DPoP proof signature is not base64url"))?;
    let signing_input = &proof.as_bytes()[..h.len() + 1 + p.len()];
    key.verify(&alg, signing_input, &sig)?;

    let payload =
        URL_SAFE_NO_PAD.decode(p).map_err(|_| err(Reason::Malformed, "DPoP proof payload is not base64url"))?;
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|_| err(Reason::Malformed, "DPoP proof payload is not a JSON object"))?;

    let jti = string_claim(claims.jti, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(err(Reason::Malformed, format!("DPoP proof jti must be 1 to {MAX_JTI_LEN} characters")));
    }
    let htm = string_claim(claims.htm, "htm")?;
    let htu = string_claim(claims.htu, "htu")?;
    let iat = match claims.iat {
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| err(Reason::Malformed, "DPoP proof iat is not a NumericDate"))?,
        Some(_) => return Err(err(Reason::Malformed, "DPoP proof iat is not a NumericDate")),
        None => return Err(err(Reason::Malformed, "DPoP proof has no iat claim")),
    };

    // Rule 8: htm matches the method (case-sensitive, RFC 9110 §9.1).
    if htm != want.method {
        return Err(err(
            Reason::HtmMismatch,
            format!("DPoP proof htm {htm:?} does not match the request method {:?}", want.method),
        ));
    }
    // Rule 9: htu matches the URL, without query and fragment, after
    // normalisation (RFC 3986 §6: scheme and host case, default port).
    match (normalise_htu(&htu), normalise_htu(want.url)) {
        (Some(got), Some(expected)) if got == expected => {}
        (_, expected) => {
            return Err(err(
                Reason::HtuMismatch,
                format!(
                    "DPoP proof htu {htu:?} does not match the request URL {:?}",
                    expected.unwrap_or_else(|| want.url.to_owned())
                ),
            ));
        }
    }

    // Rule 11: the nonce, when one is required.
    let nonce_current = match want.nonces {
        None => false,
        Some(nonces) => {
            let got = match claims.nonce {
                Some(serde_json::Value::String(n)) => n,
                Some(_) => return Err(err(Reason::Nonce, "DPoP proof nonce is not a string")),
                None => return Err(err(Reason::Nonce, "a DPoP nonce is required: retry with the DPoP-Nonce value")),
            };
            match nonces.check(&got, want.now) {
                NonceCheck::Current => true,
                NonceCheck::Recent => false,
                NonceCheck::Unknown => {
                    return Err(err(
                        Reason::Nonce,
                        "DPoP proof nonce is not one this server issued recently: retry with the DPoP-Nonce value",
                    ));
                }
            }
        }
    };

    // Rule 10: iat within the window.
    if iat < want.now.saturating_sub(want.max_age) || iat > want.now.saturating_add(want.leeway) {
        return Err(err(
            Reason::Iat,
            format!(
                "DPoP proof iat {iat} is outside the accepted window (now {}, at most {} s old, {} s ahead)",
                want.now, want.max_age, want.leeway
            ),
        ));
    }

    // Rule 12: ath binds the proof to the access token presented with it.
    if let Some(token) = want.access_token {
        let ath = match claims.ath {
            Some(serde_json::Value::String(a)) => a,
            Some(_) => return Err(err(Reason::Ath, "DPoP proof ath is not a string")),
            None => return Err(err(Reason::Ath, "DPoP proof has no ath claim (required with an access token)")),
        };
        if !constant_eq(ath.as_bytes(), access_token_hash(token).as_bytes()) {
            return Err(err(Reason::Ath, "DPoP proof ath is not the hash of the access token presented"));
        }
    }

    Ok(Proof { jkt: key.thumbprint(), jti, iat, alg, nonce_current })
}

fn string_claim(v: Option<serde_json::Value>, name: &str) -> Result<String, DpopError> {
    match v {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(err(Reason::Malformed, format!("DPoP proof {name} is not a string"))),
        None => Err(err(Reason::Malformed, format!("DPoP proof has no {name} claim"))),
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    #[allow(deprecated)]
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// `ath`: base64url(SHA-256(ASCII access token)) (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()))
}

/// `htu` comparison form: scheme and host lower-cased, default port dropped,
/// an empty path as `/`, query and fragment removed (RFC 9449 §4.3 rule 9).
pub fn normalise_htu(u: &str) -> Option<String> {
    let mut url = url::Url::parse(u).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    Some(url.to_string())
}

/// A public JWK from a proof header, by key type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicJwk {
    Ec { crv: String, x: String, y: String },
    Okp { crv: String, x: String },
    Rsa { n: String, e: String },
}

/// Members that only a private (or symmetric) key has (RFC 7518 §6.2.2,
/// §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl PublicJwk {
    pub fn parse(jwk: &serde_json::Map<String, serde_json::Value>) -> Result<Self, DpopError> {
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(err(
                Reason::Malformed,
                format!("DPoP proof jwk carries the private member {m:?}: send the public key only"),
            ));
        }
        let get = |name: &str| -> Result<String, DpopError> {
            match jwk.get(name) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(err(Reason::Malformed, format!("DPoP proof jwk has no {name:?} member"))),
            }
        };
        match get("kty")?.as_str() {
            "EC" => Ok(PublicJwk::Ec { crv: get("crv")?, x: get("x")?, y: get("y")? }),
            "OKP" => Ok(PublicJwk::Okp { crv: get("crv")?, x: get("x")? }),
            "RSA" => Ok(PublicJwk::Rsa { n: get("n")?, e: get("e")? }),
            other => Err(err(Reason::Malformed, format!("DPoP proof jwk kty {other:?} is not EC, OKP or RSA"))),
        }
    }

    /// RFC 7638 §3: base64url(SHA-256(required members, sorted, no spaces)).
    pub fn thumbprint(&self) -> String {
        // Members are base64url or curve names, never needing JSON escapes;
        // serde_json escapes anyway so the canonical form stays exact.
        let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        let canonical = match self {
            PublicJwk::Ec { crv, x, y } => {
                format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, q(crv), q(x), q(y))
            }
            PublicJwk::Okp { crv, x } => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, q(crv), q(x)),
            PublicJwk::Rsa { n, e } => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, q(e), q(n)),
        };
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()))
    }

    fn verify(&self, alg: &str, msg: &[u8], sig: &[u8]) -> Result<(), DpopError> {
        let b64 = |s: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| err(Reason::Malformed, format!("DPoP proof jwk {what} is not base64url")))
        };
        let wrong_key = || err(Reason::Alg, format!("DPoP proof alg {alg} does not fit the jwk's key type or curve"));
        let bad_sig = || err(Reason::Signature, "DPoP proof signature does not verify with the header's jwk");
        match (alg, self) {
            ("ES256" | "ES384", PublicJwk::Ec { crv, x, y }) => {
                let (want_crv, len, algorithm) = if alg == "ES256" {
                    ("P-256", 32, &signature::ECDSA_P256_SHA256_FIXED)
                } else {
                    ("P-384", 48, &signature::ECDSA_P384_SHA384_FIXED)
                };
                if crv != want_crv {
                    return Err(wrong_key());
                }
                let (x, y) = (b64(x, "x")?, b64(y, "y")?);
                if x.len() != len || y.len() != len {
                    return Err(err(Reason::Malformed, format!("DPoP proof jwk x and y must be {len} bytes")));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                UnparsedPublicKey::new(algorithm, point).verify(msg, sig).map_err(|_| bad_sig())
            }
            ("EdDSA" | "Ed25519", PublicJwk::Okp { crv, x }) => {
                if crv != "Ed25519" {
                    return Err(wrong_key());
                }
                let x = b64(x, "x")?;
                UnparsedPublicKey::new(&signature::ED25519, x).verify(msg, sig).map_err(|_| bad_sig())
            }
            ("RS256" | "PS256", PublicJwk::Rsa { n, e }) => {
                let params = if alg == "RS256" {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &signature::RSA_PSS_2048_8192_SHA256
                };
                let key = signature::RsaPublicKeyComponents { n: b64(n, "n")?, e: b64(e, "e")? };
                key.verify(params, msg, sig).map_err(|_| bad_sig())
            }
            _ => Err(wrong_key()),
        }
    }
}

/// Stateless DPoP nonces (RFC 9449 §8): the nonce of a time step is
/// base64url(HMAC-SHA256(secret, step)); the current step and the
/// `accept_previous` steps before it are accepted, so nothing is stored and
/// every replica sharing the secret accepts the others' nonces.
pub struct Nonces {
    key: aws_lc_rs::hmac::Key,
    step: i64,
    accept_previous: i64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces").field("step", &self.step).field("key", &"[redacted]").finish()
    }
}

/// How a presented nonce relates to the current time step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Current,
    /// Issued in one of the accepted previous steps: valid, but the server
    /// hands out a fresh one.
    Recent,
    Unknown,
}

impl Nonces {
    /// `step_secs` > 0; `accept_previous` steps before the current one stay valid.
    pub fn new(secret: &[u8], step_secs: i64, accept_previous: i64) -> Self {
        Self {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
            step: step_secs.max(1),
            accept_previous: accept_previous.max(0),
        }
    }

    fn for_step(&self, step: i64) -> String {
        let mut msg = b"authplane-dpop-nonce:".to_vec();
        msg.extend_from_slice(&step.to_be_bytes());
        URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&self.key, &msg))
    }

    /// The nonce to hand out at `now`.
    pub fn current(&self, now: i64) -> String {
        self.for_step(now.div_euclid(self.step))
    }

    pub fn check(&self, nonce: &str, now: i64) -> NonceCheck {
        let step = now.div_euclid(self.step);
        for back in 0..=self.accept_previous {
            if constant_eq(nonce.as_bytes(), self.for_step(step - back).as_bytes()) {
                return if back == 0 { NonceCheck::Current } else { NonceCheck::Recent };
            }
        }
        NonceCheck::Unknown
    }
}

/// A client-side signer for proofs with an ES256 key: what tests, the doctor
/// and example clients use to talk to a DPoP-protected endpoint.
pub struct Es256Signer {
    pair: signature::EcdsaKeyPair,
    jwk: serde_json::Value,
    jkt: String,
}

impl std::fmt::Debug for Es256Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Signer").field("jkt", &self.jkt).finish_non_exhaustive()
    }
}

/// The claims of a proof to sign.
#[derive(Debug, Clone, Default)]
pub struct ProofClaims<'a> {
    pub htm: &'a str,
    pub htu: &'a str,
    pub iat: i64,
    pub jti: &'a str,
    pub access_token: Option<&'a str>,
    pub nonce: Option<&'a str>,
}

impl Es256Signer {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, DpopError> {
        use aws_lc_rs::signature::KeyPair;
        let pair = signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| err(Reason::Malformed, "P-256 key generation failed"))?;
        let p = pair.public_key().as_ref();
        let (x, y) = (URL_SAFE_NO_PAD.encode(&p[1..33]), URL_SAFE_NO_PAD.encode(&p[33..65]));
        let jkt = PublicJwk::Ec { crv: "P-256".into(), x: x.clone(), y: y.clone() }.thumbprint();
        let jwk = serde_json::json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y });
        Ok(Self { pair, jwk, jkt })
    }

    /// The RFC 7638 thumbprint of the public key (what `cnf.jkt` carries).
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// Signs a proof over `claims`.
    pub fn sign(&self, claims: &ProofClaims<'_>) -> Result<String, DpopError> {
        let header = serde_json::json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk });
        let mut payload = serde_json::json!({
            "jti": claims.jti, "htm": claims.htm, "htu": claims.htu, "iat": claims.iat,
        });
        if let Some(t) = claims.access_token {
            payload["ath"] = access_token_hash(t).into();
        }
        if let Some(n) = claims.nonce {
            payload["nonce"] = n.into();
        }
        self.sign_raw(&header, &payload)
    }

    /// Signs any header and payload (tests craft malformed proofs with it).
    pub fn sign_raw(&self, header: &serde_json::Value, payload: &serde_json::Value) -> Result<String, DpopError> {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()));
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self.pair.sign(&rng, input.as_bytes()).map_err(|_| err(Reason::Signature, "ES256 signing failed"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const URL: &str = "https://as.example.com/oauth/token";
    const NOW: i64 = 1_800_000_000;

    fn want() -> Expect<'static> {
        Expect { method: "POST", url: URL, now: NOW, max_age: 60, leeway: 30, access_token: None, nonces: None }
    }

    fn claims() -> ProofClaims<'static> {
        ProofClaims { htm: "POST", htu: URL, iat: NOW, jti: "j1", access_token: None, nonce: None }
    }

    fn reason(r: Result<Proof, DpopError>) -> Reason {
        r.unwrap_err().reason
    }

    #[test]
    fn rfc7638_section_3_1_thumbprint() {
        let key = PublicJwk::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB\
                ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8\
                KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_\
                xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
                .into(),
            e: "AQAB".into(),
        };
        assert_eq!(key.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn a_good_proof_verifies_and_names_its_key() {
        let s = Es256Signer::generate().unwrap();
        let p = verify(&s.sign(&claims()).unwrap(), &want()).unwrap();
        assert_eq!(p.jkt, s.jkt());
        assert_eq!(p.jti, "j1");
        assert_eq!(p.alg, "ES256");
        // The thumbprint is of the public key, independent of the signer's code path.
        let jwk = s.public_jwk().as_object().unwrap().clone();
        assert_eq!(PublicJwk::parse(&jwk).unwrap().thumbprint(), s.jkt());
    }

    #[test]
    fn htu_ignores_query_fragment_case_and_default_port() {
        let s = Es256Signer::generate().unwrap();
        for htu in ["https://AS.example.com:443/oauth/token?x=1", "HTTPS://as.example.com/oauth/token#f"] {
            let proof = s.sign(&ProofClaims { htu, ..claims() }).unwrap();
            assert!(verify(&proof, &want()).is_ok(), "{htu}");
        }
        for htu in ["https://as.example.com/oauth/token/", "https://as.example.com:8443/oauth/token", "not a url"] {
            let proof = s.sign(&ProofClaims { htu, ..claims() }).unwrap();
            assert_eq!(reason(verify(&proof, &want())), Reason::HtuMismatch, "{htu}");
        }
    }

    #[test]
    fn htm_iat_and_ath_rules() {
        let s = Es256Signer::generate().unwrap();
        let p = s.sign(&ProofClaims { htm: "GET", ..claims() }).unwrap();
        assert_eq!(reason(verify(&p, &want())), Reason::HtmMismatch);
        for (iat, ok) in [(NOW - 60, true), (NOW - 61, false), (NOW + 30, true), (NOW + 31, false)] {
            let p = s.sign(&ProofClaims { iat, ..claims() }).unwrap();
            assert_eq!(verify(&p, &want()).is_ok(), ok, "iat {iat}");
            if !ok {
                assert_eq!(reason(verify(&p, &want())), Reason::Iat);
            }
        }
        let with_token = Expect { access_token: Some("tok"), ..want() };
        assert_eq!(reason(verify(&s.sign(&claims()).unwrap(), &with_token)), Reason::Ath);
        let p = s.sign(&ProofClaims { access_token: Some("other"), ..claims() }).unwrap();
        assert_eq!(reason(verify(&p, &with_token)), Reason::Ath);
        let p = s.sign(&ProofClaims { access_token: Some("tok"), ..claims() }).unwrap();
        assert!(verify(&p, &with_token).is_ok());
    }

    #[test]
    fn refuses_alg_none_hmac_and_unknown_algs() {
        let s = Es256Signer::generate().unwrap();
        let payload = serde_json::json!({"jti":"j","htm":"POST","htu":URL,"iat":NOW});
        for alg in ["none", "HS256", "ES512", "RS512", ""] {
            let h = serde_json::json!({"typ":"dpop+jwt","alg":alg,"jwk":s.public_jwk()});
            assert_eq!(reason(verify(&s.sign_raw(&h, &payload).unwrap(), &want())), Reason::Alg, "{alg}");
        }
        // An unsigned proof (alg none, empty signature) never reaches a key.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"dpop+jwt","alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        assert_eq!(reason(verify(&none, &want())), Reason::Alg);
        // The alg must fit the key.
        let h = serde_json::json!({"typ":"dpop+jwt","alg":"RS256","jwk":s.public_jwk()});
        assert_eq!(reason(verify(&s.sign_raw(&h, &payload).unwrap(), &want())), Reason::Alg);
    }

    #[test]
    fn refuses_private_keys_wrong_typ_and_bad_signatures() {
        let s = Es256Signer::generate().unwrap();
        let payload = serde_json::json!({"jti":"j","htm":"POST","htu":URL,"iat":NOW});
        let mut jwk = s.public_jwk().clone();
        jwk["d"] = "AAAA".into();
        let h = serde_json::json!({"typ":"dpop+jwt","alg":"ES256","jwk":jwk});
        let e = verify(&s.sign_raw(&h, &payload).unwrap(), &want()).unwrap_err();
        assert_eq!(e.reason, Reason::Malformed);
        assert!(e.detail.contains("private"), "{}", e.detail);
        for typ in ["JWT", "at+jwt"] {
            let h = serde_json::json!({"typ":typ,"alg":"ES256","jwk":s.public_jwk()});
            assert_eq!(reason(verify(&s.sign_raw(&h, &payload).unwrap(), &want())), Reason::Malformed);
        }
        // Another key's signature over the same header.
        let other = Es256Signer::generate().unwrap();
        let h = serde_json::json!({"typ":"dpop+jwt","alg":"ES256","jwk":s.public_jwk()});
        assert_eq!(reason(verify(&other.sign_raw(&h, &payload).unwrap(), &want())), Reason::Signature);
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", &"a".repeat(MAX_PROOF_LEN + 1)] {
            assert_eq!(reason(verify(bad, &want())), Reason::Malformed, "{bad:.20}");
        }
        let no_jti = serde_json::json!({"htm":"POST","htu":URL,"iat":NOW});
        assert_eq!(reason(verify(&s.sign_raw(&h, &no_jti).unwrap(), &want())), Reason::Malformed);
    }

    #[test]
    fn nonces_rotate_and_accept_recent_steps() {
        let n = Nonces::new(b"secret", 60, 2);
        let t0 = NOW - NOW.rem_euclid(60);
        let nonce = n.current(t0);
        assert_eq!(n.check(&nonce, t0 + 59), NonceCheck::Current);
        assert_eq!(n.check(&nonce, t0 + 60), NonceCheck::Recent);
        assert_eq!(n.check(&nonce, t0 + 179), NonceCheck::Recent);
        assert_eq!(n.check(&nonce, t0 + 180), NonceCheck::Unknown);
        assert_eq!(n.check(&nonce, t0 - 1), NonceCheck::Unknown);
        assert_eq!(Nonces::new(b"other", 60, 2).check(&nonce, t0), NonceCheck::Unknown);

        let s = Es256Signer::generate().unwrap();
        let with_nonces = Expect { nonces: Some(&n), now: t0, ..want() };
        let p = s.sign(&ProofClaims { iat: t0, ..claims() }).unwrap();
        assert_eq!(reason(verify(&p, &with_nonces)), Reason::Nonce);
        let p = s.sign(&ProofClaims { iat: t0, nonce: Some("stale"), ..claims() }).unwrap();
        assert_eq!(reason(verify(&p, &with_nonces)), Reason::Nonce);
        let p = s.sign(&ProofClaims { iat: t0, nonce: Some(&nonce), ..claims() }).unwrap();
        assert!(verify(&p, &with_nonces).unwrap().nonce_current);
    }

    /// Signs `claims()` with a raw signer and the given header jwk.
    fn raw_proof(alg: &str, jwk: serde_json::Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let h = serde_json::json!({"typ":"dpop+jwt","alg":alg,"jwk":jwk});
        let p = serde_json::json!({"jti":"j","htm":"POST","htu":URL,"iat":NOW});
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(h.to_string()), URL_SAFE_NO_PAD.encode(p.to_string()));
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sign(input.as_bytes())))
    }

    #[test]
    fn eddsa_rs256_and_ps256_proofs_verify() {
        use aws_lc_rs::signature::KeyPair;
        let ed = signature::Ed25519KeyPair::generate().unwrap();
        let jwk = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())});
        let p = verify(&raw_proof("EdDSA", jwk.clone(), |m| ed.sign(m).as_ref().to_vec()), &want()).unwrap();
        assert_eq!(p.jkt, PublicJwk::parse(jwk.as_object().unwrap()).unwrap().thumbprint());
        assert!(verify(&raw_proof("Ed25519", jwk.clone(), |m| ed.sign(m).as_ref().to_vec()), &want()).is_ok());

        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pk = rsa.public_key();
        let jwk = serde_json::json!({
            "kty":"RSA",
            "n":URL_SAFE_NO_PAD.encode(pk.modulus().big_endian_without_leading_zero()),
            "e":URL_SAFE_NO_PAD.encode(pk.exponent().big_endian_without_leading_zero()),
        });
        let rng = aws_lc_rs::rand::SystemRandom::new();
        for (alg, enc) in [
            ("RS256", &signature::RSA_PKCS1_SHA256 as &'static dyn signature::RsaEncoding),
            ("PS256", &signature::RSA_PSS_SHA256),
        ] {
            let sign = |m: &[u8]| {
                let mut sig = vec![0; rsa.public_modulus_len()];
                rsa.sign(enc, &rng, m, &mut sig).unwrap();
                sig
            };
            assert!(verify(&raw_proof(alg, jwk.clone(), sign), &want()).is_ok(), "{alg}");
        }
        // A PKCS#1 v1.5 signature does not pass as PS256.
        let pkcs1 = |m: &[u8]| {
            let mut sig = vec![0; rsa.public_modulus_len()];
            rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut sig).unwrap();
            sig
        };
        assert_eq!(reason(verify(&raw_proof("PS256", jwk, pkcs1), &want())), Reason::Signature);
    }

    #[test]
    fn every_reason_has_a_distinct_label_and_name() {
        let labels: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        let names: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.err_name()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
        assert_eq!(names.len(), Reason::ALL.len());
        assert!(names.iter().all(|n| n.starts_with("ErrDpop")));
    }
}
