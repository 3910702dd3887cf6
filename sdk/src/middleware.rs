//! What the axum and actix adapters share beyond the pure modules: the tool
//! scope check and the log lines of refusals.

use std::sync::Arc;

use crate::Claims;
use crate::challenge::{self, Rejection};
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
    tracing::warn!(
        error = "ErrInsufficientScope",
        code = "insufficient_scope",
        sub = %claims.sub,
        client_id = %claims.client_id,
        scope = %claims.scope_string(),
        required = %missing.join(" "),
        "insufficient scope"
    );
    Err(challenge::insufficient_scope(Some(ch), claims, &missing))
}

pub(crate) fn log_insufficient(c: &Claims, required: &str) {
    tracing::warn!(
        error = "ErrInsufficientScope",
        code = "insufficient_scope",
        sub = %c.sub,
        client_id = %c.client_id,
        scope = %c.scope_string(),
        required = required,
        "insufficient scope"
    );
}

pub(crate) fn wiring_error() -> Rejection {
    tracing::error!(error = "ErrAuthNotWired", "claims requested on a route without the bearer-auth middleware");
    challenge::not_wired()
}
