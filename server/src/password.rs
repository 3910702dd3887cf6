//! Human passwords: argon2id (RFC 9106 second recommended parameters as the
//! argon2 crate's defaults: m=19 MiB, t=2, p=1).
//!
//! Verification runs in memory the caller owns ([`Memory`]) rather than a
//! fresh 19 MiB allocation per attempt: the allocator keeps freed blocks
//! of that size in per-thread arenas, so allocating per attempt on many
//! blocking threads grew RSS by hundreds of MB under a burst of sign-ins
//! (issue 11, finding 2) even with the number of concurrent hashes bounded.

use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, Block};

#[derive(Debug, thiserror::Error)]
#[error("cannot hash password: {0}")]
pub struct HashError(String);

/// Largest `m` (KiB) a stored hash may ask for: 256 MiB. A hash beyond it
/// never verifies (a hand-edited hash must not make one sign-in take GBs).
const MAX_M_COST: u32 = 256 * 1024;

pub fn hash(password: &str) -> Result<String, HashError> {
    let salt_bytes = crate::random::bytes::<16>();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Reusable argon2 working memory: at most one buffer per concurrent
/// verification (the hash gate bounds those), kept for the next one.
#[derive(Default)]
pub struct Memory {
    free: Mutex<Vec<Vec<Block>>>,
}

impl Memory {
    /// [`verify_in`] with a buffer from the pool, returned afterwards.
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        let mut blocks = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        let ok = verify_in(password, phc, &mut blocks);
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(blocks);
        ok
    }
}

/// True when `password` matches the PHC string; a malformed hash never
/// matches. `blocks` is the working memory, grown as the hash's `m` needs.
pub fn verify_in(password: &str, phc: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(h) = PasswordHash::new(phc) else { return false };
    let (Some(expected), Some(salt)) = (h.hash, h.salt) else { return false };
    let Ok(algorithm) = argon2::Algorithm::try_from(h.algorithm) else { return false };
    let version = match h.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&h) else { return false };
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let count = params.block_count();
    if blocks.len() < count {
        blocks.resize(count, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let ok = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..count])
        .is_ok();
    use subtle::ConstantTimeEq;
    ok && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// [`verify_in`] with memory of its own (the CLI and tests).
pub fn verify(password: &str, phc: &str) -> bool {
    verify_in(password, phc, &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("x", "not-a-hash"));
    }

    #[test]
    fn pooled_memory_is_reused_and_agrees_with_the_crate() {
        use argon2::password_hash::PasswordVerifier;
        let h = hash("pw").unwrap();
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        let m = Memory::default();
        assert!(m.verify("pw", &h));
        assert!(!m.verify("pW", &h));
        let pool = m.free.lock().unwrap();
        assert_eq!(pool.len(), 1, "one buffer, reused");
        assert_eq!(pool[0].len(), 19 * 1024);
    }

    #[test]
    fn a_hash_asking_for_too_much_memory_never_verifies() {
        let huge =
            "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$Wc3m9wV2kD1XgBn8QoS5lqRkL1S7F9oC3tC8y7m8y4Q";
        assert!(!verify("anything", huge));
    }
}
