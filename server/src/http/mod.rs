//! HTTP: the public listener (discovery, JWKS, health; OAuth endpoints come
//! with their issue) and the admin listener (metrics, admin REST API).

pub mod admin;
pub mod error;
pub mod oauth;
pub mod observe;
pub mod public;
pub mod ui;
