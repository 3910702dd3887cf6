//! AuthPlane's log lines, shared by the server, the operator and the SDK:
//!
//! - [`Fields`] collects an event's or a span's fields (a [`Visit`](tracing::field::Visit))
//!   into [`Value`]s, keeping their order;
//! - [`logfmt`] and [`json`] encode one line: `time`, `level`, `msg` first,
//!   then the fields (logfmt quotes a value only when it has to);
//! - [`LogLayer`] is a `tracing-subscriber` layer writing one such line per
//!   event, with the fields of the enclosing spans after the event's own;
//! - with the `signal` feature, [`shutdown_signal`]: what the server and the
//!   operator wait for before they drain and stop.
//!
//! ```text
//! time=2026-07-01T00:00:00.123456789Z level=ERROR msg="token issuance failed" error=ErrInvalidGrant request_id=r_abc trace_id=4bf9…
//! {"time":"2026-07-01T00:00:00.123456789Z","level":"ERROR","msg":"token issuance failed","error":"ErrInvalidGrant","request_id":"r_abc"}
//! ```

mod fields;
pub mod json;
mod layer;
pub mod logfmt;

pub use fields::{Fields, Value};
pub use layer::LogLayer;

/// The line format of a [`LogLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `key=value` pairs: [`logfmt::line`].
    #[default]
    Logfmt,
    /// One JSON object a line: [`json::line`].
    Json,
}

impl Format {
    /// The line for one event, newline included.
    pub fn line(self, time: &str, level: &str, msg: &str, fields: &[(&str, Value)]) -> String {
        match self {
            Format::Logfmt => logfmt::line(time, level, msg, fields),
            Format::Json => json::line(time, level, msg, fields),
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT. Without signal handlers (they
/// could not be installed) it never resolves: the process can still be
/// killed.
#[cfg(feature = "signal")]
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
