//! The three reconcilers and what they share: the context, the error type,
//! reflector streams, server-side apply that skips no-op writes, status
//! patches and Events.

pub mod authserver;
pub mod oauthclient;
pub mod protectedresource;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics::{FailureLabels, Metrics};
use crate::render::{FIELD_MANAGER, HASH_ANNOTATION, sha256_hex, stamp};

/// Everything a reconcile can fail with. `metric_label` names the kind in
/// `authplane_operator_reconcile_failures_total{error=…}`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::KeyGenError),
    #[error("cannot encode {0}: {1}")]
    Encode(&'static str, #[source] serde_json::Error),
    #[error("object has no {0}")]
    Incomplete(&'static str),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "api_conflict",
            Error::Kube(kube::Error::Api(e)) if e.code == 404 => "api_not_found",
            Error::Kube(kube::Error::Api(e)) if e.code == 422 => "api_invalid",
            Error::Kube(kube::Error::Api(e)) if e.code == 403 => "api_forbidden",
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "api_unreachable",
            Error::Keys(_) => "key_generation",
            Error::Encode(..) => "encode",
            Error::Incomplete(_) => "incomplete_object",
        }
    }
}

/// State shared by every reconciler.
pub struct Context {
    pub client: Client,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Image for AuthServers that do not set `spec.image`.
    pub server_image: String,
    /// What the last apply of an object returned (its `generation` or
    /// `resourceVersion`), so that an unchanged object is not written again.
    applied: Mutex<HashMap<String, String>>,
    /// Whether the ServiceMonitor CRD exists, and when that was checked.
    service_monitor_crd: Mutex<Option<(bool, std::time::Instant)>>,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, server_image: String, instance: Option<String>) -> Context {
        let recorder = Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance });
        Context {
            client,
            metrics,
            recorder,
            server_image,
            applied: Mutex::new(HashMap::new()),
            service_monitor_crd: Mutex::new(None),
        }
    }

    fn remembered(&self, key: &str) -> Option<String> {
        self.applied.lock().ok().and_then(|m| m.get(key).cloned())
    }

    fn remember(&self, key: String, token: Option<String>) {
        if let (Ok(mut m), Some(t)) = (self.applied.lock(), token) {
            m.insert(key, t);
        }
    }

    /// Publishes an Event on `obj`; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(reason, error = %e, "cannot publish Event");
        }
    }

    /// Whether `servicemonitors.monitoring.coreos.com` exists; re-checked
    /// at most once a minute.
    pub async fn service_monitor_crd_exists(&self) -> bool {
        if let Ok(g) = self.service_monitor_crd.lock()
            && let Some((exists, at)) = *g
            && at.elapsed() < Duration::from_secs(60)
        {
            return exists;
        }
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let exists = matches!(api.get_metadata_opt("servicemonitors.monitoring.coreos.com").await, Ok(Some(_)));
        if let Ok(mut g) = self.service_monitor_crd.lock() {
            *g = Some((exists, std::time::Instant::now()));
        }
        exists
    }
}

/// An API for `K` in `namespace`, or across all namespaces.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch of `K` feeding a local cache, with `managedFields` dropped to
/// keep memory small. The stream must be polled for the cache to fill.
pub fn reflect<K>(api: Api<K>, wc: watcher::Config) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, wc)
        .default_backoff()
        .modify(|o: &mut K| {
            o.managed_fields_mut().clear();
            if let Some(a) = o.meta_mut().annotations.as_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), obj.namespace().unwrap_or_default(), obj.name_any())
}

fn hash_of<K: Resource>(obj: &K) -> Option<&String> {
    obj.meta().annotations.as_ref().and_then(|a| a.get(HASH_ANNOTATION))
}

/// Server-side apply of `desired`, forced (the operator owns these fields).
async fn patch_apply<K>(client: &Client, desired: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let ns = desired.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    Ok(api.patch(&desired.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired)).await?)
}

/// Applies a Secret unless the live one already has exactly this content.
/// Returns whether it wrote.
pub async fn apply_secret(ctx: &Context, mut desired: Secret, live: Option<&Secret>) -> Result<bool, Error> {
    let hash = stamp(&mut desired);
    if let Some(live) = live
        && hash_of(live) == Some(&hash)
        && live.data == desired.data
        && live.owner_references() == desired.owner_references()
    {
        return Ok(false);
    }
    patch_apply(&ctx.client, &desired).await?;
    Ok(true)
}

/// Applies an object unless the live one carries the same rendered hash and
/// has not changed since the operator last applied it (`token`: the
/// `generation` for workloads, else the `resourceVersion`). After a restart
/// every object is applied once (a no-op on the server if nothing drifted).
pub async fn apply_tracked<K>(
    ctx: &Context,
    mut desired: K,
    live: Option<&K>,
    token: fn(&K) -> Option<String>,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let hash = stamp(&mut desired);
    let key = key_of(&desired);
    if let Some(live) = live
        && hash_of(live) == Some(&hash)
        && token(live).is_some()
        && ctx.remembered(&key) == token(live)
    {
        return Ok(false);
    }
    let out = patch_apply(&ctx.client, &desired).await?;
    ctx.remember(key, token(&out));
    Ok(true)
}

pub fn generation_token<K: Resource>(o: &K) -> Option<String> {
    o.meta().generation.map(|g| g.to_string())
}

pub fn version_token<K: Resource>(o: &K) -> Option<String> {
    o.resource_version()
}

/// Writes `status` with server-side apply unless the object already shows
/// it. When the object seen is the very version the operator's last status
/// write replaced (a trigger that raced that write's own watch event), it
/// waits for the fresh object instead: writing from the stale one would
/// repeat the write and could move `lastTransitionTime`. Returns whether it
/// wrote.
pub async fn patch_status<K, S>(ctx: &Context, obj: &K, current: Option<&S>, status: &S) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + DeserializeOwned + Clone + Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let value = serde_json::to_value(status).map_err(|e| Error::Encode("status", e))?;
    let key = format!("{}/status", key_of(obj));
    let seen = obj.resource_version().unwrap_or_default();
    let fingerprint = sha256_hex(value.to_string().as_bytes());
    if let Some(last) = ctx.remembered(&key) {
        let mut parts = last.split(' ');
        let (fp, before, after) = (parts.next(), parts.next(), parts.next());
        if before == Some(seen.as_str()) || (fp == Some(fingerprint.as_str()) && after == Some(seen.as_str())) {
            return Ok(false);
        }
    }
    let ns = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": value,
    });
    let out =
        api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    ctx.remember(key, Some(format!("{fingerprint} {seen} {}", out.resource_version().unwrap_or_default())));
    Ok(true)
}

/// Shared error policy: count by kind and retry with a short delay.
pub fn on_error(metrics: &Metrics, kind: &'static str, name: &str, e: &Error) -> kube::runtime::controller::Action {
    metrics.failures.get_or_create(&FailureLabels { kind, error: e.metric_label() }).inc();
    tracing::warn!(kind, object = %name, error = e.metric_label(), detail = %e, "reconcile failed; retrying");
    kube::runtime::controller::Action::requeue(Duration::from_secs(5))
}

/// Drains a controller's result stream. Reconcile failures are logged by
/// `on_error`; this logs the controller's own trouble (watch errors).
pub async fn drain<S, T>(kind: &'static str, stream: S)
where
    S: Stream<Item = Result<T, kube::runtime::controller::Error<Error, watcher::Error>>>,
{
    use kube::runtime::controller::Error as CtrlError;
    stream
        .for_each(|r| async move {
            match r {
                Ok(_) | Err(CtrlError::ReconcilerFailed(..)) => {}
                Err(CtrlError::ObjectNotFound(o)) => {
                    tracing::debug!(kind, object = %o, "object gone before its reconcile")
                }
                Err(e) => tracing::warn!(kind, detail = %e, "controller error"),
            }
        })
        .await;
}

/// The owner's name of a Secret owned by an object of kind `K`, if any.
pub fn controller_owner<K: Resource<DynamicType = ()>>(obj: &impl Resource) -> Option<(String, String)> {
    obj.meta().owner_references.as_ref()?.iter().find_map(|o| {
        (o.controller == Some(true) && o.kind == K::kind(&()) && o.api_version == K::api_version(&()))
            .then(|| (o.name.clone(), o.uid.clone()))
    })
}

/// A reconcile's span: `kind`, `object` and a fresh `trace_id` on every line.
pub fn span(kind: &'static str, ns: &str, name: &str) -> tracing::Span {
    tracing::info_span!("reconcile", kind, object = %format!("{ns}/{name}"), trace_id = %crate::telemetry::new_trace_id())
}

/// Resolves a flag once `caches` (the stores' `wait_until_ready`) completes.
/// Reconciles wait on the flag, not on the stores: a store's readiness
/// signal wakes only one waiter (so concurrent reconciles must not wait on
/// it), and the controller itself already waits on its main store, which
/// must therefore not be passed here.
pub fn when_ready(caches: impl Future<Output = ()> + Send + 'static) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        caches.await;
        let _ = tx.send(true);
    });
    rx
}

pub async fn caches_ready(ready: &tokio::sync::watch::Receiver<bool>) {
    let mut rx = ready.clone();
    let _ = rx.wait_for(|r| *r).await;
}
