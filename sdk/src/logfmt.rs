//! A `tracing-subscriber` event format that prints logfmt lines as in the
//! debugging checklist (step 6):
//!
//! ```text
//! time=2026-07-01T00:00:00.000000Z level=INFO msg="verified" sub=user-42 scope=tools/read aud=http://localhost:8080/mcp client_id=dev-client
//! ```
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::EnvFilter::new("info"))
//!     .with(authplane_sdk::logfmt::layer())
//!     .init();
//! ```

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format; `msg` is always quoted so `grep 'msg="verified"'` works.
#[derive(Debug, Clone, Copy, Default)]
pub struct Logfmt;

/// A formatting layer writing [`Logfmt`] lines to stdout.
pub fn layer<S>() -> tracing_subscriber::fmt::Layer<S, DefaultFields, Logfmt>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer().event_format(Logfmt)
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        w.write_str("time=")?;
        SystemTime.format_time(&mut w)?;
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        let mut v = Fields { msg: String::new(), rest: String::new() };
        event.record(&mut v);
        write!(w, " level={level} msg=")?;
        let mut msg = String::new();
        push_quoted(&mut msg, &v.msg);
        w.write_str(&msg)?;
        w.write_str(&v.rest)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && !f.is_empty()
                {
                    write!(w, " {f}")?;
                }
            }
        }
        writeln!(w)
    }
}

struct Fields {
    msg: String,
    rest: String,
}

impl Fields {
    fn push(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
            return;
        }
        self.rest.push(' ');
        self.rest.push_str(field.name());
        self.rest.push('=');
        let needs_quotes =
            value.is_empty() || value.chars().any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
        if needs_quotes {
            push_quoted(&mut self.rest, value);
        } else {
            self.rest.push_str(value);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let s = format!("{value:?}");
        self.push(field, &s);
    }
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn prints_the_checklist_line() {
        let buf = Buf::default();
        let b2 = buf.clone();
        let sub = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().event_format(Logfmt).with_writer(move || b2.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(sub = %"user-42", scope = %"tools/read", aud = %"http://mcp.example.com/mcp", client_id = %"c", "verified");
            tracing::warn!(error = "ErrTokenExpired", detail = %"expired at 1 (now 2)", "token rejected");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].contains(
                r#" level=INFO msg="verified" sub=user-42 scope=tools/read aud=http://mcp.example.com/mcp client_id=c"#
            ),
            "{out}"
        );
        assert!(
            lines[1]
                .ends_with(r#"level=WARN msg="token rejected" error=ErrTokenExpired detail="expired at 1 (now 2)""#),
            "{out}"
        );
    }
}
