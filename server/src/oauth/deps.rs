//! What the OAuth service needs from the process, as one narrow value: the
//! composition root (`app.rs`) builds it and the HTTP layer hands it to
//! `oauth/` functions. Nothing here knows about actix or the listeners.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use authplane_core::config::Config;

use super::{broker, cimd, clients, upstream};
use crate::keys::KeyManager;
use crate::limits::{HashGate, PerAddressRate, Throttle};
use crate::resource_index::ResourceIndex;
use crate::store::{Db, audit, dpop};

pub struct Deps {
    /// The config snapshot, swapped whole on a reload.
    pub config: ArcSwap<Config>,
    pub db: Db,
    pub keys: KeyManager,
    /// Protected resources (the in-memory index of the `resources` rows).
    pub resources: ResourceIndex,
    pub cimd: cimd::Cache,
    pub clients: clients::Cache,
    /// Group-committed audit rows outside larger transactions.
    pub audit: audit::Sink,
    /// Failed sign-ins and client authentications.
    pub throttle: Throttle,
    pub cimd_rate: PerAddressRate,
    pub registration_rate: PerAddressRate,
    /// Group-committed inserts into the DPoP replay store.
    pub dpop_replay: dpop::ReplayStore,
    /// The DPoP nonce HMAC key when `oauth.dpop_nonce_secret` is unset.
    pub dpop_nonce_key: [u8; 32],
    /// Concurrent argon2 verifications (sized at start).
    pub hash_gate: HashGate,
    /// argon2 working memory, one buffer per hashing slot, reused.
    pub password_memory: Arc<crate::password::Memory>,
    pub clock: Clock,
    pub ids: Ids,
    /// Identity providers' metadata and keys, and the HTTP client to them.
    pub upstream: upstream::Client,
    /// Stored upstream tokens: the encryption keys and refresh single flight.
    pub broker: broker::Broker,
}

/// Where service code reads the time when it is not passed in (audit rows'
/// millisecond timestamps). Tests set it.
#[derive(Debug)]
pub enum Clock {
    System,
    /// Unix milliseconds, moved by [`Clock::set_ms`].
    Fixed(AtomicI64),
}

impl Clock {
    pub fn fixed(ms: i64) -> Self {
        Clock::Fixed(AtomicI64::new(ms))
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => crate::clock::now_ms(),
            Clock::Fixed(ms) => ms.load(Ordering::Relaxed),
        }
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves a fixed clock; the system clock ignores it.
    pub fn set_ms(&self, to: i64) {
        if let Clock::Fixed(ms) = self {
            ms.store(to, Ordering::Relaxed);
        }
    }
}

/// Where token ids (`jti`) come from. Secrets (codes, refresh tokens) are
/// always random and do not come from here.
#[derive(Debug)]
pub enum Ids {
    Random,
    /// `<prefix>id-1`, `<prefix>id-2`, … for tests that name what they expect.
    Sequence(AtomicU64),
}

impl Ids {
    pub fn sequence() -> Self {
        Ids::Sequence(AtomicU64::new(0))
    }

    pub fn id(&self, prefix: &str) -> String {
        match self {
            Ids::Random => crate::random::id(prefix),
            Ids::Sequence(n) => format!("{prefix}id-{}", n.fetch_add(1, Ordering::Relaxed) + 1),
        }
    }
}
