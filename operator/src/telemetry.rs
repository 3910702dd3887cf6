//! Logs: one line per event in logfmt (or JSON), with the fields of the
//! enclosing spans, so every line of a reconcile carries its `trace_id`,
//! `kind` and `object`: `kubectl logs deploy/authplane-operator | grep trace_id=…`.

use authplane_telemetry::{Format, LogLayer};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Installs the global subscriber. `level` is a level or a filter directive;
/// dependencies stay at `warn` unless named.
pub fn init(level: &str, format: LogFormat) {
    let directives = if level.contains('=') {
        format!("warn,{level}")
    } else {
        format!("warn,authplane_operator={level},authplane_crds={level}")
    };
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match format {
        LogFormat::Logfmt => Format::Logfmt,
        LogFormat::Json => Format::Json,
    };
    let _ = tracing_subscriber::registry().with(filter).with(LogLayer::new(format, std::io::stdout, Millis)).try_init();
}

/// Log line times: UTC to the millisecond (`2026-07-01T00:00:00.123Z`).
struct Millis;

impl FormatTime for Millis {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

/// A random W3C-sized trace id (16 bytes, hex) for one reconcile.
pub fn new_trace_id() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        b[..16].copy_from_slice(&t.as_nanos().to_be_bytes());
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_32_hex() {
        let t = new_trace_id();
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t, new_trace_id());
    }
}
