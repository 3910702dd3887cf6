//! [`Verifier`]: offline verification of AuthPlane access tokens against a
//! cached copy of the AS's JWKS.
//!
//! Cache policy (ARCHITECTURE §4, issue 4):
//! - keys are fetched on first use (or by [`Verifier::warm_up`]) from the
//!   `jwks_uri` of the issuer's metadata (RFC 8414);
//! - every `refresh_interval` (5 min) a request that finds the set due starts
//!   one background refresh and carries on with the cached set, so the steady
//!   state makes no network call on the request path;
//! - a `kid` not in the set triggers one inline refetch, at most once per
//!   `unknown_kid_interval` (30 s); concurrent requests share it;
//! - a failed fetch keeps the last good set (the AS may be restarting).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use url::Url;

use crate::challenge::Challenge;
use crate::claims::{self, Expectations};
use crate::clock::{Clock, SystemClock};
use crate::jwks::{self, KeySet};
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
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            leeway: 30,
            refresh_interval: 300,
            unknown_kid_interval: 30,
            retry_after_failure: 30,
            retry_without_keys: 5,
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
}

/// Builds a [`Verifier`] with a non-default clock, HTTP client or cache policy.
pub struct VerifierBuilder {
    resource: ProtectedResource,
    clock: Arc<dyn Clock>,
    http: Option<reqwest::Client>,
    policy: CachePolicy,
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

    pub fn build(self) -> Verifier {
        let challenge = Arc::new(Challenge::new(&self.resource));
        let jwks_uri = self.resource.inner.jwks_uri.clone();
        Verifier {
            inner: Arc::new(Inner {
                challenge,
                clock: self.clock,
                http: self.http.unwrap_or_else(jwks::default_http_client),
                policy: self.policy,
                keys: RwLock::new(Arc::new(KeySet::default())),
                refresh: tokio::sync::Mutex::new(RefreshState { jwks_uri, last_error: None }),
                ever_fetched: AtomicBool::new(false),
                next_refresh_at: AtomicI64::new(i64::MIN),
                last_unknown_kid_fetch: AtomicI64::new(i64::MIN),
                refreshing: AtomicBool::new(false),
                jwks_fetches: AtomicU64::new(0),
                jwks_fetch_failures: AtomicU64::new(0),
                discoveries: AtomicU64::new(0),
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
    ever_fetched: AtomicBool,
    next_refresh_at: AtomicI64,
    last_unknown_kid_fetch: AtomicI64,
    refreshing: AtomicBool,
    jwks_fetches: AtomicU64,
    jwks_fetch_failures: AtomicU64,
    discoveries: AtomicU64,
}

struct RefreshState {
    /// Configured, or discovered from the issuer's metadata and kept until a
    /// fetch from it fails.
    jwks_uri: Option<Url>,
    last_error: Option<FetchError>,
}

#[derive(Debug, Clone, Copy)]
enum Reason {
    Startup,
    Periodic,
    UnknownKid,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::Periodic => "periodic",
            Reason::UnknownKid => "unknown_kid",
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
        VerifierBuilder { resource, clock: Arc::new(SystemClock), http: None, policy: CachePolicy::default() }
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
        }
    }

    /// Verifies `token` (the compact JWS, without `Bearer `): header rules,
    /// ES256 signature with the JWKS key its `kid` names (refetching the set
    /// once if the kid is new), then `iss`, `aud`, `exp`/`nbf`/`iat`.
    ///
    /// Logs `msg="verified"` at INFO or one WARN with the error name.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let res = self.verify_inner(token).await;
        self.log(&res);
        res
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
        })();
        self.log(&res);
        res
    }

    async fn verify_inner(&self, token: &str) -> Result<Claims, VerifyError> {
        let jws = jws::parse(token)?;
        let now = self.inner.clock.now();
        self.maybe_refresh_in_background(now);
        let mut keys = self.current_keys();
        if !keys.keys.contains_key(&jws.kid) {
            keys = self.keys_for_unknown_kid(&jws.kid, now).await?;
        }
        self.check(&jws, &keys, now)
    }

    fn check(&self, jws: &jws::Jws<'_>, keys: &KeySet, now: i64) -> Result<Claims, VerifyError> {
        let key = match keys.keys.get(&jws.kid) {
            Some(k) => k,
            None if !self.inner.ever_fetched.load(Ordering::Acquire) => {
                return Err(VerifyError::KeysUnavailable("no key set fetched yet".into()));
            }
            None => return Err(VerifyError::UnknownKid(jws.kid.clone())),
        };
        key.verify_sig(jws.signing_input, &jws.signature).map_err(|_| VerifyError::BadSignature)?;
        let payload = jws::decode_payload(jws.payload_b64)?;
        let want = Expectations {
            issuer: self.inner.resource.issuer(),
            resource: &self.inner.resource.inner.resource,
            leeway: self.inner.policy.leeway,
        };
        let mut claims = claims::check(&payload, &want, now)?;
        claims.challenge = Some(self.inner.challenge.clone());
        Ok(claims)
    }

    fn log(&self, res: &Result<Claims, VerifyError>) {
        match res {
            // The debugging checklist's step 6 line. Never the token itself.
            Ok(c) => tracing::info!(
                sub = %c.sub,
                scope = %c.scope_string(),
                aud = %c.aud.join(" "),
                client_id = %c.client_id,
                "verified"
            ),
            Err(e) => tracing::warn!(
                error = e.err_name(),
                code = e.code(),
                detail = %truncate(&e.to_string(), 300),
                resource = self.inner.resource.resource(),
                "token rejected"
            ),
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
        if i.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            i.refreshing.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            {
                let mut state = this.inner.refresh.lock().await;
                // Someone may have refreshed while we waited for the lock.
                if this.inner.clock.now() >= this.inner.next_refresh_at.load(Ordering::Acquire) {
                    let _ = this.refresh_locked(&mut state, Reason::Periodic).await;
                }
            }
            this.inner.refreshing.store(false, Ordering::Release);
        });
    }

    async fn keys_for_unknown_kid(&self, kid: &str, now: i64) -> Result<Arc<KeySet>, VerifyError> {
        let i = &self.inner;
        let mut state = i.refresh.lock().await;
        // A concurrent request may have fetched the new key while we waited.
        let keys = self.current_keys();
        if keys.keys.contains_key(kid) {
            return Ok(keys);
        }
        if !i.ever_fetched.load(Ordering::Acquire) {
            if now >= i.next_refresh_at.load(Ordering::Acquire) {
                let _ = self.refresh_locked(&mut state, Reason::Startup).await;
            }
            if !i.ever_fetched.load(Ordering::Acquire) {
                let why = state.last_error.as_ref().map_or_else(|| "no key set fetched yet".into(), |e| e.to_string());
                return Err(VerifyError::KeysUnavailable(why));
            }
            return Ok(self.current_keys());
        }
        let last = i.last_unknown_kid_fetch.load(Ordering::Acquire);
        if now.saturating_sub(last) >= i.policy.unknown_kid_interval {
            i.last_unknown_kid_fetch.store(now, Ordering::Release);
            let _ = self.refresh_locked(&mut state, Reason::UnknownKid).await;
        }
        Ok(self.current_keys())
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
                i.next_refresh_at.store(now.saturating_add(i.policy.refresh_interval), Ordering::Release);
                state.last_error = None;
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
                tracing::warn!(
                    error = e.err_name(),
                    detail = %e,
                    reason = reason.as_str(),
                    cached_keys = self.current_keys().keys.len(),
                    retry_in_secs = retry,
                    "jwks refresh failed"
                );
                state.last_error = Some(e.clone());
                Err(e)
            }
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

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
