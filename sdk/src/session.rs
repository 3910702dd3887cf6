//! MCP sessions bound to the principal that created them, and bounded.
//!
//! An `Mcp-Session-Id` is not a credential (MCP security best practices:
//! "bind session IDs to user-specific information"). A [`Sessions`] registry,
//! handed to the bearer-auth middleware, records who created each session —
//! the token's `iss`, `sub` and `client_id` — from the `Mcp-Session-Id` the
//! MCP server returns to `initialize`, and from then on:
//!
//! - a request naming that session with a token of another principal gets
//!   `404` (what an MCP server answers for a session that does not exist, so
//!   nothing is revealed) and one WARN `msg="session principal mismatch"`;
//! - a request naming a session the registry does not know gets `404` too:
//!   the registry, not the MCP library, decides which sessions exist, so a
//!   session the registry reaped can never be used by anyone;
//! - each principal holds at most [`SessionLimits::per_principal`] sessions
//!   (a new one closes its least recently used), a session idle for
//!   [`SessionLimits::idle_timeout_secs`] is closed, and when
//!   [`SessionLimits::max_sessions`] are open a request that would create
//!   another gets `503` with `Retry-After`.
//!
//! Closing a session in the MCP library is the application's part: give
//! [`Sessions::on_close`] a callback (for rmcp, `LocalSessionManager::close_session`).
//!
//! The registry is framework-neutral; the axum layer and the actix
//! middleware call it around the inner service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::challenge::{self, Rejection};
use crate::clock::{Clock, SystemClock};
use crate::logs::{LogSampler, Sample, clip};
use crate::{Claims, logs};

/// The MCP session header (MCP transports, streamable HTTP).
pub const MCP_SESSION_ID: &str = "mcp-session-id";

/// Who created a session: the token's issuer, subject and client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub iss: String,
    pub sub: String,
    pub client_id: String,
}

impl Principal {
    pub fn of(claims: &Claims) -> Self {
        Principal { iss: claims.iss.clone(), sub: claims.sub.clone(), client_id: claims.client_id.clone() }
    }

    fn matches(&self, claims: &Claims) -> bool {
        self.iss == claims.iss && self.sub == claims.sub && self.client_id == claims.client_id
    }
}

/// The bounds of a [`Sessions`] registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions one principal may hold; creating one more closes that
    /// principal's least recently used session. Default 8.
    pub per_principal: usize,
    /// Sessions open at once; beyond it, session-creating requests get 503.
    /// Default 1,000.
    pub max_sessions: usize,
    /// A session without a request for this long is closed. Default 300 s
    /// (rmcp's own keep-alive); clients keep a session by using it or pinging.
    pub idle_timeout_secs: i64,
    /// `Retry-After` of the 503 when `max_sessions` are open. Default 10 s.
    pub retry_after_secs: u32,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits { per_principal: 8, max_sessions: 1_000, idle_timeout_secs: 300, retry_after_secs: 10 }
    }
}

/// Counters of a [`Sessions`] registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub open: usize,
    pub created: u64,
    /// Closed because their principal opened one more than `per_principal`.
    pub evicted_per_principal: u64,
    pub closed_idle: u64,
    /// Ended by the client (`DELETE`) or found gone in the MCP server.
    pub ended: u64,
    /// Requests refused: another principal's session.
    pub principal_mismatches: u64,
    /// Requests refused: a session the registry does not know.
    pub unknown: u64,
    /// Session-creating requests refused because `max_sessions` were open.
    pub refused_full: u64,
}

type CloseHook = Arc<dyn Fn(String) + Send + Sync>;

/// The registry of MCP sessions and who owns them. Cheap to clone; clones
/// share state. See the [module documentation](self).
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    limits: SessionLimits,
    clock: Arc<dyn Clock>,
    on_close: Option<CloseHook>,
    state: Mutex<State>,
    logs: LogSampler,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Entry>,
    by_principal: HashMap<Arc<Principal>, Vec<String>>,
    /// Session-creating requests in flight (admitted, not yet answered).
    pending: usize,
    last_sweep: i64,
    stats: SessionStats,
}

struct Entry {
    principal: Arc<Principal>,
    last_seen: i64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("limits", &self.inner.limits).finish_non_exhaustive()
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SessionLimits::default())
    }
}

/// What the middleware does with a request, decided before the inner service.
#[derive(Debug)]
pub(crate) enum Ticket {
    /// No session involved (e.g. GET without a session header): nothing to record.
    None,
    /// A request in an existing session owned by the caller.
    Existing { id: String, delete: bool },
    /// A request that may create a session (POST without a session header);
    /// a slot is reserved until [`Sessions::after`].
    New { principal: Arc<Principal> },
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Self {
        Self::build(limits, Arc::new(SystemClock), None)
    }

    fn build(limits: SessionLimits, clock: Arc<dyn Clock>, on_close: Option<CloseHook>) -> Self {
        let limits = SessionLimits {
            per_principal: limits.per_principal.max(1),
            max_sessions: limits.max_sessions.max(1),
            idle_timeout_secs: limits.idle_timeout_secs.max(1),
            retry_after_secs: limits.retry_after_secs,
        };
        Sessions {
            inner: Arc::new(Inner {
                limits,
                clock,
                on_close,
                state: Mutex::new(State::default()),
                logs: LogSampler::default(),
            }),
        }
    }

    /// The time source for idle timeouts (tests).
    pub fn with_clock(self, clock: impl Clock) -> Self {
        Self::build(self.inner.limits, Arc::new(clock), self.inner.on_close.clone())
    }

    /// Called with the id of each session the registry closes (per-principal
    /// cap, idle timeout), so the MCP server frees it too. Called outside any
    /// lock; it must not block (spawn the work). For rmcp:
    ///
    /// ```ignore
    /// let manager = Arc::new(LocalSessionManager::default());
    /// let m = manager.clone();
    /// let sessions = Sessions::new(SessionLimits::default()).on_close(move |id| {
    ///     let m = m.clone();
    ///     tokio::spawn(async move { let _ = m.close_session(&id.into()).await; });
    /// });
    /// ```
    pub fn on_close(self, f: impl Fn(String) + Send + Sync + 'static) -> Self {
        Self::build(self.inner.limits, self.inner.clock.clone(), Some(Arc::new(f)))
    }

    pub fn limits(&self) -> SessionLimits {
        self.inner.limits
    }

    pub fn stats(&self) -> SessionStats {
        let st = self.lock();
        SessionStats { open: st.sessions.len(), ..st.stats.clone() }
    }

    /// Closes every session idle for longer than the idle timeout. Runs by
    /// itself as requests arrive; call it from a timer to free memory while
    /// no request comes. Returns how many were closed.
    pub fn reap_idle(&self) -> usize {
        let now = self.inner.clock.now();
        let closed = {
            let mut st = self.lock();
            self.sweep_locked(&mut st, now)
        };
        let n = closed.len();
        self.close_all(closed, "idle");
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.inner.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Before the inner service: 404 for a session that is not the caller's
    /// (or does not exist), 503 when a new session would exceed the cap.
    /// The returned [`Pending`] must see the response ([`Pending::finish`]);
    /// dropped unfinished (the client went away), it frees its slot.
    pub(crate) fn before(&self, method: &str, session: Option<&[u8]>, claims: &Claims) -> Result<Pending, Rejection> {
        let ticket = self.ticket(method, session, claims)?;
        Ok(Pending { sessions: self.clone(), ticket: Some(ticket) })
    }

    fn ticket(&self, method: &str, session: Option<&[u8]>, claims: &Claims) -> Result<Ticket, Rejection> {
        let now = self.inner.clock.now();
        let mut to_close = Vec::new();
        let res = {
            let mut st = self.lock();
            if now.saturating_sub(st.last_sweep) >= self.sweep_interval() {
                to_close = self.sweep_locked(&mut st, now);
            }
            match session {
                Some(raw) => self.check_existing(&mut st, raw, method, claims, now, &mut to_close),
                None if method == "POST" => self.admit(&mut st, claims),
                None => Ok(Ticket::None),
            }
        };
        self.close_all(to_close, "idle");
        res
    }

    fn check_existing(
        &self,
        st: &mut State,
        raw: &[u8],
        method: &str,
        claims: &Claims,
        now: i64,
        to_close: &mut Vec<String>,
    ) -> Result<Ticket, Rejection> {
        let id = std::str::from_utf8(raw).unwrap_or_default();
        let Some((owner, last_seen)) = st.sessions.get(id).map(|e| (e.principal.clone(), e.last_seen)) else {
            st.stats.unknown += 1;
            tracing::debug!(session = %fingerprint(id), sub = %clip(&claims.sub, 64), "unknown session");
            return Err(challenge::session_not_found());
        };
        if !owner.matches(claims) {
            st.stats.principal_mismatches += 1;
            if let Sample::Log { suppressed } =
                self.inner.logs.sample("ErrSessionPrincipalMismatch", self.inner.clock.now())
            {
                tracing::warn!(
                    error = "ErrSessionPrincipalMismatch",
                    sub = %clip(&claims.sub, logs::MAX_LOGGED_CLAIM_BYTES),
                    client_id = %clip(&claims.client_id, logs::MAX_LOGGED_CLAIM_BYTES),
                    session_sub = %clip(&owner.sub, logs::MAX_LOGGED_CLAIM_BYTES),
                    session_client_id = %clip(&owner.client_id, logs::MAX_LOGGED_CLAIM_BYTES),
                    session = %fingerprint(id),
                    suppressed,
                    "session principal mismatch"
                );
            }
            return Err(challenge::session_not_found());
        }
        if now.saturating_sub(last_seen) > self.inner.limits.idle_timeout_secs {
            // Expired but not swept yet: gone, as for everyone.
            let id = id.to_owned();
            self.remove_locked(st, &id);
            st.stats.closed_idle += 1;
            to_close.push(id);
            return Err(challenge::session_not_found());
        }
        if let Some(e) = st.sessions.get_mut(id) {
            e.last_seen = now;
        }
        Ok(Ticket::Existing { id: id.to_owned(), delete: method == "DELETE" })
    }

    fn admit(&self, st: &mut State, claims: &Claims) -> Result<Ticket, Rejection> {
        let principal = Arc::new(Principal::of(claims));
        if st.sessions.len() + st.pending >= self.inner.limits.max_sessions {
            st.stats.refused_full += 1;
            if let Sample::Log { suppressed } = self.inner.logs.sample("ErrSessionLimit", self.inner.clock.now()) {
                tracing::warn!(
                    error = "ErrSessionLimit",
                    open = st.sessions.len(),
                    max_sessions = self.inner.limits.max_sessions,
                    sub = %clip(&claims.sub, logs::MAX_LOGGED_CLAIM_BYTES),
                    client_id = %clip(&claims.client_id, logs::MAX_LOGGED_CLAIM_BYTES),
                    suppressed,
                    "session limit reached"
                );
            }
            return Err(challenge::too_many_sessions(self.inner.limits.retry_after_secs));
        }
        st.pending += 1;
        Ok(Ticket::New { principal })
    }

    /// After the inner service answered with `status` and (maybe) a session id.
    fn after(&self, ticket: Ticket, status: u16, response_session: Option<&[u8]>) {
        let now = self.inner.clock.now();
        let mut to_close = Vec::new();
        {
            let mut st = self.lock();
            match ticket {
                Ticket::None => {}
                Ticket::Existing { id, delete } => {
                    let gone = status == 404 || (delete && (200..300).contains(&status));
                    if gone {
                        if self.remove_locked(&mut st, &id) {
                            st.stats.ended += 1;
                        }
                    } else if let Some(e) = st.sessions.get_mut(&id) {
                        e.last_seen = now;
                    }
                }
                Ticket::New { principal } => {
                    st.pending = st.pending.saturating_sub(1);
                    let id = response_session.and_then(|v| std::str::from_utf8(v).ok()).filter(|s| !s.is_empty());
                    if let (Some(id), true) = (id, (200..300).contains(&status)) {
                        to_close = self.insert_locked(&mut st, id.to_owned(), principal, now);
                    }
                }
            }
        }
        self.close_all(to_close, "per_principal_cap");
    }

    /// The inner service failed or the request was dropped before it answered.
    fn abandon(&self, ticket: Ticket) {
        if let Ticket::New { .. } = ticket {
            let mut st = self.lock();
            st.pending = st.pending.saturating_sub(1);
        }
    }

    fn insert_locked(&self, st: &mut State, id: String, principal: Arc<Principal>, now: i64) -> Vec<String> {
        if st.sessions.contains_key(&id) {
            return Vec::new();
        }
        // One Arc per principal, shared by its sessions.
        let principal = st.by_principal.get_key_value(&principal).map_or(principal, |(k, _)| k.clone());
        st.sessions.insert(id.clone(), Entry { principal: principal.clone(), last_seen: now });
        st.stats.created += 1;
        let ids = st.by_principal.entry(principal.clone()).or_default();
        ids.push(id);
        let mut evicted = Vec::new();
        while ids.len() > self.inner.limits.per_principal {
            // Least recently used first (ties: the oldest, which is first).
            let lru = ids
                .iter()
                .enumerate()
                .min_by_key(|(_, sid)| st.sessions.get(*sid).map_or(i64::MIN, |e| e.last_seen))
                .map(|(i, _)| i);
            let Some(i) = lru else { break };
            evicted.push(ids.remove(i));
        }
        for sid in &evicted {
            st.sessions.remove(sid);
            st.stats.evicted_per_principal += 1;
        }
        // Sampled like the refusals: a storm of initializes by one token
        // must not become a storm of lines.
        if !evicted.is_empty()
            && let Sample::Log { suppressed } = self.inner.logs.sample("SessionEvicted", now)
        {
            tracing::info!(
                sub = %clip(&principal.sub, logs::MAX_LOGGED_CLAIM_BYTES),
                client_id = %clip(&principal.client_id, logs::MAX_LOGGED_CLAIM_BYTES),
                evicted = evicted.len(),
                per_principal = self.inner.limits.per_principal,
                suppressed,
                "session evicted"
            );
        }
        evicted
    }

    fn remove_locked(&self, st: &mut State, id: &str) -> bool {
        let Some(entry) = st.sessions.remove(id) else { return false };
        if let Some(ids) = st.by_principal.get_mut(&entry.principal) {
            ids.retain(|s| s != id);
            if ids.is_empty() {
                st.by_principal.remove(&entry.principal);
            }
        }
        true
    }

    fn sweep_interval(&self) -> i64 {
        (self.inner.limits.idle_timeout_secs / 4).clamp(1, 30)
    }

    fn sweep_locked(&self, st: &mut State, now: i64) -> Vec<String> {
        st.last_sweep = now;
        let idle = self.inner.limits.idle_timeout_secs;
        let expired: Vec<String> = st
            .sessions
            .iter()
            .filter(|(_, e)| now.saturating_sub(e.last_seen) > idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove_locked(st, id);
            st.stats.closed_idle += 1;
        }
        expired
    }

    fn close_all(&self, ids: Vec<String>, why: &'static str) {
        if ids.is_empty() {
            return;
        }
        tracing::debug!(closed = ids.len(), reason = why, "sessions closed");
        if let Some(f) = &self.inner.on_close {
            for id in ids {
                f(id);
            }
        }
    }
}

/// A request admitted by [`Sessions::before`], waiting for its response.
#[derive(Debug)]
pub(crate) struct Pending {
    sessions: Sessions,
    ticket: Option<Ticket>,
}

impl Pending {
    /// Records what the response says: a new session's id (from
    /// `Mcp-Session-Id`), a session ended (`DELETE`) or gone (404).
    pub(crate) fn finish(mut self, status: u16, response_session: Option<&[u8]>) {
        if let Some(t) = self.ticket.take() {
            self.sessions.after(t, status, response_session);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.sessions.abandon(t);
        }
    }
}

/// Enough of a session id to correlate log lines, not enough to use it.
fn fingerprint(id: &str) -> String {
    let head: String = id.chars().take(8).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    fn claims(sub: &str, client_id: &str) -> Claims {
        Claims {
            iss: "http://localhost:9000".into(),
            sub: sub.into(),
            aud: vec!["http://localhost:8080/mcp".into()],
            client_id: client_id.into(),
            scope: vec![],
            iat: 0,
            exp: 0,
            nbf: None,
            jti: "j".into(),
            dpop_jkt: None,
            extra: serde_json::Map::new(),
            challenge: None,
        }
    }

    fn create(s: &Sessions, c: &Claims, id: &str) {
        s.before("POST", None, c).unwrap().finish(200, Some(id.as_bytes()));
    }

    #[test]
    fn a_session_answers_only_its_creator() {
        let s = Sessions::default();
        let probe = claims("probe", "c1");
        create(&s, &probe, "s1");
        assert!(s.before("POST", Some(b"s1"), &probe).is_ok());
        for other in [claims("mallory", "c1"), claims("probe", "other"), {
            let mut c = claims("probe", "c1");
            c.iss = "http://evil.example".into();
            c
        }] {
            let r = s.before("POST", Some(b"s1"), &other).unwrap_err();
            assert_eq!(r.status, 404, "{other:?}");
        }
        // Unknown ids are 404 too, with the same body.
        let unknown = s.before("GET", Some(b"nope"), &probe).unwrap_err();
        let mismatch = s.before("GET", Some(b"s1"), &claims("mallory", "c1")).unwrap_err();
        assert_eq!((unknown.status, &unknown.body), (mismatch.status, &mismatch.body));
        let st = s.stats();
        assert_eq!((st.open, st.principal_mismatches, st.unknown), (1, 4, 1));
    }

    #[test]
    fn per_principal_cap_closes_the_least_recently_used() {
        let closed = Arc::new(Mutex::new(Vec::new()));
        let c2 = closed.clone();
        let clock = ManualClock::new(1_000);
        let s = Sessions::new(SessionLimits { per_principal: 2, ..SessionLimits::default() })
            .with_clock(clock.clone())
            .on_close(move |id| c2.lock().unwrap().push(id));
        let a = claims("a", "c");
        create(&s, &a, "a1");
        clock.advance(1);
        create(&s, &a, "a2");
        clock.advance(1);
        // a1 is used, so a2 is now the least recently used.
        s.before("POST", Some(b"a1"), &a).unwrap().finish(200, None);
        clock.advance(1);
        create(&s, &a, "a3");
        assert_eq!(*closed.lock().unwrap(), vec!["a2".to_owned()]);
        assert_eq!(s.before("GET", Some(b"a2"), &a).unwrap_err().status, 404);
        assert!(s.before("GET", Some(b"a1"), &a).is_ok());
        // Another principal is not affected.
        create(&s, &claims("b", "c"), "b1");
        assert_eq!(s.stats().open, 3);
        assert_eq!(s.stats().evicted_per_principal, 1);
    }

    #[test]
    fn idle_sessions_are_closed() {
        let closed = Arc::new(Mutex::new(Vec::new()));
        let c2 = closed.clone();
        let clock = ManualClock::new(1_000);
        let s = Sessions::new(SessionLimits { idle_timeout_secs: 60, ..SessionLimits::default() })
            .with_clock(clock.clone())
            .on_close(move |id| c2.lock().unwrap().push(id));
        let a = claims("a", "c");
        create(&s, &a, "busy");
        create(&s, &a, "idle");
        clock.advance(40);
        assert!(s.before("GET", Some(b"busy"), &a).is_ok());
        clock.advance(40);
        assert_eq!(s.reap_idle(), 1);
        assert_eq!(*closed.lock().unwrap(), vec!["idle".to_owned()]);
        assert_eq!(s.before("GET", Some(b"idle"), &a).unwrap_err().status, 404);
        clock.advance(15);
        assert_eq!(s.reap_idle(), 0, "busy was used 55 s ago");
        // Expired 6 s after the last sweep: refused at once, and closed.
        clock.advance(6);
        assert_eq!(s.before("GET", Some(b"busy"), &a).unwrap_err().status, 404);
        assert_eq!(s.stats().open, 0);
        assert_eq!(closed.lock().unwrap().len(), 2);
    }

    #[test]
    fn the_global_cap_refuses_new_sessions_with_503() {
        let s = Sessions::new(SessionLimits { max_sessions: 2, per_principal: 8, ..SessionLimits::default() });
        create(&s, &claims("a", "c"), "1");
        // A request in flight holds its slot.
        let pending = s.before("POST", None, &claims("b", "c")).unwrap();
        let r = s.before("POST", None, &claims("c", "c")).unwrap_err();
        assert_eq!(r.status, 503);
        assert!(r.headers.iter().any(|(k, v)| k == "retry-after" && v == "10"));
        // Answered without a session (e.g. a stateless request): the slot is free again.
        pending.finish(200, None);
        // A dropped request (the client went away) frees its slot as well.
        drop(s.before("POST", None, &claims("e", "c")).unwrap());
        create(&s, &claims("c", "c"), "2");
        assert_eq!(s.stats().open, 2);
        // Requests in existing sessions still work when full.
        assert!(s.before("POST", Some(b"1"), &claims("a", "c")).is_ok());
        // DELETE ends a session and frees its slot.
        s.before("DELETE", Some(b"1"), &claims("a", "c")).unwrap().finish(202, None);
        create(&s, &claims("d", "c"), "3");
        assert_eq!(s.stats().open, 2);
        assert_eq!(s.stats().refused_full, 1);
    }

    #[test]
    fn a_session_the_mcp_server_forgot_is_forgotten() {
        let s = Sessions::default();
        let a = claims("a", "c");
        create(&s, &a, "x");
        s.before("POST", Some(b"x"), &a).unwrap().finish(404, None);
        assert_eq!(s.stats().open, 0);
        assert_eq!(s.stats().ended, 1);
    }
}
