//! DPoP at the token endpoint (RFC 9449 §5): the proof rules are the shared
//! ones in `authplane_core::dpop`; this adds what only the AS has — the URL
//! of its token endpoint, the nonce key, and the replay store in the
//! database, so that `jti` single use holds across replicas.

use authplane_core::dpop::{self, DpopError, Expect, Nonces, Reason};

use super::error::Error;
use crate::oauth::Deps;

/// Seconds a proof's `iat` may be ahead of our clock (the project-wide skew).
pub const IAT_LEEWAY: i64 = 30;
/// Nonce time step and how many earlier steps stay valid: a nonce is good
/// for 2–3 minutes (oidc-provider: 60 s steps as well).
const NONCE_STEP: i64 = 60;
const NONCE_PREVIOUS_STEPS: i64 = 2;

/// A proof that passed every rule and was recorded as used.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// RFC 7638 thumbprint of the proof's key: `cnf.jkt`.
    pub jkt: String,
    /// A fresh `DPoP-Nonce` for the response, when the client's was not current.
    pub next_nonce: Option<String>,
}

/// The nonce key: the configured secret, or the process's random one.
pub fn nonces(deps: &Deps) -> Option<Nonces> {
    let cfg = deps.config.load();
    if !cfg.oauth.dpop_nonce {
        return None;
    }
    let secret = match &cfg.oauth.dpop_nonce_secret {
        Some(s) => s.expose().as_bytes().to_vec(),
        None => deps.dpop_nonce_key.to_vec(),
    };
    Some(Nonces::new(&secret, NONCE_STEP, NONCE_PREVIOUS_STEPS))
}

/// Checks the `DPoP` header values of a token request: none = no DPoP;
/// one = a proof that must pass; several = refused (RFC 9449 §4.3 rule 1).
pub async fn check_token_request(deps: &Deps, headers: &[&str], now: i64) -> Result<Option<Accepted>, Error> {
    let proof = match headers {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(Error::dpop(DpopError::new(Reason::Malformed, "send exactly one DPoP header"))),
    };
    let cfg = deps.config.load();
    let url = format!("{}/oauth/token", cfg.server.issuer);
    let max_age = cfg.oauth.dpop_proof_max_age.as_secs() as i64;
    let nonces = nonces(deps);
    let want = Expect {
        method: "POST",
        url: &url,
        now,
        max_age,
        leeway: IAT_LEEWAY,
        access_token: None,
        nonces: nonces.as_ref(),
    };
    let p = {
        let _span = tracing::debug_span!("crypto.verify", authplane.layer = "crypto", what = "dpop_proof").entered();
        dpop::verify(proof, &want)
    }
    .map_err(|e| {
        let mut err = Error::dpop(e);
        err.dpop_nonce = nonces.as_ref().filter(|_| err.dpop == Some(Reason::Nonce)).map(|n| n.current(now));
        err
    })?;
    // Kept until the proof could no longer pass the iat window.
    let expires_at = p.iat.max(now) + max_age + 1;
    if !deps.dpop_replay.remember(&p.jkt, &p.jti, expires_at).await? {
        return Err(Error::dpop(DpopError::new(
            Reason::Replay,
            "DPoP proof was already used (jti seen before): sign a new proof for every request",
        )));
    }
    let next_nonce = nonces.filter(|_| !p.nonce_current).map(|n| n.current(now));
    Ok(Some(Accepted { jkt: p.jkt, next_nonce }))
}

/// RFC 9449 §5.2 / resource policy: a proof is mandatory here.
pub fn required(why: &str) -> Error {
    Error::dpop(DpopError::new(Reason::Malformed, format!("a DPoP proof is required: {why}")))
}

/// The presented key differs from the one a grant is bound to.
pub fn key_mismatch(what: &str) -> Error {
    Error::new(
        super::error::Kind::InvalidGrant,
        format!("{what} is bound to a DPoP key: the request's proof is missing or signed with another key"),
    )
    .with_dpop_reason(Reason::KeyMismatch)
}
