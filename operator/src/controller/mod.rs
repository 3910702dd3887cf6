//! The three reconcilers and what they share: the context, the error type,
//! reflector streams, server-side apply that skips no-op writes, status
//! patches and Events.

pub mod authserver;
pub mod credentials;
pub mod oauthclient;
pub mod protectedresource;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::conditions::Want;
use crate::metrics::{FailureLabels, Metrics};
use crate::render::SHARD_LABEL;
use crate::render::shards::{ShardIndex, Sharding, shard_of};
use crate::render::{FIELD_MANAGER, HASH_ANNOTATION, sha256_hex, stamp};
use authplane_crds::AuthServer;
use authplane_crds::common::condition;
use kube::runtime::reflector::ObjectRef;

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
    pub events: crate::events::Events,
    /// Image for AuthServers that do not set `spec.image`.
    pub server_image: String,
    /// What the last apply of an object returned (its `generation` or
    /// `resourceVersion`), so that an unchanged object is not written again.
    applied: Mutex<HashMap<String, String>>,
    /// Whether the ServiceMonitor CRD exists, and when that was checked.
    service_monitor_crd: Mutex<Option<(bool, std::time::Instant)>>,
    /// How the registry is split into Secrets.
    pub sharding: Sharding,
    /// Writes the API server refused, by object key: the payload hash and
    /// why. The same payload is never sent again; a changed one is.
    refused: Mutex<HashMap<String, (String, WriteFailure)>>,
    /// Consecutive failed reconciles by object key, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

/// A write the API server refused (a 4xx other than a conflict or rate limit):
/// sending the same payload again cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// A condition reason: the API's own (`RequestEntityTooLarge`, `Invalid`, …).
    pub reason: &'static str,
    pub message: String,
}

impl WriteFailure {
    /// The refusal in `e`, if it is one that a retry of the same payload
    /// cannot fix; `None` for conflicts, rate limits, 5xx and transport errors.
    pub fn of(e: &Error) -> Option<WriteFailure> {
        let Error::Kube(kube::Error::Api(s)) = e else { return None };
        let reason = match (s.code, s.reason.as_str()) {
            (409 | 429, _) | (500.., _) | (0..400, _) => return None,
            (413, _) => "RequestEntityTooLarge",
            (422, _) | (_, "Invalid") => "Invalid",
            (403, _) => "Forbidden",
            (400, _) => "BadRequest",
            _ => "WriteRefused",
        };
        let message: String = s.message.chars().take(300).collect();
        Some(WriteFailure { reason, message: format!("HTTP {}: {message}", s.code) })
    }
}

/// Shortest and longest wait after a failure; doubles in between.
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Context {
    pub fn new(
        client: Client,
        metrics: Metrics,
        server_image: String,
        instance: Option<String>,
        sharding: Sharding,
    ) -> Context {
        let events = crate::events::Events::new(client.clone(), FIELD_MANAGER, instance);
        Context {
            client,
            metrics,
            events,
            server_image,
            applied: Mutex::new(HashMap::new()),
            service_monitor_crd: Mutex::new(None),
            sharding,
            refused: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The next wait after one more failure of `key`: 5 s, 10 s, 20 s, … 5 min.
    pub fn backoff(&self, key: &str) -> Duration {
        let n = match self.failures.lock() {
            Ok(mut m) => {
                let n = m.entry(key.to_owned()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        BACKOFF_MIN.saturating_mul(1u32 << (n - 1).min(10)).min(BACKOFF_MAX)
    }

    /// `key` reconciled without failure: the next failure waits 5 s again.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }

    fn refusal(&self, key: &str, hash: &str) -> Option<WriteFailure> {
        let m = self.refused.lock().ok()?;
        m.get(key).filter(|(h, _)| h == hash).map(|(_, f)| f.clone())
    }

    fn set_refusal(&self, key: String, entry: Option<(String, WriteFailure)>) {
        if let Ok(mut m) = self.refused.lock() {
            match entry {
                Some(e) => m.insert(key, e),
                None => m.remove(&key),
            };
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
        let ev = crate::events::Event { warning, reason, note, action: "Reconcile" };
        if let Err(e) = self.events.publish(&ev, &obj.object_ref(&())).await {
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

/// A watch of `K` that only triggers reconciles and keeps no cache: for a
/// kind whose cache another controller already holds ([`SharedSecrets`]).
pub fn triggers<K>(api: Api<K>, wc: watcher::Config) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    watcher(api, wc).default_backoff().touched_objects()
}

/// A watch of `K` that triggers only when an object appears, when `key` of
/// it changes, or when it goes: for a kind of which the watching controller
/// reads only part. An AuthServer's status changes at every render; when
/// each of those triggered every OAuthClient (each reconcile scanning its
/// siblings), a burst of 10,000 clients cost the operator minutes of CPU.
pub fn triggers_on<K, T>(
    api: Api<K>,
    wc: watcher::Config,
    key: impl Fn(&K) -> T + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
    T: PartialEq + Send + 'static,
{
    use futures_util::TryStreamExt;
    // uid → key of each object last passed on.
    let mut seen: HashMap<String, T> = HashMap::new();
    watcher(api, wc).default_backoff().try_filter_map(move |ev| {
        let out = match ev {
            // A relist: every object is passed on again (objects deleted
            // while the watch was down leave no Delete event to clear).
            watcher::Event::Init => {
                seen.clear();
                None
            }
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let now = key(&o);
                match seen.get(&o.uid().unwrap_or_default()) {
                    Some(before) if *before == now => None,
                    _ => {
                        seen.insert(o.uid().unwrap_or_default(), now);
                        Some(o)
                    }
                }
            }
            watcher::Event::Delete(o) => {
                seen.remove(&o.uid().unwrap_or_default());
                Some(o)
            }
            watcher::Event::InitDone => None,
        };
        std::future::ready(Ok(out))
    })
}

/// What an OAuthClient's or ProtectedResource's status reads of its
/// AuthServer: the spec (by generation), whether it is being deleted, and a
/// `ConfigRendered` condition that is not True (quoted in `PendingConfig`).
pub fn server_trigger_key(a: &authplane_crds::AuthServer) -> (Option<i64>, bool, Option<(String, String)>) {
    let failed = a
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == condition::CONFIG_RENDERED))
        .filter(|c| !c.is_true())
        .map(|c| (c.reason.clone(), c.message.clone()));
    let (generation, deleting) = spec_trigger_key(a);
    (generation, deleting, failed)
}

/// Spec changes (by generation), the start of a deletion: all an OAuthClient
/// reads of a ProtectedResource.
pub fn spec_trigger_key<K: Resource>(o: &K) -> (Option<i64>, bool) {
    (o.meta().generation, o.meta().deletion_timestamp.is_some())
}

/// The cache of the operator's own Secrets but the credentials (config,
/// shards, keys), read by the AuthServer controller, which drives the watch
/// (its trigger stream fills the store); `ready` resolves once, from a
/// single waiter on the store.
#[derive(Clone)]
pub struct SharedSecrets {
    pub store: Store<Secret>,
    pub ready: tokio::sync::watch::Receiver<bool>,
}

/// A cache of one kind held once for every controller that reads it: one
/// controller drives it (the stream returned beside it is its main stream);
/// the others read the store and watch for triggers only. `ready` is set when
/// the stream passes the watch's first `InitDone`, i.e. once the store holds
/// the initial list; it is not a second waiter on the store's own readiness
/// signal, which wakes only one waiter (the driving controller's).
/// OAuthClients (driven by their controller), AuthServers (driven by the
/// AuthServer controller) and ProtectedResources (driven by theirs).
#[derive(Clone)]
pub struct Shared<K: Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    pub ready: tokio::sync::watch::Receiver<bool>,
}

pub type SharedClients = Shared<authplane_crds::OAuthClient>;

pub fn shared<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (Shared<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + use<K>)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    use futures_util::TryStreamExt;
    let (reader, writer) = reflector::store();
    let (tx, ready) = tokio::sync::watch::channel(false);
    let stream = watcher(api::<K>(client, namespace), watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut K| {
            o.managed_fields_mut().clear();
            if let Some(a) = o.meta_mut().annotations.as_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
        .reflect(writer)
        .inspect_ok(move |ev| {
            if matches!(ev, watcher::Event::InitDone) {
                let _ = tx.send(true);
            }
        })
        .touched_objects();
    (Shared { store: reader, ready }, stream)
}

pub fn shared_clients(
    client: &Client,
    namespace: Option<&str>,
) -> (SharedClients, impl Stream<Item = Result<authplane_crds::OAuthClient, watcher::Error>> + Send + use<>) {
    shared(client, namespace)
}

/// The cache of the operator's own Secrets other than the OAuthClients'
/// credentials (config, registry shards, keys; see [`credentials`] for
/// those) and the stream that fills it (which the AuthServer controller
/// must poll).
pub fn shared_secrets(
    client: &Client,
    namespace: Option<&str>,
) -> (SharedSecrets, impl Stream<Item = Result<Secret, watcher::Error>> + Send + use<>) {
    let selector = format!("{},!{}", crate::render::MANAGED_SELECTOR, crate::render::OAUTHCLIENT_LABEL);
    let (store, stream) = reflect(api::<Secret>(client, namespace), watcher::Config::default().labels(&selector));
    let wait = store.clone();
    let ready = when_ready(async move {
        let _ = wait.wait_until_ready().await;
    });
    (SharedSecrets { store, ready }, stream)
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

/// The live Secret a write compares with: whole, or a credential Secret as
/// the cache keeps it (compared by fingerprint).
#[derive(Clone, Copy)]
pub enum Live<'a> {
    Secret(&'a Secret),
    Credential(&'a credentials::Credential),
}

impl Live<'_> {
    /// Whether it already holds `desired` (stamped with `hash`).
    fn holds(&self, desired: &Secret, hash: &str) -> bool {
        match self {
            Live::Secret(live) => {
                hash_of(*live).map(String::as_str) == Some(hash)
                    && live.data == desired.data
                    && live.owner_references() == desired.owner_references()
                    && live.labels() == desired.labels()
            }
            Live::Credential(c) => c.fingerprint == credentials::fingerprint(desired),
        }
    }

    fn resource_version(&self) -> Option<String> {
        match self {
            Live::Secret(s) => s.resource_version(),
            Live::Credential(c) => c.resource_version.clone(),
        }
    }
}

/// What became of a Secret write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The live Secret already holds exactly this.
    Unchanged,
    Written,
    /// The API server refused it (now or, for the same payload, before).
    Refused(WriteFailure),
}

/// Makes the Secret exactly `desired`: created when missing, replaced (with
/// the live `resourceVersion`, so a concurrent change is a conflict, not
/// lost) when its data, labels or owners differ. A replace, not a
/// server-side apply: apply never prunes a key that another field manager
/// owns (a hand edit), so a corrupt or stray entry would stay for ever.
/// A payload the API server refused is not sent again until it changes.
pub async fn put_secret(ctx: &Context, mut desired: Secret, live: Option<Live<'_>>) -> Result<Written, Error> {
    let hash = stamp(&mut desired);
    if let Some(live) = &live
        && live.holds(&desired, &hash)
    {
        return Ok(Written::Unchanged);
    }
    let key = key_of(&desired);
    if let Some(f) = ctx.refusal(&key, &hash) {
        return Ok(Written::Refused(f));
    }
    let ns = desired.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = kube::api::PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    let result = match live {
        None => api.create(&pp, &desired).await,
        Some(live) => {
            desired.metadata.resource_version = live.resource_version();
            api.replace(&desired.name_any(), &pp, &desired).await
        }
    };
    match result.map_err(Error::from) {
        Ok(out) => {
            ctx.remember(format!("{key}/written"), out.resource_version());
            ctx.set_refusal(key, None);
            Ok(Written::Written)
        }
        Err(e) => match WriteFailure::of(&e) {
            Some(f) => {
                ctx.set_refusal(key, Some((hash, f.clone())));
                Ok(Written::Refused(f))
            }
            None => Err(e),
        },
    }
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

/// Shared error policy: count by kind and retry with exponential backoff
/// (5 s doubling to 5 min; a successful reconcile starts again at 5 s).
pub fn on_error<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, e: &Error) -> kube::runtime::controller::Action {
    let kind = kind_label::<K>();
    ctx.metrics.failures.get_or_create(&FailureLabels { kind, error: e.metric_label() }).inc();
    let wait = ctx.backoff(&key_of(obj));
    tracing::warn!(
        kind,
        object = %obj.name_any(),
        error = e.metric_label(),
        detail = %e,
        retry_in_s = wait.as_secs(),
        "reconcile failed; retrying"
    );
    kube::runtime::controller::Action::requeue(wait)
}

fn kind_label<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "AuthServer" => "AuthServer",
        "OAuthClient" => "OAuthClient",
        "ProtectedResource" => "ProtectedResource",
        _ => "other",
    }
}

/// Whether `secret` is exactly the version the operator's last write
/// produced: the watch event of its own write, which needs no reconcile.
pub fn own_write(ctx: &Context, secret: &Secret) -> bool {
    let v = secret.resource_version();
    v.is_some() && ctx.remembered(&format!("{}/written", key_of(secret))) == v
}

/// The key `on_error` and `succeeded` use for an object.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    key_of(obj)
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

/// The newest index of every registry shard Secret, kept from a watch of
/// the shard Secrets that also says which objects of one kind each change
/// concerns ([`ShardWatch::changes`]). Reconciles read the index from here,
/// not from the shared Secret cache: that cache's own watch may lag this
/// one, and a reconcile woken by a shard change must see that change. Only
/// the parsed indexes are kept (name → entry hash), not the shard contents.
pub struct ShardWatch {
    latest: Mutex<HashMap<String, Arc<ShardIndex>>>,
    /// True once the watch has listed every shard Secret.
    listed: tokio::sync::watch::Sender<bool>,
    pub ready: tokio::sync::watch::Receiver<bool>,
}

impl Default for ShardWatch {
    fn default() -> Self {
        let (listed, ready) = tokio::sync::watch::channel(false);
        Self { latest: Mutex::default(), listed, ready }
    }
}

/// The objects a shard change concerns.
pub enum ShardChange {
    /// These, by name: their entry or left-out mark changed.
    Named(Vec<String>),
    /// Every object of the shard (first sight of it, or it is gone).
    All,
}

/// A change of one shard Secret: namespace, AuthServer, shard number, and
/// which objects it concerns.
pub struct ShardEvent {
    pub namespace: String,
    pub server: String,
    pub shard: u32,
    pub change: ShardChange,
}

impl ShardWatch {
    /// The newest index of shard Secret `secret` in `ns`.
    pub fn get(&self, ns: &str, secret: &str) -> Option<Arc<ShardIndex>> {
        self.latest.lock().ok()?.get(&format!("{ns}/{secret}")).cloned()
    }

    /// Watches the operator's registry shard Secrets, keeps their indexes
    /// and yields, per change, the objects of `kind` ("OAuthClient" or
    /// "ProtectedResource") whose state in it changed. A watch error is
    /// logged and retried with backoff.
    pub fn changes(self: Arc<Self>, api: Api<Secret>, kind: String) -> impl Stream<Item = ShardEvent> + Send {
        let wc = watcher::Config::default().labels(&format!("{},{}", crate::render::MANAGED_SELECTOR, SHARD_LABEL));
        watcher(api, wc).default_backoff().filter_map(move |ev| {
            let out = match ev {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                    let index = crate::render::objects::shard_index(&s).map(Arc::new);
                    self.update(&s, index, &kind)
                }
                Ok(watcher::Event::Delete(s)) => self.update(&s, None, &kind),
                Ok(watcher::Event::InitDone) => {
                    let _ = self.listed.send(true);
                    None
                }
                Ok(watcher::Event::Init) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "watch of registry shard Secrets failed; retrying");
                    None
                }
            };
            std::future::ready(out)
        })
    }

    fn update(&self, s: &Secret, index: Option<Arc<ShardIndex>>, kind: &str) -> Option<ShardEvent> {
        let shard = s.labels().get(SHARD_LABEL)?.parse::<u32>().ok()?;
        let server = s.labels().get(crate::render::AUTHSERVER_LABEL)?.clone();
        let namespace = s.namespace()?;
        let key = format!("{namespace}/{}", s.name_any());
        let before = {
            let mut m = self.latest.lock().ok()?;
            match &index {
                Some(ix) => m.insert(key, ix.clone()),
                None => m.remove(&key),
            }
        };
        let change = match (before, index) {
            (Some(a), Some(b)) => {
                let changed = changed_names(&a, &b, kind);
                if changed.is_empty() {
                    return None;
                }
                ShardChange::Named(changed)
            }
            _ => ShardChange::All,
        };
        Some(ShardEvent { namespace, server, shard, change })
    }
}

/// Reconcile triggers for objects of kind `K` (OAuthClient or
/// ProtectedResource, found in `store`, pointing at an AuthServer by
/// `server_of`) from the changes of the shard Secrets.
pub fn shard_triggers<K>(
    shards: Arc<ShardWatch>,
    api: Api<Secret>,
    store: Store<K>,
    server_of: fn(&K) -> &str,
    sharding: Sharding,
) -> impl Stream<Item = ObjectRef<K>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    shards.changes(api, K::kind(&()).into_owned()).flat_map(move |ev| {
        let refs: Vec<ObjectRef<K>> = match ev.change {
            ShardChange::Named(names) => names.iter().map(|n| ObjectRef::new(n).within(&ev.namespace)).collect(),
            ShardChange::All => store
                .state()
                .into_iter()
                .filter(|o| {
                    o.meta().namespace.as_deref() == Some(ev.namespace.as_str())
                        && server_of(o) == ev.server
                        && o.meta().name.as_deref().is_some_and(|n| shard_of(n, sharding.count) == ev.shard)
                })
                .map(|o| ObjectRef::from_obj(o.as_ref()))
                .collect(),
        };
        futures_util::stream::iter(refs)
    })
}

/// Names of the objects of `kind` whose entry hash or left-out mark differs
/// between two versions of a shard index.
fn changed_names(a: &ShardIndex, b: &ShardIndex, kind: &str) -> Vec<String> {
    let (ea, eb) = match kind {
        "OAuthClient" => (&a.clients, &b.clients),
        _ => (&a.resources, &b.resources),
    };
    let mut out: Vec<String> = ea
        .iter()
        .filter(|(n, h)| eb.get(*n) != Some(*h))
        .chain(eb.iter().filter(|(n, _)| !ea.contains_key(*n)))
        .map(|(n, _)| n.clone())
        .collect();
    let prefix = format!("{kind}/");
    out.extend(
        a.too_large.symmetric_difference(&b.too_large).filter_map(|k| k.strip_prefix(&prefix)).map(str::to_owned),
    );
    out.sort_unstable();
    out.dedup();
    out
}

/// What the registry shard of an object holds, as the pods read it.
pub struct InShard {
    pub secret: String,
    pub index: Option<Arc<ShardIndex>>,
}

/// Looks up the shard Secret of object `name` of AuthServer `server` in the
/// newest shard indexes seen.
pub fn in_shard(shards: &ShardWatch, ns: &str, server: &str, name: &str, sharding: Sharding) -> InShard {
    let secret = crate::render::names::shard_secret(server, shard_of(name, sharding.count));
    let index = shards.get(ns, &secret);
    InShard { secret, index }
}

impl InShard {
    /// `Ready` of an object the registry rules accept, whose entry hashes to
    /// `hash`: True only when the shard Secret holds exactly that entry.
    pub fn want(&self, kind: &str, name: &str, hash: &str, server: &AuthServer, server_name: &str) -> Want {
        let secret = &self.secret;
        let held = self.index.as_ref().and_then(|ix| match kind {
            "OAuthClient" => ix.clients.get(name),
            _ => ix.resources.get(name),
        });
        if held.map(String::as_str) == Some(hash) {
            return Want::ok(
                condition::READY,
                "Registered",
                format!("in Secret {secret}, part of the configuration the AuthServer {server_name} pods read"),
            );
        }
        if self.index.as_ref().is_some_and(|ix| ix.too_large.contains(&ShardIndex::too_large_key(kind, name))) {
            return Want::fail(
                condition::READY,
                "ConfigTooLarge",
                format!(
                    "left out of Secret {secret}: that registry shard is full (operator flag --max-shard-bytes); \
                     the AuthServer {server_name} does not know this object"
                ),
            );
        }
        let mut m = format!("accepted; waiting for AuthServer {server_name} to write it to Secret {secret}");
        if let Some(c) = server
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == condition::CONFIG_RENDERED))
            .filter(|c| !c.is_true())
        {
            m.push_str(&format!("; the AuthServer says ConfigRendered=False {}: {}", c.reason, c.message));
        }
        Want::fail(condition::READY, "PendingConfig", m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(clients: &[(&str, &str)], too_large: &[&str]) -> ShardIndex {
        ShardIndex {
            resources: [("api".to_owned(), "r1".to_owned())].into(),
            clients: clients.iter().map(|(n, h)| ((*n).to_owned(), (*h).to_owned())).collect(),
            too_large: too_large.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[test]
    fn a_shard_change_names_only_the_objects_whose_state_in_it_changed() {
        let a = index(&[("kept", "h1"), ("edited", "h2"), ("removed", "h3")], &["OAuthClient/full"]);
        let b = index(&[("kept", "h1"), ("edited", "h2b"), ("added", "h4")], &["OAuthClient/fuller"]);
        assert_eq!(changed_names(&a, &b, "OAuthClient"), ["added", "edited", "full", "fuller", "removed"]);
        // The resources did not change; a client's left-out mark is not theirs.
        assert!(changed_names(&a, &b, "ProtectedResource").is_empty());
        assert!(changed_names(&a, &a, "OAuthClient").is_empty());
    }
}
