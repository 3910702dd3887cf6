//! OpenTelemetry trace export (OTLP over gRPC or HTTP), on when
//! `otel.endpoint` / `AUTHPLANE_OTEL_ENDPOINT` is set.
//!
//! Span layers, each tagged `authplane.layer`:
//! - `http`: one SERVER span per request (`POST /token`), made by the
//!   request middleware ([`crate::http::observe`]);
//! - `service`: `oauth.token`, `oauth.authorize`, … (`debug_span!`s, which
//!   cost nothing while export is off);
//! - `storage`: one CLIENT span per SQL statement, made here from sea-orm's
//!   per-query callback ([`record_query`]) with the statement text (never the
//!   bound values, which can be token hashes);
//! - `crypto`: `crypto.sign`, `crypto.verify`, `crypto.hash`.
//!
//! The batch processor exports from its own thread; the OTLP clients (tonic,
//! reqwest) need a Tokio reactor there, so the exporter is wrapped to run on
//! a one-thread runtime of its own.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use authplane_core::config::{OtelConfig, OtelProtocol};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan as _;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TRACER: OnceLock<SdkTracer> = OnceLock::new();
static DB_SYSTEM: OnceLock<&'static str> = OnceLock::new();

/// Spans handed to the collector, and failed export calls (`/metrics`).
pub static SPANS_EXPORTED: AtomicU64 = AtomicU64::new(0);
pub static EXPORT_FAILURES: AtomicU64 = AtomicU64::new(0);
static LAST_FAILURE_LOG: AtomicI64 = AtomicI64::new(0);

/// Whether spans are exported (the middleware takes ids from OpenTelemetry).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `sqlite` or `postgresql`, for the storage spans' `db.system.name`.
pub fn set_db_system(name: &'static str) {
    let _ = DB_SYSTEM.set(name);
}

/// The tracer provider; shut down (flushing pending spans) on drop.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Builds the exporter and tracer. Errors are configuration errors.
pub fn build(cfg: &OtelConfig) -> Result<(Exporter, SdkTracer), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()
        .map_err(|e| format!("otel: cannot start the export runtime: {e}"))?;
    let endpoint = cfg.endpoint.trim().trim_end_matches('/');
    let timeout = Duration::from_secs(10);
    let inner = {
        let _ctx = rt.enter();
        match cfg.protocol {
            OtelProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .build(),
            OtelProtocol::HttpProtobuf => {
                let url = if endpoint.ends_with("/v1/traces") {
                    endpoint.to_owned()
                } else {
                    format!("{endpoint}/v1/traces")
                };
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_http_client(reqwest::Client::new())
                    .with_endpoint(url)
                    .with_timeout(timeout)
                    .build()
            }
        }
        .map_err(|e| format!("otel: cannot build the {} exporter for {endpoint}: {e}", cfg.protocol.as_str()))?
    };
    let exporter = OnRuntime { inner, rt: Some(rt) };
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.version", crate::build_info::VERSION))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("authplane");
    let _ = TRACER.set(tracer.clone());
    ENABLED.store(true, Ordering::Relaxed);
    Ok((Exporter { provider }, tracer))
}

/// Runs the OTLP client's futures on its own runtime (see the module docs),
/// counts what it sends, and says once a minute when the collector refuses.
#[derive(Debug)]
struct OnRuntime {
    inner: opentelemetry_otlp::SpanExporter,
    rt: Option<tokio::runtime::Runtime>,
}

impl SpanExporter for OnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let Some(rt) = &self.rt else { return Err(OTelSdkError::AlreadyShutdown) };
        let n = batch.len() as u64;
        let result = rt.block_on(self.inner.export(batch));
        match &result {
            Ok(()) => {
                SPANS_EXPORTED.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                EXPORT_FAILURES.fetch_add(1, Ordering::Relaxed);
                let now = crate::clock::now();
                let last = LAST_FAILURE_LOG.load(Ordering::Relaxed);
                if now - last >= 60
                    && LAST_FAILURE_LOG.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                {
                    tracing::warn!(error = "ErrOtelExport", spans = n, detail = %e, "trace export failed (spans dropped; next report in 60s)");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl Drop for OnRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks; this may run on an async thread at exit.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The W3C ids of a request: what the response's `traceparent` and every
/// log line carry.
#[derive(Debug, Clone)]
pub struct TraceIds {
    pub trace_id: String,
    pub span_id: String,
    /// `01` when the trace is recorded.
    pub flags: String,
}

/// Makes `span` (the request's HTTP span) a child of the incoming
/// `traceparent`, if any, starts it, and returns its ids. Only called while
/// export is on.
pub fn start_request_span(span: &tracing::Span, incoming: Option<&super::TraceParent>) -> Option<TraceIds> {
    if let Some(tp) = incoming {
        let remote = SpanContext::new(
            TraceId::from_hex(&tp.trace_id).ok()?,
            SpanId::from_hex(&tp.parent_id).ok()?,
            TraceFlags::new(tp.flags & 0x01),
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    if !sc.is_sampled() {
        mark_unsampled(span);
    }
    Some(TraceIds {
        trace_id: sc.trace_id().to_string(),
        span_id: sc.span_id().to_string(),
        flags: if sc.is_sampled() { "01".into() } else { "00".into() },
    })
}

/// On the root span of a request the sampler did not record.
struct Unsampled;

/// Remembers on `span` (the request's HTTP span) that its trace is not
/// recorded, so the trace filter skips its child spans and events.
pub fn mark_unsampled(span: &tracing::Span) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(data) = registry.span(id)
        {
            data.extensions_mut().insert(Unsampled);
        }
    });
}

/// Whether `span` belongs to a request whose trace is not recorded.
pub fn is_unsampled<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>) -> bool
where
    S: for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    span.scope().last().is_some_and(|root| root.extensions().get::<Unsampled>().is_some())
}

/// The OpenTelemetry context of the innermost current span that has one.
/// The current span itself may be a library's (sea-orm's `execute` when
/// `log.level` enables it), which only the log layer sees.
fn nearest_traced_context() -> Option<Context> {
    tracing::dispatcher::get_default(|d| {
        let id = d.current_span().id()?.clone();
        let registry = d.downcast_ref::<tracing_subscriber::Registry>()?;
        let ids: Vec<tracing::span::Id> = registry.span(&id)?.scope().map(|s| s.id()).collect();
        // No registry borrow may be held while the OpenTelemetry layer looks up its data.
        ids.iter().find_map(|id| tracing_opentelemetry::get_otel_context(id, d))
    })
}

/// Marks the current request's span as failed (5xx).
pub fn set_error(span: &tracing::Span, description: String) {
    span.set_status(Status::error(description));
}

/// One storage span per SQL statement, as a child of whatever span is
/// current (the service span), timed by sea-orm. Statements outside a
/// recorded request (background tasks, the audit writer) make no span.
pub fn record_query(sql: &str, elapsed: Duration, failed: bool) {
    if !enabled() {
        return;
    }
    let Some(tracer) = TRACER.get() else { return };
    let Some(parent) = nearest_traced_context() else { return };
    if !parent.span().span_context().is_sampled() {
        return;
    }
    let end = SystemTime::now();
    let start = end.checked_sub(elapsed).unwrap_or(end);
    let op = super::sql_operation(sql);
    let table = super::sql_table(sql);
    let name = if table.is_empty() { format!("db.{op}") } else { format!("db.{op} {table}") };
    let mut attrs = vec![
        KeyValue::new("authplane.layer", "storage"),
        KeyValue::new("db.system.name", *DB_SYSTEM.get().unwrap_or(&"sqlite")),
        KeyValue::new("db.operation.name", op.to_ascii_uppercase()),
        // The statement with its placeholders: bound values never leave.
        KeyValue::new("db.query.text", sql.chars().take(2048).collect::<String>()),
    ];
    if !table.is_empty() {
        attrs.push(KeyValue::new("db.collection.name", table.to_owned()));
    }
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes(attrs)
        .start_with_context(tracer, &parent);
    if failed {
        opentelemetry::trace::Span::set_status(&mut span, Status::error("query failed"));
    }
    opentelemetry::trace::Span::end_with_timestamp(&mut span, end);
}
