//! Random identifiers and secrets from the OS CSPRNG (via aws-lc).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `n` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // aws-lc's RNG only fails if the OS entropy source is gone; there is no
    // safe way to continue issuing secrets then.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut b).expect("OS random number generator failed");
    b
}

/// 32 random bytes, base64url: a client secret, a refresh token, a code (256 bits).
pub fn secret_token() -> String {
    URL_SAFE_NO_PAD.encode(bytes::<32>())
}

/// A short random id with a prefix, e.g. `r_3fj…` for request ids.
pub fn id(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes::<12>()))
}

/// Lower-case hex of `N` random bytes (W3C trace and span ids).
pub fn hex_id<const N: usize>() -> String {
    hex::encode(bytes::<N>())
}

/// Hex SHA-256 of a secret, the only form in which secrets are stored.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// Constant-time equality of two secrets of possibly different lengths: both
/// sides are hashed first so neither content nor length leaks through timing.
pub fn secure_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let da = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, a);
    let db = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    da.as_ref().ct_eq(db.as_ref()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_and_distinct() {
        let a = secret_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, secret_token());
        assert_eq!(hex_id::<16>().len(), 32);
    }

    #[test]
    fn secure_eq_compares() {
        assert!(secure_eq(b"abc", b"abc"));
        assert!(!secure_eq(b"abc", b"abd"));
        assert!(!secure_eq(b"abc", b"abcd"));
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
