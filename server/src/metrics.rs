//! Prometheus metrics on the admin port. One registry, registered once at
//! start; the names in the debugging checklist are kept verbatim.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub listener: &'static str,
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// The exemplar of a latency observation: the request's W3C trace id, which
/// finds its log lines (`grep trace_id=…`) and, when exported, its trace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    pub trace_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub grant_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// Stable `reason` values of `authserver_auth_denied_total` (docs/reference/errors.md).
pub const DENIAL_REASONS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "invalid_pkce",
    "code_replay",
    "refresh_reuse",
    "redirect_uri_mismatch",
    "invalid_target",
    "invalid_scope",
    "unauthorized_client",
    "unsupported_grant_type",
    "unsupported_response_type",
    "access_denied",
    "login_failed",
    "server_error",
    "login_throttled",
    "client_auth_throttled",
    "rate_limited",
    "overloaded",
    "invalid_dpop_proof",
    "upstream_login_failed",
];

/// Stable `reason` values of `authplane_dpop_proofs_rejected_total`: the
/// labels of the shared proof rules (`authplane_core::dpop::Reason`).
pub fn dpop_rejection_reasons() -> impl Iterator<Item = &'static str> {
    authplane_core::dpop::Reason::ALL.into_iter().map(|r| r.label())
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the server records.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration:
        Family<HttpLabels, HistogramWithExemplars<TraceExemplar>, fn() -> HistogramWithExemplars<TraceExemplar>>,
    pub tokens_issued: Family<GrantLabels, Counter>,
    pub auth_denied: Family<ReasonLabels, Counter>,
    pub dpop_validated: Counter,
    pub dpop_rejected: Family<ReasonLabels, Counter>,
    pub upstream_refresh: Family<OutcomeLabels, Counter>,
    /// Stored upstream grants still sealed with an older broker key.
    pub broker_grants_old_key: Gauge,
    pub db_up: Gauge,
    pub key_reloads: Family<OutcomeLabels, Counter>,
    /// Age of the signing key, set by the key maintenance loop.
    pub key_age: Gauge,
    pub db_query_duration: HistogramFamily<OperationLabels>,
    pub db_query_errors: Family<OperationLabels, Counter>,
    /// Pool connections by `state` (`in_use`, `idle`, `max`), set at each scrape.
    pub db_pool: Family<StatePool, Gauge>,
}

/// `state` of `authplane_db_pool_connections`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatePool {
    pub state: &'static str,
}

/// Statement verbs with their own series; anything else is `other`.
pub const DB_OPERATIONS: &[&str] = &["select", "insert", "update", "delete", "other"];

fn query_histogram() -> Histogram {
    // 50 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "authplane_http_requests",
            "HTTP requests by listener, method, route and status",
            http_requests.clone(),
        );
        let http_duration: Family<
            HttpLabels,
            HistogramWithExemplars<TraceExemplar>,
            fn() -> HistogramWithExemplars<TraceExemplar>,
        > = Family::new_with_constructor(|| HistogramWithExemplars::new(exponential_buckets(0.000_25, 2.0, 15)));
        registry.register(
            "authplane_http_request_duration_seconds",
            "HTTP request duration by listener, method, route and status",
            http_duration.clone(),
        );
        let tokens_issued = Family::<GrantLabels, Counter>::default();
        registry.register("authserver_tokens_issued", "Access tokens issued, by grant type", tokens_issued.clone());
        let auth_denied = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "authserver_auth_denied",
            "Authorization and token requests denied, by reason",
            auth_denied.clone(),
        );
        let dpop_validated = Counter::default();
        registry.register("authplane_dpop_proofs_validated", "DPoP proofs accepted", dpop_validated.clone());
        let dpop_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register("authplane_dpop_proofs_rejected", "DPoP proofs rejected, by reason", dpop_rejected.clone());
        let upstream_refresh = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "authplane_upstream_token_refresh",
            "Upstream (broker) token refreshes, by outcome",
            upstream_refresh.clone(),
        );
        let broker_grants_old_key = Gauge::default();
        registry.register(
            "authplane_broker_grants_old_key",
            "Stored upstream grants still encrypted with a broker key other than the current one (updated hourly)",
            broker_grants_old_key.clone(),
        );
        let db_up = Gauge::default();
        registry.register("authplane_db_up", "1 when the last database health probe succeeded", db_up.clone());
        let key_reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "authplane_signing_key_reloads",
            "Signing-key store reloads, by outcome",
            key_reloads.clone(),
        );
        let key_age = Gauge::default();
        registry.register(
            "authplane_signing_key_age_seconds",
            "Age of the key that signs now, in seconds",
            key_age.clone(),
        );
        let db_query_duration: HistogramFamily<OperationLabels> = Family::new_with_constructor(query_histogram);
        registry.register(
            "authplane_db_query_duration_seconds",
            "SQL statement duration by operation (select, insert, update, delete, other)",
            db_query_duration.clone(),
        );
        let db_query_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "authplane_db_query_errors",
            "SQL statements that failed, by operation",
            db_query_errors.clone(),
        );
        let db_pool = Family::<StatePool, Gauge>::default();
        registry.register(
            "authplane_db_pool_connections",
            "Database pool connections: in_use, idle, and max (the configured size)",
            db_pool.clone(),
        );
        // Known label values start at 0 so that every series exists from the
        // first scrape (rate() and alerts need it; so does the checklist's grep).
        for grant_type in ["authorization_code", "refresh_token", "client_credentials", "token_exchange"] {
            let _ = tokens_issued.get_or_create(&GrantLabels { grant_type });
        }
        for reason in DENIAL_REASONS {
            let _ = auth_denied.get_or_create(&ReasonLabels { reason });
        }
        for reason in dpop_rejection_reasons() {
            let _ = dpop_rejected.get_or_create(&ReasonLabels { reason });
        }
        for outcome in ["success", "failed", "revoked"] {
            let _ = upstream_refresh.get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in ["changed", "failed"] {
            let _ = key_reloads.get_or_create(&OutcomeLabels { outcome });
        }
        for &operation in DB_OPERATIONS {
            let _ = db_query_duration.get_or_create(&OperationLabels { operation });
            let _ = db_query_errors.get_or_create(&OperationLabels { operation });
        }
        for state in ["in_use", "idle", "max"] {
            let _ = db_pool.get_or_create(&StatePool { state });
        }
        registry.register_collector(Box::new(StaticCollector));
        registry.register_collector(Box::new(ProcessCollector));
        registry.register_collector(Box::new(OtelCollector));
        Arc::new(Metrics {
            registry,
            http_requests,
            http_duration,
            tokens_issued,
            auth_denied,
            dpop_validated,
            dpop_rejected,
            upstream_refresh,
            broker_grants_old_key,
            db_up,
            key_reloads,
            key_age,
            db_query_duration,
            db_query_errors,
            db_pool,
        })
    }

    /// One SQL statement, from sea-orm's per-query callback.
    pub fn query(&self, sql: &str, elapsed: std::time::Duration, failed: bool) {
        let verb = crate::telemetry::sql_operation(sql);
        let operation = DB_OPERATIONS.iter().copied().find(|o| *o == verb).unwrap_or("other");
        let labels = OperationLabels { operation };
        self.db_query_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if failed {
            self.db_query_errors.get_or_create(&labels).inc();
        }
    }

    /// Pool sizes, read just before a scrape.
    pub fn set_pool(&self, open: u32, idle: usize, max: u32) {
        let in_use = i64::from(open).saturating_sub(idle as i64).max(0);
        self.db_pool.get_or_create(&StatePool { state: "in_use" }).set(in_use);
        self.db_pool.get_or_create(&StatePool { state: "idle" }).set(idle as i64);
        self.db_pool.get_or_create(&StatePool { state: "max" }).set(i64::from(max));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn deny(&self, reason: &'static str) {
        self.auth_denied.get_or_create(&ReasonLabels { reason }).inc();
    }
}

/// `authplane_build_info{version,commit} 1`.
#[derive(Debug)]
struct StaticCollector;

impl Collector for StaticCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = ConstGauge::new(1i64);
        let labels = BuildLabels { version: crate::build_info::VERSION, commit: crate::build_info::GIT_COMMIT };
        let mut family =
            encoder.encode_descriptor("authplane_build_info", "Build information.", None, g.metric_type())?;
        g.encode(family.encode_family(&labels)?)?;
        Ok(())
    }
}

/// Trace export counters (always present; 0 while export is off).
#[derive(Debug)]
struct OtelCollector;

impl Collector for OtelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use crate::telemetry::otel::{EXPORT_FAILURES, SPANS_EXPORTED};
        use std::sync::atomic::Ordering;
        for (name, help, v) in [
            ("authplane_otel_spans_exported", "Spans accepted by the OTLP endpoint.", &SPANS_EXPORTED),
            (
                "authplane_otel_export_failures",
                "OTLP export calls that failed (their spans are dropped).",
                &EXPORT_FAILURES,
            ),
        ] {
            let c = ConstCounter::new(v.load(Ordering::Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// The standard `process_*` metrics, read from `/proc/self` at scrape time.
#[derive(Debug)]
struct ProcessCollector;

const CLOCK_TICKS: f64 = 100.0;
const PAGE_SIZE: i64 = 4096;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = std::fs::read_to_string("/proc/self/stat").ok() else { return Ok(()) };
        // Fields after the `(comm)` are space separated; comm may contain spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return Ok(()) };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        // `rest` starts at field 3 (state), so field N is f[N - 3].
        let cpu = (num(14 - 3) + num(15 - 3)) / CLOCK_TICKS;
        let start_ticks = num(22 - 3);
        let vsize = num(23 - 3) as i64;
        let rss = num(24 - 3) as i64 * PAGE_SIZE;
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<f64>().ok())))
            .unwrap_or(0.0);
        let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as i64).unwrap_or(0);

        let c = ConstCounter::new(cpu);
        c.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            c.metric_type(),
        )?)?;
        for (name, help, v) in [
            ("process_resident_memory_bytes", "Resident memory size in bytes.", rss),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", vsize),
            ("process_open_fds", "Number of open file descriptors.", fds),
        ] {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let g = ConstGauge::new(btime + start_ticks / CLOCK_TICKS);
        g.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checklist_names_are_exposed() {
        let m = Metrics::new();
        m.tokens_issued.get_or_create(&GrantLabels { grant_type: "client_credentials" }).inc();
        m.deny("invalid_pkce");
        let text = m.encode();
        for needle in [
            "authserver_tokens_issued_total{grant_type=\"client_credentials\"} 1",
            "authserver_auth_denied_total{reason=\"invalid_pkce\"} 1",
            "authplane_dpop_proofs_validated_total 0",
            "authplane_build_info{version=",
            "process_resident_memory_bytes ",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
