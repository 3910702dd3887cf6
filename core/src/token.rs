//! The access token's claims (RFC 9068 §2.2) as the server writes them. The
//! SDK reads them leniently (every claim optional, so a missing one is named)
//! and its tests parse what this type serialises, so the two cannot drift.

use serde::{Deserialize, Serialize};

/// RFC 9068 §2.2 claims, and `cnf` (RFC 9449 §6.1) when DPoP-bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub client_id: String,
    /// Space-delimited (RFC 6749 §3.3).
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// RFC 9449 §6.1: the JWK SHA-256 thumbprint of the key the token is bound to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    pub jkt: String,
}
