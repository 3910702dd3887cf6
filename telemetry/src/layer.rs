use std::io::Write as _;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::{Fields, Format};

/// A layer writing one [`Format`] line per event: `time` (from `timer`),
/// `level`, `msg`, the event's fields, then the fields of its spans from the
/// root inwards, a name already on the line skipped.
///
/// `make_writer` gives one writer per line and the line goes out in one
/// `write_all`: a `tracing_appender` `NonBlocking`, `std::io::stdout`, a
/// `Mutex<impl Write>`, or a closure returning a clone of any `Write + Clone`
/// (`move || buf.clone()`).
#[derive(Debug)]
pub struct LogLayer<W, T> {
    format: Format,
    make_writer: W,
    timer: T,
    drop_dotted_span_fields: bool,
}

impl<W, T> LogLayer<W, T>
where
    W: for<'w> MakeWriter<'w> + 'static,
    T: FormatTime + 'static,
{
    pub fn new(format: Format, make_writer: W, timer: T) -> Self {
        LogLayer { format, make_writer, timer, drop_dotted_span_fields: false }
    }

    /// Leaves span fields with a dotted name (`otel.name`, `http.route`) off
    /// the lines: attributes for the trace backend, not log fields. Off by
    /// default; an event's own fields are always written.
    pub fn drop_dotted_span_fields(mut self, drop: bool) -> Self {
        self.drop_dotted_span_fields = drop;
        self
    }
}

struct SpanFields(Fields);

impl<S, W, T> Layer<S> for LogLayer<W, T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
    T: FormatTime + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if self.drop_dotted_span_fields {
            f.drop_dotted();
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanFields(f)) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(f);
            if self.drop_dotted_span_fields {
                f.drop_dotted();
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut ev = Fields::default();
        event.record(&mut ev);
        let mut all = ev.fields;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(f)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &f.fields {
                        if !all.iter().any(|(ek, _)| ek == k) {
                            all.push((k, v.clone()));
                        }
                    }
                }
            }
        }
        let mut time = String::with_capacity(32);
        if self.timer.format_time(&mut Writer::new(&mut time)).is_err() {
            time.clear();
        }
        let msg = ev.message.unwrap_or_default();
        let line = self.format.line(&time, event.metadata().level().as_str(), &msg, &all);
        let _ = self.make_writer.make_writer_for(event.metadata()).write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tracing::field::Empty;
    use tracing_subscriber::layer::SubscriberExt;

    struct Fixed;
    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
            w.write_str("T")
        }
    }

    fn lines(format: Format, drop_dotted: bool) -> String {
        let layer = LogLayer::new(format, Mutex::new(Vec::new()), Fixed).drop_dotted_span_fields(drop_dotted);
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            let outer = tracing::info_span!("request", otel.name = "GET /x", request_id = "r_1", trace_id = Empty);
            let _o = outer.enter();
            outer.record("trace_id", "4bf9");
            let inner = tracing::debug_span!("service", request_id = "shadowed", kind = "AuthServer");
            let _i = inner.enter();
            tracing::warn!(kind = "event", status = 400u16, "token issuance failed");
        });
        let layer = dispatch.downcast_ref::<LogLayer<Mutex<Vec<u8>>, Fixed>>().unwrap();
        String::from_utf8(layer.make_writer.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn span_fields_follow_the_event_fields_once() {
        assert_eq!(
            lines(Format::Logfmt, true),
            "time=T level=WARN msg=\"token issuance failed\" kind=event status=400 request_id=r_1 trace_id=4bf9\n"
        );
        assert_eq!(
            lines(Format::Logfmt, false),
            "time=T level=WARN msg=\"token issuance failed\" kind=event status=400 otel.name=\"GET /x\" request_id=r_1 trace_id=4bf9\n"
        );
        assert_eq!(
            lines(Format::Json, true),
            "{\"time\":\"T\",\"level\":\"WARN\",\"msg\":\"token issuance failed\",\"kind\":\"event\",\"status\":400,\"request_id\":\"r_1\",\"trace_id\":\"4bf9\"}\n"
        );
    }
}
