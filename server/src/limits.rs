//! What a stranger can spend, bounded: password-hashing slots, failed
//! sign-ins and client authentications (growing delays), and per-address
//! request rates (registration, metadata-document fetches). Every counter is
//! in this process's memory and bounded in size; several replicas each keep
//! their own (docs/security.md says what that means).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authplane_core::config::{LimitsConfig, parse_net};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The address a request came from: the TCP peer, or — when the peer is a
/// trusted proxy — the right-most address in `X-Forwarded-For` that is not
/// itself a trusted proxy (the left part of that header is whatever the
/// client wrote, so it is never believed on its own).
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[String]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().filter_map(|t| parse_net(t)).any(|(net, len)| in_net(ip, net, len));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let Some(xff) = forwarded_for else { return Some(peer) };
    let mut last = peer;
    for hop in xff.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else { return Some(last) };
        if !is_trusted(ip) {
            return Some(ip);
        }
        last = ip;
    }
    Some(last)
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            u128::from(a) & mask == u128::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a.to_ipv4_mapped().is_some_and(|v4| in_net(IpAddr::V4(v4), net, len)),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// Bounds concurrent argon2 work: each verification holds ~19 MiB, so a
/// burst of wrong passwords must queue instead of each taking a thread.
pub struct HashGate {
    slots: Arc<Semaphore>,
}

/// No hashing slot became free in time.
#[derive(Debug)]
pub struct Busy;

impl HashGate {
    pub fn new(concurrency: u32) -> Self {
        let n = if concurrency == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            concurrency as usize
        };
        HashGate { slots: Arc::new(Semaphore::new(n.max(1))) }
    }

    pub async fn acquire(&self, wait: Duration) -> Result<OwnedSemaphorePermit, Busy> {
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Busy),
        }
    }
}

/// What a failure counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Sign-ins on the login page (the account is the username).
    Login,
    /// Client authentication at the token, revocation and introspection
    /// endpoints (the account is the client id).
    Client,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair(Subject, String, IpAddr),
    Account(Subject, String),
    Address(Subject, IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until_ms: i64,
    last_ms: i64,
}

/// Entries kept at most; past it the harmless ones (below their threshold)
/// and the forgotten ones are dropped first.
const MAX_ENTRIES: usize = 100_000;
/// A counter with no new failure for this long starts again from zero.
const FORGET_AFTER_MS: i64 = 3_600_000;

/// Growing delays after repeated failures (kanidm and Keycloak do the
/// same): the (account, address) pair is throttled first, the account as a
/// whole only after 4× as many failures and for at most
/// `throttle_account_max_delay`, so a stranger cannot hold a real user back
/// for long; one address failing across many accounts after 10×.
#[derive(Default)]
pub struct Throttle {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// The thresholds and caps in force, from the config.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub free: u32,
    pub max_delay_ms: i64,
    pub account_max_delay_ms: i64,
}

impl Schedule {
    pub fn from_config(c: &LimitsConfig) -> Self {
        Schedule {
            free: c.throttle_free_failures,
            max_delay_ms: c.throttle_max_delay.as_secs() as i64 * 1000,
            account_max_delay_ms: c.throttle_account_max_delay.as_secs() as i64 * 1000,
        }
    }

    /// Delay after the `n`th failure of a key whose first `free` are free:
    /// 1 s, 2 s, 4 s, … up to `max`.
    fn delay_ms(n: u32, free: u32, max: i64) -> i64 {
        if n <= free {
            return 0;
        }
        let step = (n - free - 1).min(30);
        (1000i64 << step).min(max)
    }

    fn for_key(&self, k: &Key, n: u32) -> i64 {
        match k {
            Key::Pair(..) => Self::delay_ms(n, self.free, self.max_delay_ms),
            Key::Account(..) => Self::delay_ms(n, self.free.saturating_mul(4), self.account_max_delay_ms),
            Key::Address(..) => Self::delay_ms(n, self.free.saturating_mul(10), self.max_delay_ms),
        }
    }
}

fn keys(subject: Subject, account: &str, addr: Option<IpAddr>) -> Vec<Key> {
    // Bound what one key can hold: usernames and client ids are the
    // stranger's input.
    let account: String = account.chars().take(256).collect();
    let mut out = vec![Key::Account(subject, account.clone())];
    if let Some(a) = addr {
        out.push(Key::Pair(subject, account, a));
        out.push(Key::Address(subject, a));
    }
    out
}

impl Throttle {
    /// Milliseconds the caller must still wait, if any key is blocked.
    pub fn blocked(&self, subject: Subject, account: &str, addr: Option<IpAddr>, now_ms: i64) -> Option<i64> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            // The usual case on the token path: nothing to look up or build.
            return None;
        }
        keys(subject, account, addr)
            .iter()
            .filter_map(|k| map.get(k))
            .map(|e| e.blocked_until_ms - now_ms)
            .filter(|ms| *ms > 0)
            .max()
    }

    /// Records a failure; returns the delay it imposed (0 = none yet).
    pub fn failed(
        &self,
        subject: Subject,
        account: &str,
        addr: Option<IpAddr>,
        now_ms: i64,
        schedule: &Schedule,
    ) -> i64 {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            prune(&mut map, now_ms, schedule);
        }
        let mut imposed = 0;
        for k in keys(subject, account, addr) {
            let e = map.entry(k.clone()).or_insert(Entry { failures: 0, blocked_until_ms: 0, last_ms: now_ms });
            if now_ms - e.last_ms > FORGET_AFTER_MS {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last_ms = now_ms;
            let d = schedule.for_key(&k, e.failures);
            if d > 0 {
                e.blocked_until_ms = e.blocked_until_ms.max(now_ms + d);
                imposed = imposed.max(d);
            }
        }
        imposed
    }

    /// A success forgets the pair's and the account's failures (not the
    /// address's: one right password must not reset a spraying address).
    pub fn succeeded(&self, subject: Subject, account: &str, addr: Option<IpAddr>) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return;
        }
        for k in keys(subject, account, addr) {
            if !matches!(k, Key::Address(..)) {
                map.remove(&k);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn prune(map: &mut HashMap<Key, Entry>, now_ms: i64, schedule: &Schedule) {
    map.retain(|_, e| now_ms - e.last_ms <= FORGET_AFTER_MS);
    if map.len() >= MAX_ENTRIES {
        map.retain(|k, e| schedule.for_key(k, e.failures) > 0);
    }
    if map.len() >= MAX_ENTRIES {
        // Still full of blocked keys: an attack from very many addresses.
        // Drop the ones whose block has ended.
        map.retain(|_, e| e.blocked_until_ms > now_ms);
    }
}

/// Requests per minute per client address (GCRA, via governor). A limit of
/// 0 means none. Rebuilt when the configured rate changes.
pub struct PerAddressRate {
    limiter: Mutex<Option<(u32, Arc<DefaultKeyedRateLimiter<IpAddr>>)>>,
}

impl Default for PerAddressRate {
    fn default() -> Self {
        PerAddressRate { limiter: Mutex::new(None) }
    }
}

impl PerAddressRate {
    /// `Err(seconds)` when `addr` is over `per_minute`.
    pub fn check(&self, addr: Option<IpAddr>, per_minute: u32) -> Result<(), u64> {
        let (Some(addr), Some(rate)) = (addr, NonZeroU32::new(per_minute)) else { return Ok(()) };
        let limiter = {
            let mut slot = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some((r, l)) if *r == per_minute => l.clone(),
                _ => {
                    let l = Arc::new(governor::RateLimiter::keyed(Quota::per_minute(rate)));
                    *slot = Some((per_minute, l.clone()));
                    l
                }
            }
        };
        if limiter.len() > MAX_ENTRIES {
            limiter.retain_recent();
        }
        limiter.check_key(&addr).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            wait.as_secs().max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Schedule = Schedule { free: 5, max_delay_ms: 900_000, account_max_delay_ms: 60_000 };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".to_owned(), "::1".to_owned()];
        // An untrusted peer: its header is ignored.
        assert_eq!(client_ip(Some(ip("203.0.113.9")), Some("1.2.3.4"), &trusted), Some(ip("203.0.113.9")));
        // A trusted peer: the right-most untrusted hop.
        assert_eq!(client_ip(Some(ip("10.1.2.3")), Some("6.6.6.6, 198.51.100.7"), &trusted), Some(ip("198.51.100.7")));
        assert_eq!(
            client_ip(Some(ip("10.1.2.3")), Some("6.6.6.6, 198.51.100.7, 10.9.9.9"), &trusted),
            Some(ip("198.51.100.7"))
        );
        // Garbage in the header stops the walk at the last good hop.
        assert_eq!(client_ip(Some(ip("10.1.2.3")), Some("nonsense"), &trusted), Some(ip("10.1.2.3")));
        assert_eq!(client_ip(Some(ip("::1")), None, &trusted), Some(ip("::1")));
        assert_eq!(client_ip(Some(ip("::ffff:10.0.0.1")), Some("192.0.2.1"), &trusted), Some(ip("192.0.2.1")));
        assert_eq!(client_ip(Some(ip("10.0.0.1")), Some("192.0.2.1"), &[]), Some(ip("10.0.0.1")));
    }

    #[test]
    fn delays_grow_for_the_pair_first_and_cap_for_the_account() {
        let t = Throttle::default();
        let a = Some(ip("192.0.2.1"));
        let mut now = 0;
        for _ in 0..5 {
            assert_eq!(t.failed(Subject::Login, "alice", a, now, &S), 0);
        }
        assert_eq!(t.blocked(Subject::Login, "alice", a, now), None);
        assert_eq!(t.failed(Subject::Login, "alice", a, now, &S), 1000);
        assert_eq!(t.blocked(Subject::Login, "alice", a, now), Some(1000));
        // Another address is not held back by the pair.
        assert_eq!(t.blocked(Subject::Login, "alice", Some(ip("192.0.2.2")), now), None);
        now += 1000;
        assert_eq!(t.failed(Subject::Login, "alice", a, now, &S), 2000);
        // The account as a whole: 20 free failures, then at most 60 s.
        let t = Throttle::default();
        for i in 0..40u8 {
            t.failed(Subject::Login, "bob", Some(IpAddr::from([198, 51, 100, i])), 0, &S);
        }
        let wait = t.blocked(Subject::Login, "bob", Some(ip("203.0.113.50")), 0).unwrap();
        assert_eq!(wait, 60_000, "the account delay is capped");
        // Login and client counters are separate.
        assert_eq!(t.blocked(Subject::Client, "bob", Some(ip("203.0.113.50")), 0), None);
    }

    #[test]
    fn success_clears_pair_and_account_but_not_the_address() {
        let t = Throttle::default();
        let a = Some(ip("192.0.2.1"));
        for _ in 0..60 {
            t.failed(Subject::Login, "carol", a, 0, &S);
        }
        t.succeeded(Subject::Login, "carol", a);
        // The address sprayed 60 failures (> 50): still blocked for others.
        assert!(t.blocked(Subject::Login, "dave", a, 0).is_some());
        assert!(t.blocked(Subject::Login, "carol", Some(ip("192.0.2.9")), 0).is_none());
    }

    #[test]
    fn counters_are_forgotten_and_bounded() {
        let t = Throttle::default();
        let a = Some(ip("192.0.2.1"));
        for _ in 0..5 {
            t.failed(Subject::Login, "erin", a, 0, &S);
        }
        // An hour later the count starts again.
        assert_eq!(t.failed(Subject::Login, "erin", a, FORGET_AFTER_MS + 1, &S), 0);
        let t = Throttle::default();
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            t.failed(Subject::Login, &format!("u{i}"), None, 0, &S);
        }
        assert!(t.len() <= MAX_ENTRIES, "{} entries", t.len());
    }

    #[test]
    fn per_address_rate() {
        let r = PerAddressRate::default();
        let a = Some(ip("192.0.2.1"));
        for _ in 0..3 {
            assert!(r.check(a, 3).is_ok());
        }
        assert!(r.check(a, 3).unwrap_err() >= 1);
        assert!(r.check(Some(ip("192.0.2.2")), 3).is_ok());
        assert!(r.check(a, 0).is_ok(), "0 = no limit");
    }
}
