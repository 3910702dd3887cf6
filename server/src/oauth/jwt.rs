//! Access tokens: RFC 9068 JWTs signed with the current ES256 key, and
//! verification of our own tokens for revocation and introspection.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::error::{Error, Kind};
use crate::keys::KeyManager;

pub use authplane_core::token::{AccessClaims, Confirmation};

pub fn mint(keys: &KeyManager, claims: &AccessClaims, now: i64) -> Result<String, Error> {
    let _span = tracing::debug_span!("crypto.sign", authplane.layer = "crypto", alg = "ES256").entered();
    let key = keys.signer(now).ok_or_else(|| Error::new(Kind::ServerError, "no signing key"))?;
    let payload = serde_json::to_vec(claims).map_err(|_| Error::new(Kind::ServerError, "cannot encode claims"))?;
    key.sign_compact("at+jwt", &payload).map_err(|_| Error::new(Kind::ServerError, "signing failed"))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

/// Verifies a token this server signed with any published key; returns its
/// claims without checking expiry (callers decide what expiry means).
pub fn verify_own(keys: &KeyManager, token: &str, now: i64) -> Option<AccessClaims> {
    let _span = tracing::debug_span!("crypto.verify", authplane.layer = "crypto", alg = "ES256").entered();
    let mut parts = token.splitn(3, '.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.alg != "ES256" || header.typ.as_deref() != Some("at+jwt") {
        return None;
    }
    let kid = header.kid?;
    let set = keys.current();
    let published: Vec<String> = set
        .states(now, keys.timings().retire_after)
        .into_iter()
        .filter(|st| st.phase.is_published())
        .map(|st| st.kid)
        .collect();
    if !published.contains(&kid) {
        return None;
    }
    let key = set.keys.iter().find(|k| k.kid == kid)?;
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    if !key.verify(signing_input.as_bytes(), &sig) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
}
