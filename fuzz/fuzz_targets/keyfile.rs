//! The signing-key file format (`<kid>.json` in the key directory or a
//! Kubernetes Secret) and the rotation schedule computed from key times.
//!
//! Properties: an accepted key file round-trips through JSON; a key that
//! loads has `kid` = its RFC 7638 thumbprint and signs verifiably; the
//! schedule always has exactly one signing key, and the signing key is
//! published.
#![no_main]

use authplane_core::keyfile::{KeyPhase, KeyTimes, SigningKeyFile, schedule};
use authplane_server::keys::material::SigningKey;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(file) = serde_json::from_slice::<SigningKeyFile>(data) {
        let text = serde_json::to_string(&file).expect("serialises");
        let back: SigningKeyFile = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, file);
        if let Ok(key) = SigningKey::from_file(&file, "fuzz") {
            let jwk = key.public_jwk();
            let (x, y) = (jwk["x"].as_str().unwrap_or_default(), jwk["y"].as_str().unwrap_or_default());
            assert_eq!(authplane_core::es256::thumbprint(x, y), file.kid, "kid is not the thumbprint");
            let jws = key.sign_compact("at+jwt", b"{}").expect("sign");
            let (input, sig) = jws.rsplit_once('.').expect("compact");
            use base64::Engine;
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).expect("b64");
            assert!(key.verify(input.as_bytes(), &sig));
        }
    }

    // Key times from the input: 16 bytes per key, then `now` and `retire_after`.
    let nums: Vec<i64> =
        data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) >> 20).collect();
    if nums.len() < 2 {
        return;
    }
    let (now, retire_after) = (nums[0], nums[1].abs());
    let kids: Vec<String> = (0..(nums.len() - 2) / 2).map(|i| format!("k{i}")).collect();
    let times: Vec<KeyTimes<'_>> = kids
        .iter()
        .enumerate()
        .map(|(i, kid)| KeyTimes { kid, created_at: nums[2 + 2 * i], active_from: nums[3 + 2 * i] })
        .collect();
    let states = schedule(&times, now, retire_after);
    assert_eq!(states.len(), times.len());
    if times.is_empty() {
        return;
    }
    let current: Vec<_> = states.iter().filter(|s| s.phase == KeyPhase::Current).collect();
    assert_eq!(current.len(), 1, "{states:?}");
    assert!(current[0].phase.is_published());
    // The signer is the most recently active key when any is active.
    let signer = times.iter().find(|t| t.kid == current[0].kid).expect("signer");
    if times.iter().any(|t| t.active_from <= now) {
        assert!(signer.active_from <= now);
        assert!(times.iter().all(|t| t.active_from > now || t.active_from <= signer.active_from));
    }
});
