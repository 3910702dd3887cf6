//! HTTP: the public listener (discovery, JWKS, health, the OAuth endpoints
//! and the login and consent pages) and the admin listener (metrics, admin
//! REST API). Handlers parse, call `oauth/`, and render.

pub mod admin;
pub mod error;
pub mod oauth;
pub mod observe;
pub mod page;
pub mod public;
pub mod request;
pub mod ui;
