//! Contracts shared by the AuthPlane server, operator and SDK.
//!
//! Pure data and pure functions: the configuration schema and its validation,
//! resource-URI canonicalisation (RFC 8707), redirect-URI rules (RFC 8252),
//! scope tokens (RFC 6749 §3.3), the authorization-server and protected-resource
//! metadata documents (RFC 8414, RFC 9728), the access token's claims (RFC 9068)
//! and the signing-key and broker-key file formats. No I/O beyond reading the
//! process environment handed in by the caller — except the optional `es256`
//! feature, which generates and parses signing keys (aws-lc, the OS random
//! number generator) for the server and the operator; and the `dpop` feature,
//! which checks DPoP proofs (RFC 9449) for the server and the SDK alike.
#![forbid(unsafe_code)]

pub mod brokerkeys;
pub mod config;
#[cfg(feature = "dpop")]
pub mod dpop;
pub mod duration;
#[cfg(feature = "es256")]
pub mod es256;
pub mod keyfile;
pub mod metadata;
pub mod redirect;
pub mod resource;
pub mod scope;
pub mod secret;
pub mod token;

pub use duration::Duration;
pub use resource::ResourceUri;
pub use secret::Secret;
