//! Signing a user in on the login page: the failure throttle, a bounded
//! password-hashing slot, argon2id off the async workers, the session. The
//! handler renders what this returns.

use tracing::Instrument;

use super::Deps;
use super::error::Error;
use super::token::RequestIds;
use crate::limits::{Schedule, Subject};
use crate::random::{secret_token, sha256_hex};
use crate::store::audit::{self, AuditEvent};
use crate::store::{entries, oauth as rows};

/// A session for the browser: the cookie value (stored only as a digest).
#[derive(Debug)]
pub struct SignedIn {
    pub user_id: String,
    pub session: String,
    pub ttl: i64,
}

/// Why a sign-in was refused; each has its own page and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures for this account or address: retry after this
    /// many seconds (429).
    Throttled { retry_after: u64 },
    /// No password-hashing slot became free in time (503, retry in 5 s).
    Overloaded,
    /// Wrong username or password (401). Unknown users take as long.
    Wrong,
}

/// argon2id of a random string, verified when the username is unknown, so
/// that timing does not tell which usernames exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Wc3m9wV2kD1XgBn8QoS5lqRkL1S7F9oC3tC8y7m8y4Q";

/// Signs `username` in for the authorization request of `client_id`. A
/// storage failure is the outer error; a refusal is the inner one, with its
/// audit rows written.
#[allow(clippy::too_many_arguments)]
pub async fn sign_in(
    deps: &Deps,
    username: &str,
    password: String,
    addr: Option<std::net::IpAddr>,
    client_id: &str,
    ids: &RequestIds,
    now: i64,
) -> Result<Result<SignedIn, Refusal>, Error> {
    let limits = deps.config.load().limits.clone();
    let now_ms = deps.clock.now_ms();
    let subject = Subject::Login;
    if limits.failure_throttle
        && let Some(ms) = deps.throttle.blocked(subject, username, addr, now_ms)
    {
        // Counted per refused attempt by the handler; the audit row was
        // written when the delay began (below), so a flood writes no rows.
        return Ok(Err(Refusal::Throttled { retry_after: (ms as u64).div_ceil(1000) }));
    }
    let user = entries::find_user(&deps.db, username).await?.filter(|u| u.username == username);
    // argon2 (~19 MiB each) runs off the async workers, at most
    // `limits.password_hash_concurrency` at once.
    // A user an identity provider created has no password: it takes as long
    // as an unknown one, and never matches.
    let user = user.filter(|u| !u.password_hash.expose().is_empty());
    let hash = user.as_ref().map(|u| u.password_hash.expose().clone()).unwrap_or_else(|| DUMMY_HASH.to_owned());
    let Ok(permit) = deps.hash_gate.acquire(limits.password_hash_queue_timeout.to_std()).await else {
        return Ok(Err(Refusal::Overloaded));
    };
    let memory = deps.password_memory.clone();
    let password_ok = tokio::task::spawn_blocking(move || {
        let ok = memory.verify(&password, &hash);
        drop(permit);
        ok
    })
    .instrument(tracing::debug_span!(
        "crypto.verify",
        authplane.layer = "crypto",
        purpose = "password",
        algorithm = "argon2id"
    ))
    .await
    .unwrap_or(false);
    let Some(user) = user.filter(|_| password_ok && !username.is_empty()) else {
        let imposed_ms = if limits.failure_throttle {
            deps.throttle.failed(subject, username, addr, now_ms, &Schedule::from_config(&limits))
        } else {
            0
        };
        audit_refusal(deps, ids, "login_failed", client_id, username, None).await;
        if imposed_ms > 0 {
            let secs = (imposed_ms as u64).div_ceil(1000);
            tracing::warn!(client_id, retry_after_s = secs, "sign-ins throttled after repeated failures");
            audit_refusal(deps, ids, "login_throttled", client_id, username, Some(secs)).await;
        }
        return Ok(Err(Refusal::Wrong));
    };
    if limits.failure_throttle {
        deps.throttle.succeeded(subject, username, addr);
    }
    let session = secret_token();
    let ttl = deps.config.load().oauth.login_session_ttl.as_secs() as i64;
    rows::insert_session(&deps.db, sha256_hex(session.as_bytes()), user.id.clone(), now, now + ttl).await?;
    Ok(Ok(SignedIn { user_id: user.id, session, ttl }))
}

/// One audit row for a refused sign-in (`login_failed`), or for the start of
/// a throttling delay (`login_throttled`, with its length). Best effort.
async fn audit_refusal(
    deps: &Deps,
    ids: &RequestIds,
    event_type: &'static str,
    client_id: &str,
    username: &str,
    retry_after: Option<u64>,
) {
    let _ = audit::record(
        &deps.db,
        deps.clock.now_ms(),
        AuditEvent {
            event_type,
            outcome: "failure",
            client_id: Some(client_id.to_owned()),
            request_id: ids.request_id.clone(),
            trace_id: ids.trace_id.clone(),
            detail: serde_json::json!({
                "username": username.chars().take(64).collect::<String>(),
                "retry_after_s": retry_after,
            }),
            ..Default::default()
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::testing::{Fixture, T0};

    async fn fixture(limits: &str) -> Fixture {
        let hash = crate::password::hash("correct horse").unwrap();
        let users = format!(
            "limits: {{ {limits} }}\nusers:\n  - {{ username: alice, id: user-42, password_hash: \"{hash}\" }}"
        );
        Fixture::with("", &users).await
    }

    async fn attempt(fx: &Fixture, user: &str, password: &str) -> Result<SignedIn, Refusal> {
        let addr = Some("192.0.2.7".parse().unwrap());
        sign_in(&fx.deps, user, password.to_owned(), addr, "app", &RequestIds::default(), T0).await.unwrap()
    }

    #[tokio::test]
    async fn the_right_password_opens_a_session_and_wrong_ones_are_refused_alike() {
        let fx = fixture("").await;
        let s = attempt(&fx, "alice", "correct horse").await.unwrap();
        assert_eq!((s.user_id.as_str(), s.ttl), ("user-42", fx.cfg.oauth.login_session_ttl.as_secs() as i64));
        let stored = rows::session_user(&fx.deps.db, &sha256_hex(s.session.as_bytes()), T0 + 1).await.unwrap();
        assert_eq!(stored.as_deref(), Some("user-42"), "the session is stored under its digest");
        assert_eq!(attempt(&fx, "alice", "wrong").await.unwrap_err(), Refusal::Wrong);
        assert_eq!(attempt(&fx, "mallory", "correct horse").await.unwrap_err(), Refusal::Wrong);
        assert_eq!(attempt(&fx, "", "").await.unwrap_err(), Refusal::Wrong);
        let failed = fx.audit("login_failed").await;
        assert_eq!(failed.len(), 3);
        assert!(failed[1].detail.contains("mallory"), "{}", failed[1].detail);
        assert!(!failed[0].detail.contains("wrong"), "a password never reaches the audit log");
    }

    #[tokio::test]
    async fn repeated_failures_are_throttled_with_one_audit_row_when_the_delay_begins() {
        let fx = fixture("throttle_free_failures: 2").await;
        assert_eq!(attempt(&fx, "alice", "a").await.unwrap_err(), Refusal::Wrong);
        assert_eq!(attempt(&fx, "alice", "b").await.unwrap_err(), Refusal::Wrong);
        assert!(fx.audit("login_throttled").await.is_empty(), "two failures are free");
        assert_eq!(attempt(&fx, "alice", "c").await.unwrap_err(), Refusal::Wrong);
        assert_eq!(fx.audit("login_throttled").await.len(), 1, "the third starts a delay");
        // The clock does not move: every further attempt is refused unchecked,
        // the right password included, and writes no rows.
        for password in ["d", "correct horse"] {
            match attempt(&fx, "alice", password).await {
                Err(Refusal::Throttled { retry_after }) => assert!(retry_after >= 1),
                other => panic!("expected a throttled refusal, got {other:?}"),
            }
        }
        assert_eq!(fx.audit("login_failed").await.len(), 3);
        assert_eq!(fx.audit("login_throttled").await.len(), 1);
    }

    #[tokio::test]
    async fn a_sign_in_waits_for_a_hashing_slot_only_as_long_as_configured() {
        let fx = fixture("password_hash_queue_timeout: 1s").await;
        let held = fx.deps.hash_gate.acquire(std::time::Duration::from_secs(1)).await.unwrap();
        assert_eq!(attempt(&fx, "alice", "correct horse").await.unwrap_err(), Refusal::Overloaded);
        drop(held);
        assert!(attempt(&fx, "alice", "correct horse").await.is_ok());
    }
}
