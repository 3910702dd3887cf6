//! Signing keys: the on-disk/Secret format shared by the server's `file` key
//! store and the operator, and the three-phase rotation schedule
//! (ARCHITECTURE §3: publish → sign → retire) as a pure function of time.

use serde::{Deserialize, Serialize};

use crate::Secret;

/// One signing key, stored as `<kid>.json` in the key directory (a mounted
/// Secret on Kubernetes) or as a row of `signing_keys`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyFile {
    /// RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key.
    pub kid: String,
    /// Always `ES256` today.
    pub alg: String,
    /// Unix seconds: when the key was created and first published in JWKS.
    pub created_at: i64,
    /// Unix seconds: from when the key signs new tokens (phase 2).
    pub active_from: i64,
    /// PKCS#8 PEM of the P-256 private key.
    pub private_key_pem: Secret<String>,
}

impl SigningKeyFile {
    /// The file name used in a key directory or a Secret's data.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.kid)
    }
}

/// Where a key is in its life at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyPhase {
    /// Published in JWKS, not signing yet (phase 1).
    Next,
    /// Signs new tokens (phase 2).
    Current,
    /// Superseded, still published so tokens it signed verify (phase 3 pending).
    Previous,
    /// No longer published; safe to delete.
    Retired,
}

impl KeyPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPhase::Next => "next",
            KeyPhase::Current => "current",
            KeyPhase::Previous => "previous",
            KeyPhase::Retired => "retired",
        }
    }

    pub fn is_published(self) -> bool {
        self != KeyPhase::Retired
    }
}

/// The minimal facts the schedule needs about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTimes<'a> {
    pub kid: &'a str,
    pub created_at: i64,
    pub active_from: i64,
}

/// A key's phase and, when known, when it leaves JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub kid: String,
    pub phase: KeyPhase,
    /// Unix seconds at which a `previous` key is retired.
    pub retires_at: Option<i64>,
}

/// Computes every key's phase at `now`. The signer is the key that became
/// active most recently; a superseded key stays published until its
/// successor has been active for `retire_after` seconds. If no key is active
/// yet (all are scheduled in the future), the earliest one signs, so the
/// server can always issue tokens.
pub fn schedule(keys: &[KeyTimes<'_>], now: i64, retire_after: i64) -> Vec<KeyState> {
    let mut order: Vec<&KeyTimes<'_>> = keys.iter().collect();
    order.sort_by(|a, b| (a.active_from, a.created_at, a.kid).cmp(&(b.active_from, b.created_at, b.kid)));
    let current_idx =
        order.iter().rposition(|k| k.active_from <= now).or(if order.is_empty() { None } else { Some(0) });

    let mut out = Vec::with_capacity(order.len());
    for (i, k) in order.iter().enumerate() {
        let (phase, retires_at) = match current_idx {
            Some(c) if i == c => (KeyPhase::Current, None),
            Some(c) if i > c => (KeyPhase::Next, None),
            _ => {
                // Superseded: retire once its successor has been active long enough.
                let successor_active = order.get(i + 1).map_or(now, |s| s.active_from);
                let retires_at = successor_active.saturating_add(retire_after);
                if now < retires_at {
                    (KeyPhase::Previous, Some(retires_at))
                } else {
                    (KeyPhase::Retired, Some(retires_at))
                }
            }
        };
        out.push(KeyState { kid: k.kid.to_owned(), phase, retires_at });
    }
    out
}

/// When automatic rotation should publish the next key: `publish_ahead`
/// before the current key has been active for `interval`. `None` when
/// rotation is off or a next key is already published.
pub fn next_rotation_at(
    keys: &[KeyTimes<'_>],
    now: i64,
    retire_after: i64,
    interval: i64,
    publish_ahead: i64,
) -> Option<i64> {
    if interval <= 0 {
        return None;
    }
    let states = schedule(keys, now, retire_after);
    if states.iter().any(|s| s.phase == KeyPhase::Next) {
        return None;
    }
    let current = states.iter().find(|s| s.phase == KeyPhase::Current)?;
    let k = keys.iter().find(|k| k.kid == current.kid)?;
    Some(k.active_from.saturating_add(interval).saturating_sub(publish_ahead))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(kid: &str, created_at: i64, active_from: i64) -> KeyTimes<'_> {
        KeyTimes { kid, created_at, active_from }
    }

    fn phases(keys: &[KeyTimes<'_>], now: i64) -> Vec<(String, KeyPhase)> {
        schedule(keys, now, 100).into_iter().map(|s| (s.kid, s.phase)).collect()
    }

    #[test]
    fn three_phase_rotation() {
        // a signs from t=0; b is published at t=1000 and signs from t=1360.
        let keys = [k("a", 0, 0), k("b", 1000, 1360)];
        assert_eq!(phases(&keys[..1], 500), vec![("a".into(), KeyPhase::Current)]);
        // Phase 1: b published, a still signs.
        assert_eq!(phases(&keys, 1000), vec![("a".into(), KeyPhase::Current), ("b".into(), KeyPhase::Next)]);
        // Phase 2: b signs, a still published until 1360 + 100.
        let s = schedule(&keys, 1360, 100);
        assert_eq!(s[0].phase, KeyPhase::Previous);
        assert_eq!(s[0].retires_at, Some(1460));
        assert_eq!(s[1].phase, KeyPhase::Current);
        // Phase 3: a retired.
        assert_eq!(phases(&keys, 1460), vec![("a".into(), KeyPhase::Retired), ("b".into(), KeyPhase::Current)]);
    }

    #[test]
    fn a_future_only_store_still_signs() {
        let keys = [k("b", 0, 50), k("a", 0, 10)];
        assert_eq!(phases(&keys, 0), vec![("a".into(), KeyPhase::Current), ("b".into(), KeyPhase::Next)]);
        assert!(schedule(&[], 0, 100).is_empty());
    }

    #[test]
    fn rotation_is_due_publish_ahead_before_the_interval() {
        let keys = [k("a", 0, 0)];
        assert_eq!(next_rotation_at(&keys, 10, 100, 1000, 60), Some(940));
        assert_eq!(next_rotation_at(&keys, 10, 100, 0, 60), None);
        let keys = [k("a", 0, 0), k("b", 940, 1000)];
        assert_eq!(next_rotation_at(&keys, 950, 100, 1000, 60), None, "a next key is already published");
        assert_eq!(next_rotation_at(&keys, 1000, 100, 1000, 60), Some(1940));
    }
}
