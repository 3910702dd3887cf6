//! The AuthPlane authorization server (`authserver`).
//!
//! A request goes one way: `http/` (parse, call, render) → service modules
//! (`oauth/`, `keys/`, `registry`, `limits`) → `store/`. The one place that turns a
//! domain error into an HTTP response is [`http::error`].
#![forbid(unsafe_code)]

pub mod app;
pub mod build_info;
pub mod cli;
pub mod clock;
pub mod configfile;
pub mod doctor;
pub mod http;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod oauth;
pub mod password;
pub mod random;
pub mod registry;
pub mod state;
pub mod store;
pub mod telemetry;
