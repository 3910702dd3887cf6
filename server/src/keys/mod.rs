//! Signing keys: loading, the three-phase rotation (publish → sign → retire,
//! ARCHITECTURE §3) and JWKS. The schedule itself is the pure
//! [`authplane_core::keyfile::schedule`]; this module feeds it stored keys and
//! the current time.

pub mod material;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use authplane_core::keyfile::{KeyPhase, KeyState, KeyTimes, next_rotation_at, schedule};
use serde::Serialize;

pub use material::{KeyError, SigningKey};
pub use store::{KeyStore, KeyStoreError};

/// Rotation timings (seconds), from config; replaced on config reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub rotation_interval: i64,
    pub publish_ahead: i64,
    pub retire_after: i64,
}

impl Timings {
    pub fn from_config(c: &authplane_core::config::Config) -> Self {
        Timings {
            rotation_interval: c.signing.rotation_interval.as_secs() as i64,
            publish_ahead: c.signing.publish_ahead.as_secs() as i64,
            retire_after: c.retire_after().as_secs() as i64,
        }
    }
}

/// The keys in memory, in no particular order.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Arc<SigningKey>>,
}

impl KeySet {
    fn times(&self) -> Vec<KeyTimes<'_>> {
        self.keys
            .iter()
            .map(|k| KeyTimes { kid: &k.kid, created_at: k.created_at, active_from: k.active_from })
            .collect()
    }

    pub fn states(&self, now: i64, retire_after: i64) -> Vec<KeyState> {
        schedule(&self.times(), now, retire_after)
    }

    /// The key that signs at `now`.
    pub fn signer(&self, now: i64, retire_after: i64) -> Option<Arc<SigningKey>> {
        let states = self.states(now, retire_after);
        let kid = &states.iter().find(|s| s.phase == KeyPhase::Current)?.kid;
        self.keys.iter().find(|k| &k.kid == kid).cloned()
    }

    /// JWKS (RFC 7517 §5): the next, current and previous keys.
    pub fn jwks(&self, now: i64, retire_after: i64) -> serde_json::Value {
        let states = self.states(now, retire_after);
        let keys: Vec<serde_json::Value> = states
            .iter()
            .filter(|s| s.phase.is_published())
            .filter_map(|s| self.keys.iter().find(|k| k.kid == s.kid))
            .map(|k| k.public_jwk())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// One row of `keys list` / `GET /admin/keys`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: &'static str,
    pub phase: KeyPhase,
    pub created_at: i64,
    pub active_from: i64,
    pub retires_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

pub struct KeyManager {
    store: KeyStore,
    set: ArcSwap<KeySet>,
    timings: ArcSwap<Timings>,
    fingerprint: std::sync::Mutex<Option<String>>,
    read_only_warned: AtomicBool,
}

impl KeyManager {
    /// Loads the store; an empty store gets a fresh key that signs at once.
    /// A corrupt key fails start-up naming the file or row.
    pub async fn open(store: KeyStore, timings: Timings, now: i64) -> Result<KeyManager, KeysError> {
        store.prepare()?;
        let fingerprint = store.fingerprint();
        let mut set = load_set(&store).await?;
        if set.keys.is_empty() {
            let (_, file) = SigningKey::generate(now, now)?;
            store.insert(&file).await?;
            set = load_set(&store).await?;
        }
        Ok(KeyManager {
            fingerprint: std::sync::Mutex::new(store.fingerprint().or(fingerprint)),
            store,
            set: ArcSwap::from_pointee(set),
            timings: ArcSwap::from_pointee(timings),
            read_only_warned: AtomicBool::new(false),
        })
    }

    pub fn describe_store(&self) -> String {
        self.store.describe()
    }

    pub fn set_timings(&self, t: Timings) {
        self.timings.store(Arc::new(t));
    }

    pub fn timings(&self) -> Timings {
        **self.timings.load()
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.set.load_full()
    }

    pub fn signer(&self, now: i64) -> Option<Arc<SigningKey>> {
        self.set.load().signer(now, self.timings.load().retire_after)
    }

    pub fn jwks(&self, now: i64) -> serde_json::Value {
        self.set.load().jwks(now, self.timings.load().retire_after)
    }

    pub fn list(&self, now: i64) -> Vec<KeyInfo> {
        let set = self.set.load();
        let mut out: Vec<KeyInfo> = set
            .states(now, self.timings.load().retire_after)
            .into_iter()
            .filter_map(|s| {
                let k = set.keys.iter().find(|k| k.kid == s.kid)?;
                Some(KeyInfo {
                    kid: s.kid,
                    alg: "ES256",
                    phase: s.phase,
                    created_at: k.created_at,
                    active_from: k.active_from,
                    retires_at: s.retires_at,
                })
            })
            .collect();
        out.sort_by_key(|k| std::cmp::Reverse(k.active_from));
        out
    }

    /// Re-reads the store. On error the last good set stays in use.
    pub async fn reload(&self) -> Result<bool, KeysError> {
        let set = load_set(&self.store).await?;
        if set.keys.is_empty() {
            return Err(KeysError::Store(KeyStoreError::Parse(
                self.store.describe(),
                "no keys left; keeping the last good set".into(),
            )));
        }
        let old = self.set.load();
        let changed = old.keys.len() != set.keys.len()
            || old.keys.iter().zip(set.keys.iter()).any(|(a, b)| a.kid != b.kid || a.active_from != b.active_from);
        if changed {
            self.set.store(Arc::new(set));
        }
        Ok(changed)
    }

    /// Re-reads a file store when the directory changed since the last look.
    pub async fn reload_if_changed(&self) -> Result<bool, KeysError> {
        let now_fp = self.store.fingerprint();
        if now_fp.is_some() {
            let mut last = self.fingerprint.lock().unwrap_or_else(|p| p.into_inner());
            if *last == now_fp {
                return Ok(false);
            }
            *last = now_fp;
        }
        self.reload().await
    }

    /// Phase 1: publish a new key that signs after `publish_ahead` (or at
    /// once with `immediate`, for a suspected compromise).
    pub async fn rotate(&self, now: i64, immediate: bool) -> Result<KeyInfo, KeysError> {
        let t = self.timings();
        // Times are whole seconds: an immediate key that would start in the
        // same second as the current one starts one second later instead of tying.
        let current_started_now = self.set.load().keys.iter().any(|k| k.active_from == now);
        let active_from = match (immediate, current_started_now) {
            (true, false) => now,
            (true, true) => now + 1,
            (false, _) => now + t.publish_ahead,
        };
        let (_, file) = SigningKey::generate(now, active_from)?;
        self.store.insert(&file).await?;
        self.reload().await?;
        Ok(KeyInfo {
            kid: file.kid,
            alg: "ES256",
            phase: if active_from <= now { KeyPhase::Current } else { KeyPhase::Next },
            created_at: now,
            active_from,
            retires_at: None,
        })
    }

    /// Phase 3 housekeeping: deletes retired keys from the store.
    pub async fn prune(&self, now: i64) -> Result<Vec<String>, KeysError> {
        let retired: Vec<String> = self
            .set
            .load()
            .states(now, self.timings.load().retire_after)
            .into_iter()
            .filter(|s| s.phase == KeyPhase::Retired)
            .map(|s| s.kid)
            .collect();
        for kid in &retired {
            self.store.remove(kid).await?;
        }
        if !retired.is_empty() {
            self.reload().await?;
        }
        Ok(retired)
    }

    /// When automatic rotation will publish the next key, if it is on.
    pub fn next_rotation(&self, now: i64) -> Option<i64> {
        let t = self.timings();
        let set = self.set.load();
        next_rotation_at(&set.times(), now, t.retire_after, t.rotation_interval, t.publish_ahead)
    }

    /// Automatic rotation and pruning, when `signing.rotation_interval` is set.
    pub async fn maintain(&self, now: i64) -> Result<Option<KeyInfo>, KeysError> {
        if self.timings().rotation_interval <= 0 {
            return Ok(None);
        }
        let rotated = match self.next_rotation(now) {
            Some(at) if at <= now => Some(self.rotate(now, false).await?),
            _ => None,
        };
        self.prune(now).await?;
        Ok(rotated)
    }

    /// True the first time only, so a read-only store warns once.
    pub fn first_read_only_warning(&self) -> bool {
        !self.read_only_warned.swap(true, Ordering::Relaxed)
    }
}

/// The key set from the store. A corrupt entry fails the load naming it,
/// except in a mounted Secret, where it is skipped with an ERROR while at
/// least one entry is good (see [`KeyStore::load`]).
async fn load_set(store: &KeyStore) -> Result<KeySet, KeysError> {
    let (stored, skipped) = store.load().await?;
    let mut skipped: Vec<KeysError> = skipped.into_iter().map(KeysError::Store).collect();
    let lenient = store.is_mounted_secret();
    let mut keys = Vec::with_capacity(stored.len());
    for s in stored {
        match SigningKey::from_file(&s.file, &s.origin) {
            Ok(k) => keys.push(Arc::new(k)),
            Err(e) if lenient => skipped.push(e.into()),
            Err(e) => return Err(e.into()),
        }
    }
    if !skipped.is_empty() {
        if keys.is_empty() {
            return Err(skipped.swap_remove(0));
        }
        for e in &skipped {
            tracing::error!(error = "ErrSigningKeyUnreadable", detail = %e, "skipped a signing-key entry of the mounted Secret");
        }
    }
    keys.sort_by(|a, b| (a.active_from, &a.kid).cmp(&(b.active_from, &b.kid)));
    Ok(KeySet { keys })
}
