//! ES256 (P-256) key material for [`SigningKeyFile`](crate::keyfile::SigningKeyFile):
//! generation, PKCS#8 PEM and the RFC 7638 `kid`. Shared by the server's key
//! stores and the operator's key Secret so both produce and accept the same
//! files. Behind the `es256` feature because it pulls in aws-lc and draws
//! from the OS random number generator.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::Secret;
use crate::keyfile::SigningKeyFile;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("ES256 key generation failed")]
    Generate,
    #[error("not a PKCS#8 PEM private key")]
    Pem,
    #[error("not a P-256 private key usable for ES256")]
    NotP256,
    #[error("unsupported alg {0:?} (only ES256)")]
    Alg(String),
    #[error("kid {0:?} is not the RFC 7638 thumbprint of the key ({1})")]
    KidMismatch(String, String),
}

/// A fresh key as a file: published at `created_at`, signing from `active_from`.
pub fn generate(created_at: i64, active_from: i64) -> Result<SigningKeyFile, KeyError> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| KeyError::Generate)?;
    let der = pair.to_pkcs8v1().map_err(|_| KeyError::Generate)?;
    let (x, y) = coordinates(&pair);
    Ok(SigningKeyFile {
        kid: thumbprint(&x, &y),
        alg: "ES256".into(),
        created_at,
        active_from,
        private_key_pem: Secret::new(pem_encode(der.as_ref())),
    })
}

/// Parses a file's key and checks that its `kid` is the key's thumbprint.
pub fn key_pair(file: &SigningKeyFile) -> Result<EcdsaKeyPair, KeyError> {
    if file.alg != "ES256" {
        return Err(KeyError::Alg(file.alg.clone()));
    }
    let der = pem_decode(file.private_key_pem.expose()).ok_or(KeyError::Pem)?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(|_| KeyError::NotP256)?;
    let (x, y) = coordinates(&pair);
    let kid = thumbprint(&x, &y);
    if kid != file.kid {
        return Err(KeyError::KidMismatch(file.kid.clone(), kid));
    }
    Ok(pair)
}

/// The public point's `x` and `y`, base64url (JWK members).
pub fn coordinates(pair: &EcdsaKeyPair) -> (String, String) {
    // Uncompressed SEC1 point: 0x04 || X (32) || Y (32).
    let p = pair.public_key().as_ref();
    (URL_SAFE_NO_PAD.encode(&p[1..33]), URL_SAFE_NO_PAD.encode(&p[33..65]))
}

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order.
pub fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()))
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PRIVATE KEY-----")
        .collect();
    if body.is_empty() {
        return None;
    }
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_parse_back() {
        let f = generate(1, 2).unwrap();
        assert_eq!(f.kid.len(), 43);
        assert!(key_pair(&f).is_ok());
    }

    #[test]
    fn rfc7517_a1_key_thumbprint() {
        // Expected value computed independently with Python's
        // json.dumps(sort_keys=True, separators=(',', ':')) + hashlib.
        let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        assert_eq!(thumbprint(x, y), "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
    }

    #[test]
    fn tampered_files_are_refused() {
        let mut f = generate(0, 0).unwrap();
        f.kid = "wrong".into();
        assert!(matches!(key_pair(&f), Err(KeyError::KidMismatch(..))));
        f.private_key_pem = Secret::new("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into());
        assert_eq!(key_pair(&f).unwrap_err(), KeyError::NotP256);
        f.private_key_pem = Secret::new("garbage".into());
        assert_eq!(key_pair(&f).unwrap_err(), KeyError::Pem);
        f.alg = "RS256".into();
        assert!(matches!(key_pair(&f), Err(KeyError::Alg(_))));
    }
}
