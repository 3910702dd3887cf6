//! Operator metrics on `/metrics` (Prometheus text format):
//! reconciles, failures by error kind, reconcile duration by kind, and API
//! writes by resource and verb (the "settled cluster causes zero writes"
//! check reads `authplane_operator_api_writes_total`).

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub resource: String,
    pub verb: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconciles: Family<KindLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    pub writes: Family<WriteLabels, Counter>,
    pub leader: Gauge,
    pub key_rotations: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("authplane_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let writes = Family::<WriteLabels, Counter>::default();
        let leader = Gauge::default();
        let key_rotations = Counter::default();
        registry.register("reconciles", "Reconciles started, by kind", reconciles.clone());
        registry.register("reconcile_failures", "Reconciles that failed, by kind and error", failures.clone());
        registry.register("reconcile_duration_seconds", "Reconcile duration, by kind", duration.clone());
        registry.register("api_writes", "Write requests sent to the API server, by resource and verb", writes.clone());
        registry.register("leader", "1 while this replica holds the leader Lease", leader.clone());
        registry.register(
            "signing_key_rotations",
            "Signing keys published by automatic rotation",
            key_rotations.clone(),
        );
        Metrics { registry: Arc::new(registry), reconciles, failures, duration, writes, leader, key_rotations }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a reconcile and records its duration when the guard drops.
    pub fn measure(&self, kind: &'static str) -> Measure {
        self.reconciles.get_or_create(&KindLabels { kind }).inc();
        Measure { metrics: self.clone(), kind, start: Instant::now() }
    }
}

pub struct Measure {
    metrics: Metrics,
    kind: &'static str,
    start: Instant,
}

impl Drop for Measure {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&KindLabels { kind: self.kind })
            .observe(self.start.elapsed().as_secs_f64());
    }
}
