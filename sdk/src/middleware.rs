//! What the axum and actix adapters share beyond the pure modules: the tool
//! scope check and the log lines of refusals.

use std::sync::Arc;

use crate::bearer::{Credentials, credentials};
use crate::challenge::{self, Challenge, Rejection, Scheme};
use crate::clock::{Clock, SystemClock};
use crate::logs::{MAX_LOGGED_CLAIM_BYTES, Sample, clip};
use crate::mcp::ToolScopes;
use crate::{Claims, Verifier};

/// The request's credentials, checked: `Authorization: Bearer` (refused for a
/// DPoP-bound token or a DPoP-only resource) or `Authorization: DPoP` with
/// its `DPoP` proof, whose `htu` must be the resource's origin plus `path`.
pub(crate) async fn authenticate<'a>(
    verifier: &Verifier,
    authorization: impl Iterator<Item = &'a [u8]>,
    dpop: impl Iterator<Item = &'a [u8]>,
    method: &str,
    path: &str,
) -> Result<Claims, Rejection> {
    let ch = verifier.challenge();
    match credentials(authorization) {
        Credentials::Bearer(t) => {
            verifier.verify(t).await.map_err(|e| challenge::invalid_token(ch, &e, Scheme::Bearer))
        }
        Credentials::Dpop(t) => {
            // A header value that is not text cannot be a proof; "" fails as malformed.
            let proofs: Vec<&str> = dpop.map(|v| std::str::from_utf8(v).unwrap_or("")).collect();
            let url = verifier.resource().htu_for(path);
            verifier
                .verify_dpop(t, &proofs, method, &url)
                .await
                .map_err(|e| challenge::invalid_token(ch, &e, Scheme::Dpop))
        }
        Credentials::None => {
            tracing::debug!(resource = verifier.resource().resource(), "no access token");
            Err(challenge::missing_token(ch))
        }
        Credentials::Invalid(why) => {
            log_invalid_request(ch, why);
            Err(challenge::invalid_request(ch, why))
        }
    }
}

/// 403 unless `claims` has the scopes the tool calls in `body` need.
pub(crate) fn check_tool_scopes(
    scopes: &ToolScopes,
    body: &[u8],
    claims: &Claims,
    ch: &Arc<challenge::Challenge>,
) -> Result<(), Rejection> {
    let required =
        scopes.required(body).map_err(|_| challenge::invalid_request(ch, "The request body is not JSON-RPC"))?;
    let missing: Vec<&str> = required.into_iter().filter(|s| !claims.has_scope(s)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    log_insufficient(claims, &missing.join(" "));
    Err(challenge::insufficient_scope(Some(ch), claims, &missing))
}

/// Whether to print a refusal line for `reason` (sampled per resource, see
/// `logs`); `Some(n)`: print it, with `suppressed=n`.
fn sampled(ch: Option<&Challenge>, reason: &'static str) -> Option<u64> {
    match ch {
        None => Some(0),
        Some(ch) => match ch.logs.sample(reason, SystemClock.now()) {
            Sample::Log { suppressed } => Some(suppressed),
            Sample::Skip => None,
        },
    }
}

pub(crate) fn log_insufficient(c: &Claims, required: &str) {
    let Some(suppressed) = sampled(c.challenge.as_deref(), "ErrInsufficientScope") else { return };
    tracing::warn!(
        error = "ErrInsufficientScope",
        code = "insufficient_scope",
        sub = %clip(&c.sub, MAX_LOGGED_CLAIM_BYTES),
        client_id = %clip(&c.client_id, MAX_LOGGED_CLAIM_BYTES),
        scope = %clip(&c.scope_string(), MAX_LOGGED_CLAIM_BYTES),
        required = %clip(required, MAX_LOGGED_CLAIM_BYTES),
        suppressed,
        "insufficient scope"
    );
}

/// The WARN of a malformed `Authorization` header (400 `invalid_request`).
pub(crate) fn log_invalid_request(ch: &Challenge, why: &'static str) {
    let Some(suppressed) = sampled(Some(ch), "ErrInvalidRequest") else { return };
    tracing::warn!(error = "ErrInvalidRequest", code = "invalid_request", detail = why, suppressed, "token rejected");
}

pub(crate) fn wiring_error() -> Rejection {
    tracing::error!(error = "ErrAuthNotWired", "claims requested on a route without the bearer-auth middleware");
    challenge::not_wired()
}
