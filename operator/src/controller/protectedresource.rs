//! ProtectedResource → status. The AuthServer controller puts accepted
//! resources into the config; this one tells the user whether (and why not)
//! by running the same pure registry rules.

use std::sync::Arc;
use std::time::Duration;

use authplane_core::ResourceUri;
use authplane_crds::common::condition;
use authplane_crds::{AuthServer, ProtectedResource, ProtectedResourceStatus};
use futures_util::Future;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tracing::Instrument;

use super::{Context, Error, api, in_shard, patch_status};
use crate::conditions::{Want, merge, rfc3339, transitions};
use crate::probe::{Prober, Probes, verdict};
use crate::render::config::{ResourceIn, Verdict, registry};
use crate::render::shards::entry_hash;
use k8s_openapi::api::core::v1::Secret;

const KIND: &str = "ProtectedResource";

pub struct Ctx {
    pub base: Arc<Context>,
    ready: tokio::sync::watch::Receiver<bool>,
    servers: Store<AuthServer>,
    resources: Store<ProtectedResource>,
    /// The registry shards' indexes.
    shards: Arc<super::ShardWatch>,
    /// The last PRM fetch per resource (`spec.prmCheck`).
    prm: Arc<Prober<ObjectRef<ProtectedResource>>>,
}

pub fn run(
    base: Arc<Context>,
    namespace: Option<String>,
    (shared_resources, resource_stream): (
        super::Shared<ProtectedResource>,
        impl futures_util::Stream<Item = Result<ProtectedResource, watcher::Error>> + Send + 'static,
    ),
    shared_servers: super::Shared<AuthServer>,
    probes: Arc<Probes>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let client = base.client.clone();
    let ns = namespace.as_deref();
    // The ProtectedResource cache is shared with the other two controllers;
    // this controller's main stream fills it. The AuthServer cache is the
    // AuthServer controller's; here only a watch that triggers.
    let resources = shared_resources.store.clone();
    let servers = shared_servers.store.clone();
    let server_stream =
        super::triggers_on(api::<AuthServer>(&client, ns), watcher::Config::default(), super::server_trigger_key);
    let shards = Arc::new(super::ShardWatch::default());
    let shard_stream = super::shard_triggers(
        shards.clone(),
        api::<Secret>(&client, ns),
        resources.clone(),
        |r: &ProtectedResource| &r.spec.auth_server_ref.name,
        base.sharding,
    );
    let index = resources.clone();
    let shards_listed = shards.ready.clone();
    let ready = super::when_ready(async move {
        super::caches_ready(&shared_servers.ready).await;
        super::caches_ready(&shards_listed).await;
    });
    let (prm, prm_changed) = Prober::new(probes);
    let alive = resources.clone();
    tokio::spawn(prm.clone().run(move |k| alive.get(k).is_some()));
    let ctx = Arc::new(Ctx { base, ready, servers, resources: resources.clone(), shards, prm });
    let controller = Controller::for_stream(resource_stream, resources)
        // A PRM document that changed since the last fetch.
        .reconcile_on(prm_changed)
        // A registry shard change wakes the resources whose entry changed.
        .reconcile_on(shard_stream)
        .watches_stream(server_stream, move |a: AuthServer| {
            let ns = a.namespace();
            let name = a.name_any();
            index
                .state()
                .into_iter()
                .filter(|r| r.namespace() == ns && r.spec.auth_server_ref.name == name)
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(Config::default().concurrency(8))
        .graceful_shutdown_on(shutdown)
        .run(
            |obj, ctx: Arc<Ctx>| async move {
                let span = super::span(KIND, &obj.namespace().unwrap_or_default(), &obj.name_any());
                let key = super::object_key(obj.as_ref());
                let out = reconcile(obj, ctx.clone()).instrument(span).await;
                if out.is_ok() {
                    ctx.base.succeeded(&key);
                }
                out
            },
            |obj, e, ctx| super::on_error(&ctx.base, obj.as_ref(), e),
            ctx,
        );
    super::drain(KIND, controller)
}

async fn reconcile(obj: Arc<ProtectedResource>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let _measure = ctx.base.metrics.measure(KIND);
    tracing::debug!("reconcile");
    // Decide only on complete caches: a half-filled cache would report a
    // missing AuthServer (or drop clients from the config) at start-up.
    super::caches_ready(&ctx.ready).await;
    if obj.metadata.deletion_timestamp.is_some() {
        ctx.prm.forget(&ObjectRef::from_obj(obj.as_ref()));
        return Ok(Action::await_change());
    }
    let ns = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
    let name = obj.name_any();
    let generation = obj.metadata.generation;
    let before = obj.status.clone().unwrap_or_default();
    let server_name = &obj.spec.auth_server_ref.name;
    let server = ctx.servers.get(&ObjectRef::new(server_name).within(&ns));

    let mut requeue = None;
    let (want, issuer) = match &server {
        None => (
            Want::fail(
                condition::READY,
                "AuthServerNotFound",
                format!(
                    "AuthServer {server_name} does not exist in namespace {ns}; create it or fix spec.authServerRef.name"
                ),
            ),
            None,
        ),
        Some(server) => {
            let siblings: Vec<Arc<ProtectedResource>> = ctx
                .resources
                .state()
                .into_iter()
                .filter(|r| {
                    r.namespace().as_deref() == Some(ns.as_str())
                        && &r.spec.auth_server_ref.name == server_name
                        && r.metadata.deletion_timestamp.is_none()
                })
                .collect();
            let inputs: Vec<ResourceIn<'_>> = siblings.iter().map(|r| ResourceIn::of(r)).collect();
            let reg = registry(&inputs, &[]);
            let want = match reg.resource_verdicts.get(&name) {
                Some(Verdict::Accepted) => {
                    let entry = reg.resource_names.iter().position(|n| *n == name).and_then(|i| reg.resources.get(i));
                    let hash = entry.map(entry_hash).unwrap_or_default();
                    in_shard(&ctx.shards, &ns, server_name, &name, ctx.base.sharding).want(
                        "ProtectedResource",
                        &name,
                        &hash,
                        server,
                        server_name,
                    )
                }
                Some(Verdict::Rejected { reason, message }) => {
                    if *reason == "DuplicateResource" {
                        // The winner may go away; look again.
                        requeue = Some(Duration::from_secs(60));
                    }
                    Want::fail(condition::READY, reason, message.clone())
                }
                // Not in the cache yet (we were just created): look again soon.
                None => {
                    requeue = Some(Duration::from_secs(2));
                    Want::fail(condition::READY, "Pending", "waiting for the operator's cache")
                }
            };
            (want, Some(server.spec.issuer.clone()))
        }
    };

    let now = rfc3339(Timestamp::now().as_second());
    let mut conditions = merge(&before.conditions, std::slice::from_ref(&want), generation, &now);
    let prm = prm_condition(&ctx, &obj, issuer.as_deref(), &before.conditions, generation, &now);
    let prm_event = verdict::event(&before.conditions, &prm, "PRMVerified").map(|e| (e, prm.message.clone()));
    conditions.push(prm);
    let status = ProtectedResourceStatus {
        observed_generation: generation,
        conditions,
        issuer,
        canonical_resource: ResourceUri::parse(&obj.spec.resource).ok().map(|r| r.as_str().to_owned()),
    };
    // An Event when Ready turns False, or stays False for a new reason.
    let flipped = transitions(&before.conditions, &status.conditions).iter().any(|c| c.type_ == condition::READY)
        || before.conditions.iter().any(|c| c.type_ == condition::READY && c.reason != want.reason);
    let wrote = patch_status(&ctx.base, obj.as_ref(), obj.status.as_ref(), &status).await?;
    if flipped && !want.status && want.reason != "PendingConfig" {
        ctx.base.event(obj.as_ref(), true, want.reason, want.message.clone()).await;
    }
    if wrote && let Some(((warning, reason), message)) = prm_event {
        tracing::info!(condition = condition::PRM_VERIFIED, reason = %reason, detail = %message, "diagnostic changed");
        ctx.base.event(obj.as_ref(), warning, &reason, message).await;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// `PRMVerified` from the last fetch of the resource's PRM (never waits for
/// the network: a first fetch shows `Unknown`/`Checking` and triggers
/// another reconcile when it lands). Not part of `Ready`: the registration
/// is right whatever the MCP server publishes.
fn prm_condition(
    ctx: &Ctx,
    obj: &ProtectedResource,
    issuer: Option<&str>,
    before: &[authplane_crds::Condition],
    generation: Option<i64>,
    now: &str,
) -> authplane_crds::Condition {
    let key = ObjectRef::from_obj(obj);
    let v = match (&obj.spec.prm_check, issuer) {
        (None, _) => {
            ctx.prm.forget(&key);
            verdict::Verdict::not_checked(
                "spec.prmCheck is not set: the operator does not fetch this MCP server's PRM (set prmCheck: {} to                  check the URL derived from spec.resource, or prmCheck.url for an in-cluster URL)",
            )
        }
        (Some(_), None) => {
            ctx.prm.forget(&key);
            verdict::Verdict::not_checked("no AuthServer to compare the PRM with (see Ready)")
        }
        (Some(check), Some(issuer)) => {
            let urls = match &check.url {
                Some(u) => vec![u.clone()],
                None => verdict::prm_urls(&obj.spec.resource),
            };
            match ctx.prm.want(key, urls.clone()) {
                Some(f) => verdict::prm(&f, &obj.spec.resource, issuer, &obj.spec.scopes),
                None => match verdict::pending(before, condition::PRM_VERIFIED, generation, &urls) {
                    Some(c) => return c,
                    None => verdict::checking(&urls),
                },
            }
        }
    };
    verdict::condition(before, condition::PRM_VERIFIED, &v, generation, now)
}
