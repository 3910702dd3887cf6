//! [`Verifier`]: offline verification of AuthPlane access tokens against a
//! cached copy of the AS's JWKS.
//!
//! Cache policy (ARCHITECTURE §4, issue 4):
//! - keys are fetched on first use (or by [`Verifier::warm_up`]) from the
//!   `jwks_uri` of the issuer's metadata (RFC 8414);
//! - every `refresh_interval` (5 min) a request that finds the set due starts
//!   one background refresh and carries on with the cached set, so the steady
//!   state makes no network call on the request path;
//! - a `kid` not in the set triggers one refetch, at most once per
//!   `unknown_kid_interval` (30 s); concurrent requests share it, and wait for
//!   it at most `unknown_kid_timeout` (2 s): a refetch that has not completed
//!   by then, or that failed, is answered 503 (retry), and only a completed
//!   refetch that lacks the `kid` is a 401;
//! - a failed fetch keeps the last good set (the AS may be restarting), with
//!   a WARN saying so, for at most `max_key_age` (24 h) after the last
//!   successful fetch; older keys are not trusted (503).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use url::Url;

use crate::challenge::Challenge;
use crate::claims::{self, Expectations};
use crate::clock::{Clock, SystemClock};
use crate::jwks::{self, KeySet};
use crate::logs::{self, Sample, clip};
use crate::{Claims, FetchError, ProtectedResource, VerifyError, jws};

/// Timings of the key cache and the clock-skew tolerance, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Tolerance on `exp`, `nbf` and `iat` (ARCHITECTURE §3: 30 s everywhere).
    pub leeway: i64,
    /// How old the key set may get before a background refresh.
    pub refresh_interval: i64,
    /// Minimum time between two refetches caused by an unknown `kid`.
    pub unknown_kid_interval: i64,
    /// After a failed refresh, when to try again (a cached set is still served).
    pub retry_after_failure: i64,
    /// While no key set was ever fetched, when to try again.
    pub retry_without_keys: i64,
    /// How long a request with an unknown `kid` waits for the refetch, in
    /// milliseconds; past it the answer is 503 with `Retry-After` (the
    /// refetch goes on in the background).
    pub unknown_kid_timeout_ms: u64,
    /// Cached keys are trusted for at most this long after the last
    /// successful fetch (while the AS cannot be reached); then 503.
    pub max_key_age: i64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            leeway: 30,
            refresh_interval: 300,
            unknown_kid_interval: 30,
            retry_after_failure: 30,
            retry_without_keys: 5,
            unknown_kid_timeout_ms: 2_000,
            max_key_age: 86_400,
        }
    }
}

/// Counters for tests, benchmarks and health pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifierStats {
    /// JWKS requests made (successful or not).
    pub jwks_fetches: u64,
    pub jwks_fetch_failures: u64,
    /// AS metadata discoveries made.
    pub discoveries: u64,
    /// `kid`s of the cached key set.
    pub kids: Vec<String>,
    /// Refusals by error name (`ErrTokenExpired`, `ErrInsufficientScope`,
    /// …), logged or not: the WARN lines are sampled (10 per reason per minute).
    pub rejections: std::collections::BTreeMap<String, u64>,
}

/// Builds a [`Verifier`] with a non-default clock, HTTP client or cache policy.
pub struct VerifierBuilder {
    resource: ProtectedResource,
    clock: Arc<dyn Clock>,
    http: Option<reqwest::Client>,
    policy: CachePolicy,
    dpop_max_age: i64,
    dpop_jti_cache: usize,
}

impl std::fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierBuilder").field("resource", &self.resource).field("policy", &self.policy).finish()
    }
}

impl VerifierBuilder {
    /// The time source for token checks and the cache schedule (tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The client for metadata and JWKS requests; the default has 5 s
    /// connect / 10 s total timeouts and follows no redirects.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    pub fn cache_policy(mut self, policy: CachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How old a DPoP proof's `iat` may be, in seconds (default 60; an `iat`
    /// up to `leeway` ahead is accepted too). The same default as the AS's
    /// `oauth.dpop_proof_max_age`.
    pub fn dpop_proof_max_age(mut self, secs: u64) -> Self {
        self.dpop_max_age = i64::try_from(secs).unwrap_or(i64::MAX).max(1);
        self
    }

    /// Optional: remember the proofs of the last `entries` requests in this
    /// process and refuse one seen again (`ErrDpopReplay`). Off by default:
    /// the `iat` window bounds replay (as the MCP DPoP draft relies on), and a
    /// per-process cache does not see other replicas. When full, the oldest
    /// proofs are forgotten first.
    pub fn dpop_jti_cache(mut self, entries: usize) -> Self {
        self.dpop_jti_cache = entries;
        self
    }

    pub fn build(self) -> Verifier {
        let retry_after = u32::try_from(self.policy.retry_after_failure.max(1)).unwrap_or(30);
        let challenge = Arc::new(Challenge::new(&self.resource).with_retry_after(retry_after));
        let jwks_uri = self.resource.inner.jwks_uri.clone();
        Verifier {
            inner: Arc::new(Inner {
                challenge,
                clock: self.clock,
                http: self.http.unwrap_or_else(jwks::default_http_client),
                policy: self.policy,
                keys: RwLock::new(Arc::new(KeySet::default())),
                refresh: tokio::sync::Mutex::new(RefreshState { jwks_uri }),
                last_error: Mutex::new(None),
                ever_fetched: AtomicBool::new(false),
                last_attempt_ok: AtomicBool::new(false),
                last_success_at: AtomicI64::new(i64::MIN),
                next_refresh_at: AtomicI64::new(i64::MIN),
                last_unknown_kid_fetch: AtomicI64::new(i64::MIN),
                refreshing: AtomicBool::new(false),
                attempts_done: tokio::sync::watch::Sender::new(0),
                jwks_fetches: AtomicU64::new(0),
                jwks_fetch_failures: AtomicU64::new(0),
                discoveries: AtomicU64::new(0),
                dpop_max_age: self.dpop_max_age,
                jti_cache: (self.dpop_jti_cache > 0).then(|| Mutex::new(JtiCache::new(self.dpop_jti_cache))),
                resource: self.resource,
            }),
        }
    }
}

/// Verifies access tokens for one protected resource. Cheap to clone; clones
/// share the key cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("resource", &self.inner.resource.resource()).finish_non_exhaustive()
    }
}

struct Inner {
    resource: ProtectedResource,
    challenge: Arc<Challenge>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    policy: CachePolicy,
    /// Read on every request; replaced whole by a refresh.
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching, so concurrent refreshes collapse into one.
    refresh: tokio::sync::Mutex<RefreshState>,
    /// Why the last fetch failed (cleared by a success).
    last_error: Mutex<Option<String>>,
    ever_fetched: AtomicBool,
    /// The most recent completed fetch succeeded.
    last_attempt_ok: AtomicBool,
    last_success_at: AtomicI64,
    next_refresh_at: AtomicI64,
    last_unknown_kid_fetch: AtomicI64,
    /// A spawned refresh is in flight.
    refreshing: AtomicBool,
    /// Counts completed spawned refreshes; requests with an unknown `kid` wait on it.
    attempts_done: tokio::sync::watch::Sender<u64>,
    jwks_fetches: AtomicU64,
    jwks_fetch_failures: AtomicU64,
    discoveries: AtomicU64,
    dpop_max_age: i64,
    jti_cache: Option<Mutex<JtiCache>>,
}

/// The optional per-process memory of DPoP proofs: (key thumbprint, jti)
/// until the proof leaves the `iat` window, oldest forgotten first when full.
struct JtiCache {
    max: usize,
    seen: std::collections::HashSet<(String, String)>,
    order: std::collections::VecDeque<(i64, (String, String))>,
}

impl JtiCache {
    fn new(max: usize) -> Self {
        JtiCache { max, seen: Default::default(), order: Default::default() }
    }

    /// False when the proof was seen before.
    fn insert(&mut self, jkt: &str, jti: &str, expires_at: i64, now: i64) -> bool {
        while let Some((exp, _)) = self.order.front() {
            if *exp >= now && self.order.len() < self.max {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.seen.remove(&k);
            }
        }
        let key = (jkt.to_owned(), jti.to_owned());
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back((expires_at, key));
        true
    }
}

struct RefreshState {
    /// Configured, or discovered from the issuer's metadata and kept until a
    /// fetch from it fails.
    jwks_uri: Option<Url>,
}

#[derive(Debug, Clone, Copy)]
enum Reason {
    Startup,
    Periodic,
    UnknownKid,
    Stale,
}

/// How a bounded wait for a key refetch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refetch {
    Completed,
    TimedOut,
    /// None in flight, and none may start now (rate limit).
    NotStarted,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::Periodic => "periodic",
            Reason::UnknownKid => "unknown_kid",
            Reason::Stale => "max_key_age",
        }
    }
}

impl Verifier {
    /// A verifier with the system clock and the default cache policy. No
    /// network I/O happens until [`Verifier::warm_up`] or the first token.
    pub fn new(resource: ProtectedResource) -> Self {
        Self::builder(resource).build()
    }

    pub fn builder(resource: ProtectedResource) -> VerifierBuilder {
        VerifierBuilder {
            resource,
            clock: Arc::new(SystemClock),
            http: None,
            policy: CachePolicy::default(),
            dpop_max_age: 60,
            dpop_jti_cache: 0,
        }
    }

    pub fn resource(&self) -> &ProtectedResource {
        &self.inner.resource
    }

    pub(crate) fn challenge(&self) -> &Arc<Challenge> {
        &self.inner.challenge
    }

    /// Discovers the AS and fetches its keys now, so that misconfiguration
    /// (wrong issuer, unreachable AS) shows at start-up. Not required: the
    /// first token does the same.
    pub async fn warm_up(&self) -> Result<(), FetchError> {
        let mut state = self.inner.refresh.lock().await;
        self.refresh_locked(&mut state, Reason::Startup).await
    }

    pub fn stats(&self) -> VerifierStats {
        let i = &self.inner;
        VerifierStats {
            jwks_fetches: i.jwks_fetches.load(Ordering::Relaxed),
            jwks_fetch_failures: i.jwks_fetch_failures.load(Ordering::Relaxed),
            discoveries: i.discoveries.load(Ordering::Relaxed),
            kids: self.current_keys().kids().into_iter().map(str::to_owned).collect(),
            rejections: i.challenge.logs.counts(),
        }
    }

    /// Verifies `token` (the compact JWS, without `Bearer `): header rules,
    /// ES256 signature with the JWKS key its `kid` names (refetching the set
    /// once if the kid is new), then `iss`, `aud`, `exp`/`nbf`/`iat`.
    ///
    /// Logs `msg="verified"` at INFO or one WARN with the error name.
    ///
    /// This is the `Bearer` presentation: a DPoP-bound token is refused
    /// (RFC 9449 §7.1, `ErrDpopBoundToken`), and so is any token when the
    /// resource has [`ProtectedResource::with_dpop_required`]. Use
    /// [`Verifier::verify_dpop`] for `Authorization: DPoP`.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let res = self.verify_inner(token).await.and_then(|c| self.as_bearer(c));
        self.log(&res);
        res
    }

    /// Verifies a token presented as `Authorization: DPoP <token>` with the
    /// request's `DPoP` header values (exactly one is accepted), its method
    /// and the URL the client called (see [`ProtectedResource::htu_for`]):
    /// the token as in [`Verifier::verify`], then the proof (RFC 9449 §4.3
    /// and §7: `htm`, `htu`, `iat`, signature, `ath` = the token's hash), then
    /// that the proof's key is the token's `cnf.jkt`.
    pub async fn verify_dpop(
        &self,
        token: &str,
        proofs: &[&str],
        method: &str,
        url: &str,
    ) -> Result<Claims, VerifyError> {
        let res = match self.verify_inner(token).await {
            Ok(c) => self.check_dpop(c, token, proofs, method, url),
            Err(e) => Err(e),
        };
        self.log(&res);
        res
    }

    fn as_bearer(&self, c: Claims) -> Result<Claims, VerifyError> {
        if c.dpop_jkt.is_some() {
            return Err(VerifyError::DpopBound);
        }
        if self.inner.resource.dpop_required() {
            return Err(VerifyError::DpopRequired);
        }
        Ok(c)
    }

    fn check_dpop(
        &self,
        c: Claims,
        token: &str,
        proofs: &[&str],
        method: &str,
        url: &str,
    ) -> Result<Claims, VerifyError> {
        use authplane_core::dpop::{self, DpopError, Expect, Reason};
        let fail = |reason, detail: &str| VerifyError::Dpop(DpopError::new(reason, detail));
        let Some(bound) = c.dpop_jkt.as_deref() else {
            return Err(fail(Reason::KeyMismatch, "the access token is not DPoP-bound (no cnf.jkt)"));
        };
        let proof = match proofs {
            [one] => *one,
            [] => return Err(fail(Reason::Malformed, "no DPoP header")),
            _ => return Err(fail(Reason::Malformed, "more than one DPoP header")),
        };
        let now = self.inner.clock.now();
        let want = Expect {
            method,
            url,
            now,
            max_age: self.inner.dpop_max_age,
            leeway: self.inner.policy.leeway,
            access_token: Some(token),
            nonces: None,
        };
        let p = dpop::verify(proof, &want).map_err(VerifyError::Dpop)?;
        if p.jkt != bound {
            return Err(fail(Reason::KeyMismatch, "the DPoP proof's key is not the access token's cnf.jkt"));
        }
        if let Some(cache) = &self.inner.jti_cache {
            // Kept until the proof could no longer pass the iat window.
            let expires_at = p.iat.max(now) + self.inner.dpop_max_age;
            let mut guard = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let fresh = guard.insert(&p.jkt, &p.jti, expires_at, now);
            drop(guard);
            if !fresh {
                return Err(fail(Reason::Replay, "the DPoP proof was already used (jti seen before)"));
            }
        }
        Ok(c)
    }

    /// Like [`Verifier::verify`] but never waits for the network: an unknown
    /// `kid` (or an empty cache) is refused at once. A due periodic refresh
    /// still starts in the background when called inside a tokio runtime.
    pub fn verify_cached(&self, token: &str) -> Result<Claims, VerifyError> {
        let res = (|| {
            let jws = jws::parse(token)?;
            let now = self.inner.clock.now();
            self.maybe_refresh_in_background(now);
            let keys = self.current_keys();
            self.check(&jws, &keys, now)
        })()
        .and_then(|c| self.as_bearer(c));
        self.log(&res);
        res
    }

    async fn verify_inner(&self, token: &str) -> Result<Claims, VerifyError> {
        let jws = jws::parse(token)?;
        let now = self.inner.clock.now();
        self.maybe_refresh_in_background(now);
        if self.keys_too_old(now) {
            // Past the maximum age (the AS was down): try once more, bounded,
            // at most every `retry_after_failure`; `check` decides after.
            let i = &self.inner;
            let _ = self.refetch(|| now >= i.next_refresh_at.load(Ordering::Acquire), Reason::Stale).await;
        }
        let mut keys = self.current_keys();
        if !keys.keys.contains_key(&jws.kid) {
            keys = self.keys_for_unknown_kid(&jws.kid, now).await?;
        }
        self.check(&jws, &keys, now)
    }

    fn keys_too_old(&self, now: i64) -> bool {
        let i = &self.inner;
        i.ever_fetched.load(Ordering::Acquire)
            && now.saturating_sub(i.last_success_at.load(Ordering::Acquire)) > i.policy.max_key_age
    }

    fn check(&self, jws: &jws::Jws<'_>, keys: &KeySet, now: i64) -> Result<Claims, VerifyError> {
        let i = &self.inner;
        if self.keys_too_old(now) {
            let age = now.saturating_sub(i.last_success_at.load(Ordering::Acquire));
            return Err(VerifyError::KeysStale { age, max_age: i.policy.max_key_age });
        }
        if !keys.keys.contains_key(&jws.kid) && !self.inner.ever_fetched.load(Ordering::Acquire) {
            return Err(VerifyError::KeysUnavailable("no key set fetched yet".into()));
        }
        let mut claims = check_signed(jws, keys, &self.inner.resource, self.inner.policy.leeway, now)?;
        claims.challenge = Some(self.inner.challenge.clone());
        Ok(claims)
    }

    fn log(&self, res: &Result<Claims, VerifyError>) {
        const MAX: usize = logs::MAX_LOGGED_CLAIM_BYTES;
        match res {
            // The debugging checklist's step 6 line. Never the token itself;
            // claim values clipped, so a crafted token cannot make it long.
            Ok(c) if c.dpop_jkt.is_some() => tracing::info!(
                sub = %clip(&c.sub, MAX),
                scope = %clip(&c.scope_string(), MAX),
                aud = %logs::audiences(&c.aud),
                client_id = %clip(&c.client_id, MAX),
                token_type = "DPoP",
                "verified"
            ),
            Ok(c) => tracing::info!(
                sub = %clip(&c.sub, MAX),
                scope = %clip(&c.scope_string(), MAX),
                aud = %logs::audiences(&c.aud),
                client_id = %clip(&c.client_id, MAX),
                "verified"
            ),
            // Sampled per reason and counted (VerifierStats::rejections): a
            // flood of bad tokens must not become a flood of lines.
            Err(e) => {
                if let Sample::Log { suppressed } =
                    self.inner.challenge.logs.sample(e.err_name(), self.inner.clock.now())
                {
                    tracing::warn!(
                        error = e.err_name(),
                        code = e.code(),
                        detail = %clip(&e.to_string(), 300),
                        resource = self.inner.resource.resource(),
                        suppressed,
                        "token rejected"
                    );
                }
            }
        }
    }

    fn current_keys(&self) -> Arc<KeySet> {
        match self.inner.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn maybe_refresh_in_background(&self, now: i64) {
        let i = &self.inner;
        if !i.ever_fetched.load(Ordering::Acquire) || now < i.next_refresh_at.load(Ordering::Acquire) {
            return;
        }
        self.spawn_refresh(Reason::Periodic);
    }

    /// Starts a refresh in a task of its own unless one is in flight, so
    /// that a request giving up on it (timeout, client gone) does not cancel
    /// it. False when none could be started (one in flight, no runtime).
    fn spawn_refresh(&self, reason: Reason) -> bool {
        let i = &self.inner;
        if i.refreshing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            i.refreshing.store(false, Ordering::Release);
            return false;
        };
        let this = self.clone();
        rt.spawn(async move {
            {
                let mut state = this.inner.refresh.lock().await;
                // A periodic refresh may find that someone refreshed while it waited.
                let due = this.inner.clock.now() >= this.inner.next_refresh_at.load(Ordering::Acquire);
                if !matches!(reason, Reason::Periodic) || due {
                    let _ = this.refresh_locked(&mut state, reason).await;
                }
            }
            // Clear the flag before announcing the result: a waiter that saw
            // the flag set is then sure to see the count move.
            this.inner.refreshing.store(false, Ordering::Release);
            this.inner.attempts_done.send_modify(|n| *n += 1);
        });
        true
    }

    async fn keys_for_unknown_kid(&self, kid: &str, now: i64) -> Result<Arc<KeySet>, VerifyError> {
        let i = &self.inner;
        let ever = i.ever_fetched.load(Ordering::Acquire);
        let may_start = || {
            if ever {
                // One refetch per interval, claimed by exactly one request.
                let last = i.last_unknown_kid_fetch.load(Ordering::Acquire);
                now.saturating_sub(last) >= i.policy.unknown_kid_interval
                    && i.last_unknown_kid_fetch.compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire).is_ok()
            } else {
                now >= i.next_refresh_at.load(Ordering::Acquire)
            }
        };
        let reason = if ever { Reason::UnknownKid } else { Reason::Startup };
        match self.refetch(may_start, reason).await {
            Refetch::TimedOut => {
                let keys = self.current_keys();
                if keys.keys.contains_key(kid) {
                    return Ok(keys);
                }
                Err(VerifyError::KeysRefreshTimeout { timeout_ms: i.policy.unknown_kid_timeout_ms })
            }
            Refetch::Completed | Refetch::NotStarted => self.keys_as_last_fetched(kid),
        }
    }

    /// Joins the refresh in flight, or starts one when `may_start` says so,
    /// and waits for it at most `unknown_kid_timeout_ms`.
    async fn refetch(&self, may_start: impl FnOnce() -> bool, reason: Reason) -> Refetch {
        let i = &self.inner;
        let mut done = i.attempts_done.subscribe();
        let seen = *done.borrow_and_update();
        if !i.refreshing.load(Ordering::Acquire) {
            if !may_start() {
                return Refetch::NotStarted;
            }
            if !self.spawn_refresh(reason) && !i.refreshing.load(Ordering::Acquire) {
                // No tokio runtime to spawn on: fetch inline.
                let mut state = i.refresh.lock().await;
                let _ = self.refresh_locked(&mut state, reason).await;
                return Refetch::Completed;
            }
        }
        let wait = Duration::from_millis(i.policy.unknown_kid_timeout_ms);
        match tokio::time::timeout(wait, done.wait_for(|n| *n > seen)).await {
            Ok(_) => Refetch::Completed,
            Err(_) => Refetch::TimedOut,
        }
    }

    /// The cached keys when they can answer for `kid`: they hold it, or the
    /// last fetch completed (so `check` says `ErrUnknownKid`). When that
    /// fetch failed, nobody knows whether the `kid` is valid: 503.
    fn keys_as_last_fetched(&self, kid: &str) -> Result<Arc<KeySet>, VerifyError> {
        let i = &self.inner;
        let keys = self.current_keys();
        if keys.keys.contains_key(kid) || i.last_attempt_ok.load(Ordering::Acquire) {
            return Ok(keys);
        }
        let why = match i.last_error.lock() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        Err(VerifyError::KeysUnavailable(why.unwrap_or_else(|| "no key set fetched yet".into())))
    }

    /// Discovers (if needed) and fetches the JWKS; the caller holds the
    /// refresh lock. On failure the cached set stays.
    async fn refresh_locked(&self, state: &mut RefreshState, reason: Reason) -> Result<(), FetchError> {
        let i = &self.inner;
        let res = self.fetch(state).await;
        let now = i.clock.now();
        match res {
            Ok((set, skipped)) => {
                for s in &skipped {
                    tracing::warn!(error = "ErrJwksKeySkipped", detail = %s, "jwks key skipped");
                }
                let kids = set.kids().join(" ");
                let n = set.keys.len();
                match i.keys.write() {
                    Ok(mut k) => *k = Arc::new(set),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
                }
                i.ever_fetched.store(true, Ordering::Release);
                i.last_success_at.store(now, Ordering::Release);
                i.last_attempt_ok.store(true, Ordering::Release);
                i.next_refresh_at.store(now.saturating_add(i.policy.refresh_interval), Ordering::Release);
                self.set_last_error(None);
                tracing::info!(reason = reason.as_str(), keys = n, kids = %kids, "jwks refreshed");
                Ok(())
            }
            Err(e) => {
                i.jwks_fetch_failures.fetch_add(1, Ordering::Relaxed);
                let has_keys = i.ever_fetched.load(Ordering::Acquire);
                let retry = if has_keys { i.policy.retry_after_failure } else { i.policy.retry_without_keys };
                i.next_refresh_at.store(now.saturating_add(retry), Ordering::Release);
                // Rediscover next time unless the URL was configured.
                if i.resource.inner.jwks_uri.is_none() {
                    state.jwks_uri = None;
                }
                i.last_attempt_ok.store(false, Ordering::Release);
                let cached = self.current_keys().keys.len();
                if has_keys {
                    // Say plainly that old keys are still trusted, and until when.
                    let age = now.saturating_sub(i.last_success_at.load(Ordering::Acquire));
                    tracing::warn!(
                        error = e.err_name(),
                        detail = %clip(&e.to_string(), 300),
                        reason = reason.as_str(),
                        cached_keys = cached,
                        key_age_secs = age,
                        max_key_age_secs = i.policy.max_key_age,
                        retry_in_secs = retry,
                        action = "serving cached keys until max_key_age",
                        "jwks refresh failed"
                    );
                } else {
                    tracing::warn!(
                        error = e.err_name(),
                        detail = %clip(&e.to_string(), 300),
                        reason = reason.as_str(),
                        cached_keys = cached,
                        retry_in_secs = retry,
                        "jwks refresh failed"
                    );
                }
                self.set_last_error(Some(e.to_string()));
                Err(e)
            }
        }
    }

    fn set_last_error(&self, e: Option<String>) {
        match self.inner.last_error.lock() {
            Ok(mut g) => *g = e,
            Err(poisoned) => *poisoned.into_inner() = e,
        }
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<(KeySet, Vec<String>), FetchError> {
        let i = &self.inner;
        let uri = match &state.jwks_uri {
            Some(u) => u.clone(),
            None => {
                i.discoveries.fetch_add(1, Ordering::Relaxed);
                let u =
                    jwks::discover_jwks_uri(&i.http, i.resource.issuer(), i.resource.inner.as_metadata_url.as_ref())
                        .await?;
                state.jwks_uri = Some(u.clone());
                u
            }
        };
        i.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        jwks::fetch_jwks(&i.http, &uri).await
    }
}

/// The signature with the key the `kid` names, then the claims: what a
/// verification decides once the key set is in hand.
fn check_signed(
    jws: &jws::Jws<'_>,
    keys: &KeySet,
    resource: &ProtectedResource,
    leeway: i64,
    now: i64,
) -> Result<Claims, VerifyError> {
    let key = keys.keys.get(&jws.kid).ok_or_else(|| VerifyError::UnknownKid(jws.kid.clone()))?;
    key.verify_sig(jws.signing_input, &jws.signature).map_err(|_| VerifyError::BadSignature)?;
    let payload = jws::decode_payload(jws.payload_b64)?;
    let want = Expectations { issuer: resource.issuer(), resource: &resource.inner.resource, leeway };
    claims::check(&payload, &want, now)
}

/// Verifies `token` against a JWKS document already in hand, with the rules
/// of [`Verifier::verify`] (header, ES256 signature, `iss`, `aud`, times) but
/// no cache, no clock and no network. For the fuzz targets (`fuzz/`), which
/// must reach the parsers without an authorization server; not a stable API.
#[doc(hidden)]
pub fn verify_with_jwks(
    resource: &ProtectedResource,
    jwks: &[u8],
    token: &str,
    now: i64,
    leeway: i64,
) -> Result<Claims, VerifyError> {
    let jws = jws::parse(token)?;
    let (keys, _skipped) = jwks::parse_jwks(jwks, "jwks").map_err(|e| VerifyError::KeysUnavailable(e.to_string()))?;
    check_signed(&jws, &keys, resource, leeway, now)
}
