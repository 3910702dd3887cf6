//! What the axum and actix adapters share beyond the pure modules: the tool
//! scope check and the log lines of refusals.

use std::sync::Arc;

use crate::Claims;
use crate::challenge::{self, Challenge, Rejection};
use crate::clock::{Clock, SystemClock};
use crate::logs::{MAX_LOGGED_CLAIM_BYTES, Sample, clip};
use crate::mcp::ToolScopes;

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
