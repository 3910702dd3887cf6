//! Logs: one line per event in logfmt (or JSON), with the fields of the
//! enclosing spans, so every line of a reconcile carries its `trace_id`,
//! `kind` and `object`: `kubectl logs deploy/authplane-operator | grep trace_id=…`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(LogLayer { format, out: Mutex::new(std::io::stdout()) })
        .try_init();
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

#[derive(Default)]
struct Fields {
    message: Option<String>,
    fields: Vec<(&'static str, String, bool)>,
}

impl Fields {
    fn set(&mut self, name: &'static str, v: String, quoted: bool) {
        if name == "message" {
            self.message = Some(v);
        } else if let Some(slot) = self.fields.iter_mut().find(|(k, _, _)| *k == name) {
            slot.1 = v;
            slot.2 = quoted;
        } else {
            self.fields.push((name, v, quoted));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field.name(), format!("{value:?}"), true);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.to_owned(), true);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.to_string(), false);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value.to_string(), false);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), value.to_string(), false);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.to_string(), false);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), value.to_string(), true);
    }
}

struct SpanFields(Fields);

struct LogLayer {
    format: LogFormat,
    out: Mutex<std::io::Stdout>,
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanFields(f)) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(f);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut ev = Fields::default();
        event.record(&mut ev);
        let mut all = ev.fields;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(f)) = span.extensions().get::<SpanFields>() {
                    for (k, v, q) in &f.fields {
                        if !all.iter().any(|(ek, _, _)| ek == k) {
                            all.push((k, v.clone(), *q));
                        }
                    }
                }
            }
        }
        let time = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        let msg = ev.message.unwrap_or_default();
        let line = match self.format {
            LogFormat::Logfmt => logfmt_line(&time, level, &msg, &all),
            LogFormat::Json => json_line(&time, level, &msg, &all),
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
        }
    }
}

fn logfmt_line(time: &str, level: &str, msg: &str, fields: &[(&'static str, String, bool)]) -> String {
    let mut out = String::with_capacity(160);
    let _ = write!(out, "time={time} level={level} msg=");
    push_value(&mut out, msg);
    for (k, v, _) in fields {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        push_value(&mut out, v);
    }
    out.push('\n');
    out
}

/// Quotes a value when it is empty or holds a space, `=`, a quote or a
/// control character, so one event stays one line.
fn push_value(out: &mut String, s: &str) {
    if !s.is_empty() && !s.chars().any(|c| c == ' ' || c == '=' || c == '"' || c.is_control()) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_line(time: &str, level: &str, msg: &str, fields: &[(&'static str, String, bool)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("time".into(), time.into());
    m.insert("level".into(), level.into());
    m.insert("msg".into(), msg.into());
    for (k, v, quoted) in fields {
        let value = if *quoted {
            serde_json::Value::from(v.clone())
        } else {
            serde_json::from_str(v).unwrap_or_else(|_| v.clone().into())
        };
        m.insert((*k).into(), value);
    }
    let mut s = serde_json::Value::Object(m).to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let line = logfmt_line(
            "t",
            "INFO",
            "reconciled",
            &[("kind", "AuthServer".into(), true), ("note", "a b=\"c\"".into(), true), ("n", "3".into(), false)],
        );
        assert_eq!(line, "time=t level=INFO msg=reconciled kind=AuthServer note=\"a b=\\\"c\\\"\" n=3\n");
    }

    #[test]
    fn trace_ids_are_32_hex() {
        let t = new_trace_id();
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t, new_trace_id());
    }
}
