//! ES256 (P-256) key material: generation, PKCS#8 PEM, the RFC 7638 `kid`,
//! JWK export and compact JWS signing.
//!
//! Signing uses aws-lc directly with the parsed key pair kept in memory, so
//! the token endpoint never re-parses PKCS#8 per token.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use authplane_core::es256;
pub use authplane_core::es256::thumbprint;
use authplane_core::keyfile::SigningKeyFile;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}: not a PKCS#8 PEM private key")]
    Pem(String),
    #[error("{0}: not a P-256 private key usable for ES256")]
    NotP256(String),
    #[error("{0}: kid {1:?} is not the RFC 7638 thumbprint of the key ({2})")]
    KidMismatch(String, String, String),
    #[error("{0}: unsupported alg {1:?} (only ES256)")]
    Alg(String, String),
    #[error("key generation failed")]
    Generate,
    #[error("signing failed")]
    Sign,
}

/// A loaded signing key.
pub struct SigningKey {
    pub kid: String,
    pub created_at: i64,
    pub active_from: i64,
    pair: EcdsaKeyPair,
    x: String,
    y: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("active_from", &self.active_from)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key that starts signing at `active_from`.
    pub fn generate(now: i64, active_from: i64) -> Result<(SigningKey, SigningKeyFile), KeyError> {
        let file = es256::generate(now, active_from).map_err(|_| KeyError::Generate)?;
        Ok((SigningKey::from_file(&file, "generated key")?, file))
    }

    /// Loads and checks a stored key; `origin` names it in errors (a file path).
    pub fn from_file(f: &SigningKeyFile, origin: &str) -> Result<SigningKey, KeyError> {
        let o = || origin.to_owned();
        let pair = es256::key_pair(f).map_err(|e| match e {
            es256::KeyError::Alg(alg) => KeyError::Alg(o(), alg),
            es256::KeyError::Pem => KeyError::Pem(o()),
            es256::KeyError::KidMismatch(kid, actual) => KeyError::KidMismatch(o(), kid, actual),
            es256::KeyError::NotP256 | es256::KeyError::Generate => KeyError::NotP256(o()),
        })?;
        let (x, y) = es256::coordinates(&pair);
        Ok(SigningKey { kid: f.kid.clone(), created_at: f.created_at, active_from: f.active_from, pair, x, y })
    }

    /// The public JWK (RFC 7517) for JWKS.
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y, "kid": self.kid, "use": "sig", "alg": "ES256"})
    }

    /// Checks a fixed-size (r || s) ES256 signature made by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify(message, signature)
            .is_ok()
    }

    /// A compact JWS over `claims` with header `{"alg":"ES256","typ":typ,"kid":…}`.
    pub fn sign_compact(&self, typ: &str, claims: &[u8]) -> Result<String, KeyError> {
        let header = format!(r#"{{"alg":"ES256","typ":"{typ}","kid":"{}"}}"#, self.kid);
        let mut out = String::with_capacity(64 + claims.len() * 4 / 3 + 100);
        URL_SAFE_NO_PAD.encode_string(header.as_bytes(), &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut out);
        let sig = self.pair.sign(&SystemRandom::new(), out.as_bytes()).map_err(|_| KeyError::Sign)?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authplane_core::Secret;

    #[test]
    fn generated_keys_reload_and_sign_verifiably() {
        let (k, file) = SigningKey::generate(10, 10).unwrap();
        assert_eq!(k.kid.len(), 43);
        let again = SigningKey::from_file(&file, "test").unwrap();
        assert_eq!(again.kid, k.kid);

        let jws = k.sign_compact("at+jwt", br#"{"sub":"u"}"#).unwrap();
        let jwk = k.public_jwk();
        let key = jsonwebtoken::DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(&jws, &key, &v).unwrap();
        assert_eq!(data.claims["sub"], "u");
        assert_eq!(data.header.kid.as_deref(), Some(k.kid.as_str()));
        assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
    }

    #[test]
    fn tampered_files_are_refused_with_their_origin() {
        let (_, mut file) = SigningKey::generate(0, 0).unwrap();
        file.kid = "wrong".into();
        let e = SigningKey::from_file(&file, "/keys/a.json").unwrap_err();
        assert!(e.to_string().starts_with("/keys/a.json: kid \"wrong\""), "{e}");
        file.private_key_pem = Secret::new("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into());
        assert!(matches!(SigningKey::from_file(&file, "f").unwrap_err(), KeyError::NotP256(_)));
        file.private_key_pem = Secret::new("garbage".into());
        assert!(matches!(SigningKey::from_file(&file, "f").unwrap_err(), KeyError::Pem(_)));
    }
}
