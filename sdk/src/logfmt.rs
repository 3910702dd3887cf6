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

use authplane_telemetry::{Fields, Value, logfmt};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format; `msg` is always quoted so `grep 'msg="verified"'` works.
/// The event's fields are encoded by `authplane-telemetry` (as the
/// authserver's lines); the spans' fields follow as the layer's field
/// formatter wrote them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Logfmt;

/// A formatting layer writing [`Logfmt`] lines to stdout. No ANSI colour:
/// the span fields would carry escape codes that break `grep key=value`.
pub fn layer<S>() -> tracing_subscriber::fmt::Layer<S, DefaultFields, Logfmt>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer().with_ansi(false).event_format(Logfmt)
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        w.write_str("time=")?;
        SystemTime.format_time(&mut w)?;
        let mut f = Fields::default();
        event.record(&mut f);
        // Floats as this format has always printed them (`1.0`, `1e20`).
        for (_, v) in &mut f.fields {
            if let Value::F64(n) = *v {
                *v = Value::Str(format!("{n:?}"));
            }
        }
        let mut line = format!(" level={} msg=", event.metadata().level().as_str());
        logfmt::push_quoted(&mut line, f.message.as_deref().unwrap_or_default());
        logfmt::push_fields(&mut line, &f.fields);
        w.write_str(&line)?;
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

    #[test]
    fn span_fields_are_plain_text() {
        let buf = Buf::default();
        let b2 = buf.clone();
        let sub = tracing_subscriber::registry().with(layer().with_writer(move || b2.clone()));
        tracing::subscriber::with_default(sub, || {
            let _s = tracing::info_span!("mcp", request_id = "r_1").entered();
            tracing::info!(sub = %"user-42", "verified");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!out.contains('\u{1b}'), "ANSI escape in {out:?}");
        assert!(out.contains("request_id="), "{out}");
    }
}
