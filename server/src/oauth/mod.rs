//! The OAuth 2.1 protocol rules (ARCHITECTURE §3). Services take what they
//! need as one narrow value, [`Deps`] (database, keys, resource index, caches,
//! audit sink, config snapshot, clock, id source), never the HTTP layer's
//! state; nothing here imports `crate::app`, `crate::http` or actix. No
//! sea-orm types in signatures of the pure parts; the current time is passed
//! in, and what is read inside (audit timestamps, token ids) comes from
//! `Deps::clock` and `Deps::ids`, which the unit tests fix.

pub mod authorize;
pub mod broker;
pub mod cimd;
pub mod client_auth;
pub mod clients;
pub mod consent;
pub mod deps;
pub mod dpop;
pub mod error;
pub mod form;
pub mod jwt;
pub mod login;
pub mod pkce;
pub mod register;
pub mod revoke;
pub mod scopes;
pub mod token;
pub mod upstream;
pub mod upstream_login;

#[cfg(test)]
pub(crate) mod testing;

pub use deps::Deps;
pub use error::{Error, Kind, Result};
