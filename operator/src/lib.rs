//! The AuthPlane operator: turns `AuthServer`, `ProtectedResource` and
//! `OAuthClient` objects into a running authorization server.
//!
//! `render/` holds pure functions (CR → objects, config, keys) tested without
//! a cluster; `controller/` holds one kube-runtime Controller per kind, which
//! render, server-side apply (field manager `authplane-operator`) and write
//! status. `leader` elects one active replica on a Lease.
#![forbid(unsafe_code)]

pub mod client;
pub mod conditions;
pub mod controller;
pub mod events;
pub mod http;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod probe;
pub mod render;
pub mod run;
pub mod telemetry;
