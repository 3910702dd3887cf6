//! The server's verification of its own access tokens (revocation,
//! introspection): compact JWS, ES256, `typ: at+jwt`, a published `kid`.
//!
//! Properties: verification never succeeds without the key (an arbitrary
//! token, or any edit of a real one, is refused; a token signed by another
//! key is refused); minted claims verify back to exactly themselves.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use authplane_server::oauth::jwt::{AccessClaims, mint, verify_own};
use common::{NOW, access_claims, keys, mutate};

fn claims() -> AccessClaims {
    access_claims()
}

fn token() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| mint(&keys().ours, &claims(), NOW).expect("mint"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let k = keys();
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            let t = String::from_utf8_lossy(rest);
            assert!(verify_own(&k.ours, &t, NOW).is_none(), "an input verified without the key: {t}");
        }
        1 => {
            let t = mutate(token(), rest);
            if verify_own(&k.ours, &t, NOW).is_some() {
                assert_eq!(t, token(), "an edited token verified");
            }
            assert!(verify_own(&k.other, &t, NOW).is_none(), "verified with another key");
        }
        _ => {
            // Claims from the input: mint, then verify back.
            let Ok(c) = serde_json::from_slice::<AccessClaims>(rest) else { return };
            let t = mint(&k.ours, &c, NOW).expect("mint");
            assert_eq!(verify_own(&k.ours, &t, NOW).as_ref(), Some(&c), "round trip");
            assert!(verify_own(&k.other, &t, NOW).is_none(), "verified with another key");
        }
    }
});
