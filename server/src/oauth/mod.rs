//! The OAuth 2.1 protocol rules (ARCHITECTURE §3). No actix or sea-orm types
//! in signatures of the pure parts; the current time is passed in.

pub mod authorize;
pub mod cimd;
pub mod client_auth;
pub mod clients;
pub mod dpop;
pub mod error;
pub mod form;
pub mod jwt;
pub mod pkce;
pub mod register;
pub mod revoke;
pub mod scopes;
pub mod token;

pub use error::{Error, Kind, Result};
