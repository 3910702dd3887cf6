//! Logs: one line per event, logfmt by default (so `grep trace_id=…` works),
//! JSON selectable. Every line of a request carries the fields of the request
//! span (`request_id`, `trace_id`, `span_id`) after the event's own fields.
//! Traces: [`otel`], when an OTLP endpoint is configured.

pub mod otel;

use std::fmt::Write as _;
use std::io::Write as _;

use authplane_core::config::{LogFormat, OtelConfig};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
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
    let (writer, guard) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stdout());
    let directives =
        format!("warn,authplane_server={level},authserver={level},{level_tail}", level_tail = tail_directives(level));
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let log_layer = LogLayer { format, writer }.with_filter(filter);
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
                dynamic_filter_fn(|m, cx| {
                    let ours = m.target().starts_with("authplane_server") || m.target().starts_with("authserver");
                    let level = if m.is_span() { *m.level() <= Level::DEBUG } else { *m.level() <= Level::INFO };
                    // Inside a request the sampler dropped, make no spans and no
                    // span events at all: at 10 % sampling that is 9 requests in 10.
                    ours && level && cx.lookup_current().is_none_or(|s| !otel::is_unsampled(&s))
                })
                // Other crates' callsites are never ours: decided once, not per span.
                .with_callsite_filter(|m| {
                    if m.target().starts_with("authplane_server") || m.target().starts_with("authserver") {
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

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    fields: Vec<(&'static str, Val)>,
}

impl Fields {
    fn set(&mut self, name: &'static str, v: Val) {
        if name == "message" {
            if let Val::Str(s) = v {
                self.message = Some(s);
            }
            return;
        }
        if let Some(slot) = self.fields.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = v;
        } else {
            self.fields.push((name, v));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field.name(), Val::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Val::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Val::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Val::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Val::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Val::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), Val::Str(value.to_string()));
    }
}

struct SpanFields(Fields);

struct LogLayer {
    format: LogFormat,
    writer: NonBlocking,
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        // Dotted names (`otel.name`, `http.route`, `authplane.layer`) are span
        // attributes for the trace backend, not log fields.
        f.fields.retain(|(k, _)| !k.contains('.'));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(f)) = ext.get_mut::<SpanFields>() {
                values.record(f);
                f.fields.retain(|(k, _)| !k.contains('.'));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut ev = Fields::default();
        event.record(&mut ev);
        let mut all = ev.fields;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(SpanFields(f)) = ext.get::<SpanFields>() {
                    for (k, v) in &f.fields {
                        if !all.iter().any(|(ek, _)| ek == k) {
                            all.push((k, v.clone()));
                        }
                    }
                }
            }
        }
        let time =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let level = level_str(*event.metadata().level());
        let msg = ev.message.unwrap_or_default();
        let line = match self.format {
            LogFormat::Logfmt => logfmt_line(&time, level, &msg, &all),
            LogFormat::Json => json_line(&time, level, &msg, &all),
        };
        let mut w = self.writer.clone();
        let _ = w.write_all(line.as_bytes());
    }
}

fn level_str(l: Level) -> &'static str {
    match l {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

fn logfmt_line(time: &str, level: &str, msg: &str, fields: &[(&'static str, Val)]) -> String {
    let mut out = String::with_capacity(160);
    let _ = write!(out, "time={time} level={level} msg=");
    push_logfmt_value(&mut out, msg);
    for (k, v) in fields {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        match v {
            Val::Str(s) => push_logfmt_value(&mut out, s),
            Val::I64(n) => {
                let _ = write!(out, "{n}");
            }
            Val::U64(n) => {
                let _ = write!(out, "{n}");
            }
            Val::F64(n) => {
                let _ = write!(out, "{n}");
            }
            Val::Bool(b) => {
                let _ = write!(out, "{b}");
            }
        }
    }
    out.push('\n');
    out
}

/// Quotes a value when it is empty or holds a space, `=`, a quote or a control
/// character; escapes `"`, `\` and newlines so one event stays one line.
fn push_logfmt_value(out: &mut String, s: &str) {
    let needs_quotes = s.is_empty() || s.chars().any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if !needs_quotes {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_line(time: &str, level: &str, msg: &str, fields: &[(&'static str, Val)]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::with_capacity(200);
    let _ = write!(out, "{{\"time\":{},\"level\":{},\"msg\":{}", q(time), q(level), q(msg));
    for (k, v) in fields {
        let _ = write!(out, ",{}:", q(k));
        match v {
            Val::Str(s) => out.push_str(&q(s)),
            Val::I64(n) => {
                let _ = write!(out, "{n}");
            }
            Val::U64(n) => {
                let _ = write!(out, "{n}");
            }
            Val::F64(n) if n.is_finite() => {
                let _ = write!(out, "{n}");
            }
            Val::F64(_) => out.push_str("null"),
            Val::Bool(b) => {
                let _ = write!(out, "{b}");
            }
        }
    }
    out.push_str("}\n");
    out
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

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let line = logfmt_line(
            "T",
            "ERROR",
            "token issuance failed",
            &[
                ("error", Val::Str("ErrInvalidPKCE".into())),
                ("n", Val::U64(3)),
                ("note", Val::Str("a \"b\"\nc".into())),
            ],
        );
        assert_eq!(
            line,
            "time=T level=ERROR msg=\"token issuance failed\" error=ErrInvalidPKCE n=3 note=\"a \\\"b\\\"\\nc\"\n"
        );
    }

    #[test]
    fn json_is_one_valid_object() {
        let line = json_line("T", "INFO", "hi", &[("ok", Val::Bool(true)), ("s", Val::Str("x\ny".into()))]);
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "hi");
        assert_eq!(v["ok"], true);
        assert_eq!(v["s"], "x\ny");
    }
}
