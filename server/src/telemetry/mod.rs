//! Logs: one line per event, logfmt by default (so `grep trace_id=…` works),
//! JSON selectable. Every line of a request carries the fields of the request
//! span (`request_id`, `trace_id`, `span_id`) after the event's own fields.
//! The lines are `authplane-telemetry`'s, as the operator's and the SDK's.
//! Traces: [`otel`], when an OTLP endpoint is configured.

pub mod otel;

use authplane_core::config::{LogFormat, OtelConfig};
use authplane_telemetry::{Format, LogLayer};
use tracing::Level;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the background log writer and the trace exporter alive; dropping
/// it flushes pending spans, then pending lines.
pub struct LogGuard {
    _otel: Option<otel::Exporter>,
    _writer: WorkerGuard,
}

/// Installs the global subscriber. Noisy dependencies are held at `warn`
/// unless the level string names them. With `otel.endpoint` set, spans of
/// our crates down to `debug` (the service and crypto spans) and events down
/// to `info` also go to the OTLP exporter, whatever the log level.
pub fn init(level: &str, format: LogFormat, otel_cfg: &OtelConfig) -> Result<LogGuard, String> {
    // Buffered: the writer thread drains every line waiting in its channel,
    // then flushes, so under load one write(2) carries many lines (it was one
    // per line: ~9% of the server's CPU at 2,000 requests/s) and an idle
    // server's lines still appear at once.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let directives =
        format!("warn,authplane_server={level},authserver={level},{level_tail}", level_tail = tail_directives(level));
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match format {
        LogFormat::Logfmt => Format::Logfmt,
        LogFormat::Json => Format::Json,
    };
    // Dotted span fields (`otel.name`, `http.route`, `authplane.layer`) are
    // attributes for the trace backend, not log fields.
    let log_layer = LogLayer::new(format, writer, Rfc3339).drop_dotted_span_fields(true).with_filter(filter);
    let (exporter, otel_layer) = if otel_cfg.enabled() {
        let (exporter, tracer) = otel::build(otel_cfg)?;
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Nothing here reads OpenTelemetry's thread-local context; activating
            // it on every poll of every instrumented future is pure cost.
            .with_context_activation(false)
            .with_filter(
                // Inside a request the sampler dropped, make no spans and no
                // span events at all: at 10 % sampling that is 9 requests in 10.
                dynamic_filter_fn(|_, cx| cx.lookup_current().is_none_or(|s| !otel::is_unsampled(&s)))
                    // Which callsites can be traced at all is decided once per
                    // callsite: our crates' spans down to debug, events down to info.
                    .with_callsite_filter(|m| {
                        let ours = m.target().starts_with("authplane_server") || m.target().starts_with("authserver");
                        let level = if m.is_span() { *m.level() <= Level::DEBUG } else { *m.level() <= Level::INFO };
                        if ours && level {
                            tracing::subscriber::Interest::sometimes()
                        } else {
                            tracing::subscriber::Interest::never()
                        }
                    }),
            );
        (Some(exporter), Some(layer))
    } else {
        (None, None)
    };
    let _ = tracing_subscriber::registry().with(log_layer).with(otel_layer).try_init();
    Ok(LogGuard { _otel: exporter, _writer: guard })
}

/// A parsed W3C `traceparent` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: String,
    pub parent_id: String,
    pub flags: u8,
}

/// The statement's verb in lower case (`select`, `insert`, …, `other`), for
/// the storage spans and the query metrics' `operation` label.
pub fn sql_operation(sql: &str) -> &'static str {
    let word = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("");
    const OPS: &[&str] = &["select", "insert", "update", "delete", "begin", "commit", "rollback", "with", "pragma"];
    OPS.iter().find(|op| word.eq_ignore_ascii_case(op)).copied().unwrap_or("other")
}

/// The table a statement works on: after `INSERT INTO`, the leading
/// `UPDATE`, or the first `FROM`; unquoted; empty when none.
pub fn sql_table(sql: &str) -> &str {
    let after = |kw: &str| {
        sql.as_bytes().windows(kw.len()).position(|w| w.eq_ignore_ascii_case(kw.as_bytes())).map(|i| i + kw.len())
    };
    let start = match sql_operation(sql) {
        "insert" => after(" INTO "),
        "update" => after("UPDATE "),
        "select" | "delete" => after(" FROM "),
        _ => None,
    };
    let Some(start) = start else { return "" };
    let rest = sql[start..].trim_start();
    let name = rest.split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ';').next().unwrap_or("");
    let name = name.rsplit('.').next().unwrap_or(name);
    name.trim_matches(|c| c == '"' || c == '`')
}

/// `info,sqlx=debug` → the explicit per-target part (`sqlx=debug`); a plain
/// level applies to our own crates only.
fn tail_directives(level: &str) -> String {
    let parts: Vec<&str> = level.split(',').filter(|p| p.contains('=')).collect();
    if parts.is_empty() { String::new() } else { parts.join(",") }
}

/// Log line times: RFC 3339 in UTC, with the clock's fractional digits
/// (`2026-07-01T00:00:00.123456789Z`).
struct Rfc3339;

impl FormatTime for Rfc3339 {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339);
        w.write_str(&now.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_verb_and_table_for_spans_and_metrics() {
        let cases = [
            (
                r#"SELECT "clients"."client_id", "clients"."spec" FROM "clients" WHERE "clients"."client_id" = $1 LIMIT $2"#,
                "select",
                "clients",
            ),
            (r#"INSERT INTO "audit_events" ("at", "type") VALUES (?, ?)"#, "insert", "audit_events"),
            (r#"UPDATE "refresh_tokens" SET "rotated_at" = ? WHERE "token_sha256" = ?"#, "update", "refresh_tokens"),
            (r#"DELETE FROM "auth_requests" WHERE "id" = ?"#, "delete", "auth_requests"),
            (
                r#"INSERT INTO "consents" ("user_id", "scopes") VALUES (?, ?) ON CONFLICT ("user_id") DO UPDATE SET "scopes" = "excluded"."scopes""#,
                "insert",
                "consents",
            ),
            ("BEGIN", "begin", ""),
            ("  select 1", "select", ""),
            ("VACUUM", "other", ""),
        ];
        for (sql, op, table) in cases {
            assert_eq!(sql_operation(sql), op, "{sql}");
            assert_eq!(sql_table(sql), table, "{sql}");
        }
    }
}
