//! DPoP proofs (RFC 9449 §4.3), the verifier the AS and the SDK share
//! (`authplane_core::dpop::verify`).
//!
//! Properties: no input verifies without a signature by the key it carries
//! (arbitrary text is refused; any edit of a real proof is refused unless it
//! is the same proof); a proof signed over claims taken from the input
//! verifies back to exactly its key and `jti`, and is refused for another
//! method or URL; `htu` normalisation is idempotent.
#![no_main]

use std::sync::OnceLock;

use authplane_core::dpop::{Es256Signer, Expect, MAX_JTI_LEN, ProofClaims, normalise_htu, verify};

#[path = "common.rs"]
mod common;
use common::mutate;

const URL: &str = "https://as.example.com/oauth/token";
const NOW: i64 = 1_800_000_000;

fn want(url: &str) -> Expect<'_> {
    Expect { method: "POST", url, now: NOW, max_age: 60, leeway: 30, access_token: None, nonces: None }
}

fn signer() -> &'static Es256Signer {
    static S: OnceLock<Es256Signer> = OnceLock::new();
    S.get_or_init(|| Es256Signer::generate().expect("key"))
}

fn proof() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| {
        let c = ProofClaims { htm: "POST", htu: URL, iat: NOW, jti: "jti-1", access_token: None, nonce: None };
        signer().sign(&c).expect("sign")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            let p = String::from_utf8_lossy(rest);
            assert!(verify(&p, &want(URL)).is_err(), "an unsigned input verified: {p}");
        }
        1 => {
            let p = mutate(proof(), rest);
            if let Ok(v) = verify(&p, &want(URL)) {
                assert_eq!(p, proof(), "an edited proof verified");
                assert_eq!(v.jkt, signer().jkt());
            }
        }
        2 => {
            // Claims from the input: sign, then verify back.
            let text = String::from_utf8_lossy(rest);
            let mut parts = text.splitn(3, '\n');
            let (Some(htu), Some(jti)) = (parts.next(), parts.next()) else { return };
            let iat = NOW - i64::from(rest.len() as u8 % 90);
            let c = ProofClaims { htm: "POST", htu, iat, jti, access_token: None, nonce: None };
            let Ok(p) = signer().sign(&c) else { return };
            let expected = want(htu);
            match verify(&p, &expected) {
                Ok(v) => {
                    assert_eq!((v.jkt.as_str(), v.jti.as_str(), v.iat), (signer().jkt(), jti, iat));
                    assert!(verify(&p, &Expect { method: "GET", ..expected }).is_err(), "verified for another method");
                    let other = "https://elsewhere.example.com/oauth/token";
                    if normalise_htu(htu) != normalise_htu(other) {
                        assert!(verify(&p, &want(other)).is_err(), "verified for another URL");
                    }
                }
                // Refused only for what the input controls: a jti out of
                // bounds, an htu that is no http(s) URL, an old iat, or a
                // proof over the 8 KiB cap.
                Err(e) => assert!(
                    jti.is_empty()
                        || jti.len() > MAX_JTI_LEN
                        || normalise_htu(htu).is_none()
                        || iat < NOW - 60
                        || p.len() > 8192,
                    "a well-formed proof was refused: {e:?}"
                ),
            }
        }
        _ => {
            let u = String::from_utf8_lossy(rest);
            if let Some(n) = normalise_htu(&u) {
                assert_eq!(normalise_htu(&n).as_deref(), Some(n.as_str()), "htu normalisation is not idempotent");
            }
        }
    }
});
