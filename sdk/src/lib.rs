//! # authplane-sdk
//!
//! Protect an MCP server (or any HTTP API) with AuthPlane in a few lines:
//!
//! - [`ProtectedResource`]: this server's resource URI, the AS issuer, scopes;
//! - Protected Resource Metadata (RFC 9728) at
//!   `/.well-known/oauth-protected-resource` and its path-suffixed form;
//! - [`Verifier`]: offline verification of ES256 `at+jwt` access tokens
//!   (RFC 9068) against the AS's cached JWKS;
//! - middleware for axum/tower (and so `rmcp`) and actix-web answering 401
//!   and 403 with the `WWW-Authenticate` challenges MCP clients follow;
//! - [`Claims`] as an extractor, `require_scope`, per-tool scopes;
//! - [`Sessions`]: MCP sessions bound to the principal that created them,
//!   with a per-principal cap, an idle timeout and a global cap;
//! - `tracing` logs: `msg="verified" sub=… scope=… aud=… client_id=…`;
//! - [`UpstreamTokens`]: the user's upstream token (GitHub, Google, …) from
//!   AuthPlane's token broker, cached until shortly before it expires.
//!
//! See `docs/guides/protect-an-mcp-server.md` for a walkthrough.
#![forbid(unsafe_code)]

mod bearer;
pub mod broker;
pub mod challenge;
mod claims;
pub mod clock;
mod config;
pub mod cors;
mod error;
pub mod jwks;
mod jws;
mod logs;
pub mod mcp;
mod middleware;
pub mod prm;
pub mod session;
mod verifier;

#[cfg(feature = "actix-web")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "logfmt")]
pub mod logfmt;

pub use broker::{BrokerError, UpstreamToken, UpstreamTokens};
pub use challenge::Rejection;
pub use claims::Claims;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, ProtectedResource};
pub use cors::Cors;
pub use error::{FetchError, VerifyError};
pub use prm::ProtectedResourceMetadata;
pub use session::{Principal, SessionLimits, SessionStats, Sessions};
#[doc(hidden)]
pub use verifier::verify_with_jwks;
pub use verifier::{CachePolicy, Verifier, VerifierBuilder, VerifierStats};
