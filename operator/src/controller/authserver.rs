//! AuthServer → config Secret, signing-key Secret (with rotation), Deployment,
//! Service, ServiceMonitor, status.
//!
//! Triggered by the AuthServer itself, by the objects it owns (so a deleted or
//! edited child is repaired), by every ProtectedResource and OAuthClient that
//! references it, and by the rotation schedule (`requeue_after`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authplane_core::brokerkeys;
use authplane_crds::authserver::SigningKeyStatus;
use authplane_crds::common::condition;
use authplane_crds::oauthclient::ClientType;
use authplane_crds::{AuthServer, AuthServerStatus, OAuthClient, ProtectedResource};
use base64::Engine;
use futures_util::Future;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::Instrument;

use super::credentials::{Credential, Credentials};
use super::{
    Context, Error, Live, WriteFailure, Written, api, apply_tracked, generation_token, patch_status, put_secret,
    reflect, version_token,
};
use crate::conditions::{Want, merge, rfc3339, transitions};
use crate::keys;
use crate::probe::{Prober, Probes, verdict};
use crate::render::config::{ClientIn, Registry, ResourceIn, client_id, client_secret_name, registry, render, to_yaml};
use crate::render::objects::{self, Owner};
use crate::render::{AUTHSERVER_LABEL, FIELD_MANAGER, MANAGED_SELECTOR, names, sha256_hex, shards, stamp};

const KIND: &str = "AuthServer";
/// Longest sleep between reconciles of a settled AuthServer (picks up
/// changes to bring-your-own client Secrets, which are not watched).
const RESYNC: Duration = Duration::from_secs(600);

pub struct Ctx {
    pub base: Arc<Context>,
    ready: tokio::sync::watch::Receiver<bool>,
    /// The operator's config, shard and keys Secrets.
    secrets: Store<Secret>,
    /// The OAuthClients' credential Secrets (their digests go in the config).
    credentials: Credentials,
    deployments: Store<Deployment>,
    resources: Store<ProtectedResource>,
    clients: Store<OAuthClient>,
    services: Store<Service>,
    debounce: Arc<Debounce>,
    /// The last discovery fetch per AuthServer (`IssuerReachable`).
    discovery: Arc<Prober<ObjectRef<AuthServer>>>,
}

/// Trailing debounce with a maximum wait, per AuthServer: a render waits
/// until its registry has been quiet for `QUIET`, but never longer than
/// `MAX_WAIT` after the first change it has not rendered yet, so a steady
/// stream of edits is still written every few seconds.
#[derive(Default)]
pub struct Debounce {
    pending: std::sync::Mutex<HashMap<String, (Instant, Instant)>>,
}

pub const QUIET: Duration = Duration::from_secs(1);
pub const MAX_WAIT: Duration = Duration::from_secs(5);

impl Debounce {
    /// A change that the AuthServer `ns/name` must render.
    fn touch(&self, ns: &str, name: &str) {
        let now = Instant::now();
        if let Ok(mut m) = self.pending.lock() {
            let e = m.entry(format!("{ns}/{name}")).or_insert((now, now));
            e.1 = now;
        }
    }

    /// How much longer to wait before rendering, or `None` to render now
    /// (which takes the pending changes).
    fn wait(&self, ns: &str, name: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut m = self.pending.lock().ok()?;
        let key = format!("{ns}/{name}");
        let (first, last) = *m.get(&key)?;
        let due = (last + QUIET).min(first + MAX_WAIT);
        if due > now {
            return Some(due - now);
        }
        m.remove(&key);
        None
    }
}

/// The AuthServer controller; runs until `shutdown` resolves.
#[allow(clippy::too_many_arguments)]
pub fn run(
    base: Arc<Context>,
    namespace: Option<String>,
    shared: super::SharedSecrets,
    secret_stream: impl futures_util::Stream<Item = Result<Secret, watcher::Error>> + Send + 'static,
    credentials: Credentials,
    shared_clients: super::SharedClients,
    (shared_servers, server_stream): (
        super::Shared<AuthServer>,
        impl futures_util::Stream<Item = Result<AuthServer, watcher::Error>> + Send + 'static,
    ),
    shared_resources: super::Shared<ProtectedResource>,
    probes: Arc<Probes>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let client: Client = base.client.clone();
    let ns = namespace.as_deref();
    let managed = watcher::Config::default().labels(MANAGED_SELECTOR);
    // The AuthServer cache is shared with the other two controllers; this
    // controller's main stream fills it.
    let servers = shared_servers.store.clone();
    // This controller's trigger stream fills the cache of the config, shard
    // and keys Secrets. The credential Secrets' cache is filled by the
    // OAuthClient controller; here only a watch of them that triggers.
    let secrets = shared.store.clone();
    let credential_stream =
        super::triggers(api::<Secret>(&client, ns), watcher::Config::default().labels(&super::credentials::selector()));
    let (deployments, deployment_stream) = reflect(api::<Deployment>(&client, ns), managed.clone());
    let (services, service_stream) = reflect(api::<Service>(&client, ns), managed);
    // The ProtectedResource cache is the ProtectedResource controller's;
    // here only a watch that triggers renders.
    let resources = shared_resources.store.clone();
    let resource_stream = super::triggers(api::<ProtectedResource>(&client, ns), watcher::Config::default());
    // The OAuthClient cache is the OAuthClient controller's; here only a
    // watch that triggers renders.
    let clients = shared_clients.store.clone();
    let client_stream = super::triggers(api::<OAuthClient>(&client, ns), watcher::Config::default());

    let wait_deployments = deployments.clone();
    let wait_services = services.clone();
    let wait_credentials = credentials.ready.clone();
    let ready = super::when_ready(async move {
        super::caches_ready(&shared.ready).await;
        super::caches_ready(&wait_credentials).await;
        let _ = wait_deployments.wait_until_ready().await;
        super::caches_ready(&shared_resources.ready).await;
        super::caches_ready(&shared_clients.ready).await;
        let _ = wait_services.wait_until_ready().await;
    });
    let debounce = Arc::new(Debounce::default());
    let (d1, d2, d3) = (debounce.clone(), debounce.clone(), debounce.clone());
    let own = base.clone();
    let (discovery, discovery_changed) = Prober::new(probes);
    let alive = servers.clone();
    tokio::spawn(discovery.clone().run(move |k| alive.get(k).is_some()));
    let ctx = Arc::new(Ctx {
        base,
        ready,
        secrets,
        credentials,
        deployments,
        resources,
        clients,
        services,
        debounce,
        discovery,
    });
    let controller = Controller::for_stream(server_stream, servers)
        // A discovery document that changed since the last fetch.
        .reconcile_on(discovery_changed)
        // Every Secret the operator writes carries the AuthServer's name: its
        // own config, shards and keys (repair on delete or edit, at once) and
        // the OAuthClients' credentials (a new or changed secret means a new
        // digest).
        .watches_stream(secret_stream, move |s: Secret| {
            let ns = s.namespace()?;
            let server = s.labels().get(AUTHSERVER_LABEL)?;
            if super::own_write(&own, &s) {
                // The echo of its own write of a shard, config or keys: at
                // 10,000 clients re-rendering for each cost a full render.
                return None;
            }
            Some(ObjectRef::new(server).within(&ns))
        })
        .watches_stream(credential_stream, move |s: Secret| {
            let ns = s.namespace()?;
            let server = s.labels().get(AUTHSERVER_LABEL)?;
            d1.touch(&ns, server);
            Some(ObjectRef::new(server).within(&ns))
        })
        .owns_stream(deployment_stream)
        .owns_stream(service_stream)
        .watches_stream(resource_stream, move |r: ProtectedResource| {
            let ns = r.namespace()?;
            d3.touch(&ns, &r.spec.auth_server_ref.name);
            Some(ObjectRef::new(&r.spec.auth_server_ref.name).within(&ns))
        })
        .watches_stream(client_stream, move |c: OAuthClient| {
            let ns = c.namespace()?;
            d2.touch(&ns, &c.spec.auth_server_ref.name);
            Some(ObjectRef::new(&c.spec.auth_server_ref.name).within(&ns))
        })
        // No kube-runtime debounce: it restarts on every event and has no
        // maximum wait; `Debounce` does both (see `reconcile`).
        .with_config(Config::default().concurrency(4))
        .graceful_shutdown_on(shutdown)
        .run(
            |obj, ctx: Arc<Ctx>| async move {
                let ns = obj.namespace().unwrap_or_default();
                let name = obj.name_any();
                if let Some(wait) = ctx.debounce.wait(&ns, &name) {
                    return Ok(Action::requeue(wait));
                }
                let span = super::span(KIND, &ns, &name);
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

fn now() -> i64 {
    Timestamp::now().as_second()
}

/// What became of the config and registry Secrets in one reconcile.
struct ConfigOutcome {
    /// Secrets written now.
    written: usize,
    /// `(secret, why)` for every Secret the API server refused.
    refused: Vec<(String, WriteFailure)>,
    /// Shards that fell back to what they already held (removals only).
    fell_back: Vec<String>,
}

async fn reconcile(obj: Arc<AuthServer>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let _measure = ctx.base.metrics.measure(KIND);
    tracing::debug!("reconcile");
    // Decide only on complete caches: a half-filled cache would report a
    // missing AuthServer (or drop clients from the config) at start-up.
    super::caches_ready(&ctx.ready).await;
    if obj.metadata.deletion_timestamp.is_some() {
        // Owned objects go with it (owner references).
        ctx.discovery.forget(&ObjectRef::from_obj(obj.as_ref()));
        return Ok(Action::await_change());
    }
    let owner = Owner::of(&obj).ok_or(Error::Incomplete("namespace or uid"))?;
    let ns = owner.namespace.clone();
    let name = owner.name.clone();
    let generation = obj.metadata.generation;
    let before = obj.status.clone().unwrap_or_default();
    let now = now();
    let sharding = ctx.base.sharding;

    // 1. The registry: every ProtectedResource and OAuthClient that points here.
    let resources: Vec<Arc<ProtectedResource>> = ctx
        .resources
        .state()
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()) && r.spec.auth_server_ref.name == name)
        .collect();
    let clients: Vec<Arc<OAuthClient>> = ctx
        .clients
        .state()
        .into_iter()
        .filter(|c| {
            c.metadata.namespace.as_deref() == Some(ns.as_str())
                && c.spec.auth_server_ref.name == name
                && c.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let mut client_inputs = Vec::with_capacity(clients.len());
    for c in &clients {
        let digest = match c.spec.type_ {
            ClientType::Public => None,
            ClientType::Confidential => client_digest(&ctx, c).await?,
        };
        let id = client_id(&ns, c.metadata.name.as_deref().unwrap_or_default(), &c.spec);
        client_inputs.push(ClientIn::of(c, &ns, &id, digest));
    }
    let resource_inputs: Vec<ResourceIn<'_>> =
        resources.iter().filter(|r| r.metadata.deletion_timestamp.is_none()).map(|r| ResourceIn::of(r)).collect();
    let mut reg: Registry = registry(&resource_inputs, &client_inputs);

    // 2. The config file.
    let rendered = match render(&obj.spec, &mut reg).and_then(|r| Ok((to_yaml(&ns, &name, &obj.spec, &r.config)?, r))) {
        Ok(r) => r,
        Err(e) => {
            let wants = [
                Want::fail(condition::READY, "InvalidSpec", e.0.clone()),
                Want::fail(condition::CONFIG_RENDERED, "InvalidSpec", e.0.clone()),
            ];
            let mut status = before.clone();
            status.observed_generation = generation;
            status.conditions = merge(&before.conditions, &wants, generation, &rfc3339(now));
            // The last discovery verdict stays as it was (no render, no new URL).
            status
                .conditions
                .extend(before.conditions.iter().filter(|c| c.type_ == condition::ISSUER_REACHABLE).cloned());
            if patch_status(&ctx.base, obj.as_ref(), obj.status.as_ref(), &status).await? {
                ctx.base.event(obj.as_ref(), true, "InvalidSpec", e.0.clone()).await;
            }
            tracing::warn!(reason = "InvalidSpec", detail = %e, "AuthServer spec refused; nothing changed");
            return Ok(Action::await_change());
        }
    };
    let (yaml, rendered) = rendered;
    let split = shards::split(&reg, sharding);
    let config_hash = {
        let mut all = yaml.clone();
        for s in &split.shards {
            all.push_str(&s.fragment);
        }
        sha256_hex(all.as_bytes())[..16].to_owned()
    };
    let outcome = write_config(&ctx, &owner, &yaml, &reg, &split).await?;
    if outcome.written > 0 {
        tracing::info!(
            config_hash = %config_hash,
            resources = split.resources,
            clients = split.clients,
            secrets_written = outcome.written,
            "config written"
        );
    }
    for (secret, f) in &outcome.refused {
        tracing::warn!(secret = %secret, reason = f.reason, detail = %f.message, "config Secret write refused by the API server");
    }
    if !split.too_large.is_empty() {
        tracing::warn!(
            left_out = split.too_large.len(),
            max_shard_bytes = sharding.max_bytes,
            "registry shards full; objects left out (ConfigTooLarge)"
        );
    }

    // 3. Signing keys, and the broker's key when an upstream keeps tokens.
    let keys = reconcile_keys(&ctx, &obj, &owner, &before, &rendered, now).await?;
    let broker_wake = if obj.spec.upstreams.iter().any(|u| u.store_tokens) {
        ensure_broker_keys(&ctx, &obj, &owner, now).await?
    } else {
        None
    };

    // 4. Workload.
    let image = obj.spec.image.clone().unwrap_or_else(|| ctx.base.server_image.clone());
    let live_deploy = ctx.deployments.get(&ObjectRef::new(&name).within(&ns));
    apply_tracked(
        &ctx.base,
        objects::deployment(&owner, &obj.spec, &image, sharding.count),
        live_deploy.as_deref(),
        generation_token,
    )
    .await?;
    let live_svc = ctx.services.get(&ObjectRef::new(&name).within(&ns));
    apply_tracked(&ctx.base, objects::service(&owner), live_svc.as_deref(), version_token).await?;
    let monitor = service_monitor(&ctx.base, &obj, &owner).await?;

    // 5. Status: each condition says only what this reconcile checked.
    let available =
        live_deploy.as_ref().and_then(|d| d.status.as_ref()).and_then(|s| s.available_replicas).unwrap_or(0);
    let config_ok = outcome.refused.is_empty();
    let config_want = if let Some((secret, f)) = outcome.refused.first() {
        let mut m = format!("the API server refused Secret {secret}: {}", f.message);
        if outcome.refused.len() > 1 {
            m.push_str(&format!(" (and {} more Secrets)", outcome.refused.len() - 1));
        }
        if !outcome.fell_back.is_empty() {
            m.push_str(&format!(
                "; {} kept what they held, minus removed objects, so deletions still took effect",
                outcome.fell_back.join(", ")
            ));
        }
        Want::fail(condition::CONFIG_RENDERED, f.reason, m)
    } else if !split.too_large.is_empty() {
        Want::fail(
            condition::CONFIG_RENDERED,
            "ConfigTooLarge",
            format!(
                "{} objects left out: their registry shard would pass {} bytes (e.g. {} {}); the rest is written \
                 (hash {config_hash})",
                split.too_large.len(),
                sharding.max_bytes,
                split.too_large[0].0,
                split.too_large[0].1
            ),
        )
    } else {
        Want::ok(
            condition::CONFIG_RENDERED,
            "Rendered",
            format!(
                "Secret {} and {} registry shards hold the config ({} resources, {} clients, hash {config_hash})",
                names::config_secret(&name),
                sharding.count,
                split.resources,
                split.clients
            ),
        )
    };
    let mut wants = vec![
        if !config_ok {
            Want::fail(condition::READY, "ConfigNotWritten", config_want.message.clone())
        } else if !keys.want.status {
            Want::fail(condition::READY, keys.want.reason, keys.want.message.clone())
        } else {
            Want::ok(condition::READY, "Reconciled", ready_message(&split, monitor.as_deref()))
        },
        config_want.clone(),
        keys.want.clone(),
    ];
    wants.push(if available > 0 {
        Want::ok(
            condition::AVAILABLE,
            "MinimumReplicasAvailable",
            format!("{available} of {} pods available", obj.spec.replicas),
        )
    } else {
        Want::fail(condition::AVAILABLE, "NoAvailableReplicas", format!("0 of {} pods available", obj.spec.replicas))
    });
    let plan = &keys.plan;
    let next = plan.next_rotation_at.map(rfc3339);
    let mut conditions = merge(&before.conditions, &wants, generation, &rfc3339(now));
    let reachable = issuer_condition(&ctx, &obj, &owner, &before.conditions, generation, &rfc3339(now));
    let reachable_event =
        verdict::event(&before.conditions, &reachable, "IssuerReachable").map(|e| (e, reachable.message.clone()));
    conditions.push(reachable);
    let status = AuthServerStatus {
        observed_generation: generation,
        conditions,
        issuer: Some(obj.spec.issuer.clone()),
        url: Some(objects::service_url(&owner)),
        current_kid: plan.current_kid.clone(),
        next_rotation: next,
        signing_keys: plan
            .states
            .iter()
            .filter_map(|s| {
                let k = plan.keys.iter().find(|k| k.kid == s.kid)?;
                Some(SigningKeyStatus {
                    kid: s.kid.clone(),
                    phase: s.phase.as_str().into(),
                    active_from: rfc3339(k.active_from),
                    retires_at: s.retires_at.map(rfc3339),
                })
            })
            .collect(),
        // What the pods read: unchanged when the write was refused.
        config_hash: if config_ok { Some(config_hash) } else { before.config_hash.clone() },
        resources: if config_ok { i32::try_from(split.resources).unwrap_or(i32::MAX) } else { before.resources },
        clients: if config_ok { i32::try_from(split.clients).unwrap_or(i32::MAX) } else { before.clients },
        available_replicas: available,
    };
    let changed = transitions(&before.conditions, &status.conditions)
        .into_iter()
        .map(|c| (c.type_.clone(), c.is_true(), c.reason.clone(), c.message.clone()))
        .collect::<Vec<_>>();
    let wrote = patch_status(&ctx.base, obj.as_ref(), obj.status.as_ref(), &status).await?;
    if wrote && let Some(((warning, reason), message)) = reachable_event {
        tracing::info!(condition = condition::ISSUER_REACHABLE, reason = %reason, detail = %message, "diagnostic changed");
        ctx.base.event(obj.as_ref(), warning, &reason, message).await;
    }
    for (type_, ok, reason, message) in changed {
        if type_ == condition::READY && ok {
            ctx.base.event(obj.as_ref(), false, &reason, message.clone()).await;
        }
        if type_ == condition::CONFIG_RENDERED && !ok {
            ctx.base.event(obj.as_ref(), true, &reason, message).await;
        }
    }
    let mut wait = plan
        .wake_at
        .map(|t| Duration::from_secs(u64::try_from(t - now).unwrap_or(0).max(1)))
        .map_or(RESYNC, |d| d.min(RESYNC));
    for t in [keys.wake_at, broker_wake].into_iter().flatten() {
        wait = wait.min(Duration::from_secs(u64::try_from(t - now).unwrap_or(0).max(1)));
    }
    if !config_ok {
        // Back off; the refused payload itself is never resent unchanged.
        wait = wait.min(ctx.base.backoff(&format!("{}/config", super::object_key(obj.as_ref()))));
    } else {
        ctx.base.succeeded(&format!("{}/config", super::object_key(obj.as_ref())));
    }
    Ok(Action::requeue(wait))
}

/// Writes the config Secret and every shard. A shard the API server refuses
/// falls back to the entries it already held that are still wanted
/// unchanged (never larger than what was accepted before), so a deleted
/// client or resource leaves the config even then.
async fn write_config(
    ctx: &Ctx,
    owner: &Owner,
    yaml: &str,
    reg: &Registry,
    split: &shards::Shards,
) -> Result<ConfigOutcome, Error> {
    let ns = &owner.namespace;
    let mut out = ConfigOutcome { written: 0, refused: Vec::new(), fell_back: Vec::new() };
    let config_name = names::config_secret(&owner.name);
    let live = ctx.secrets.get(&ObjectRef::new(&config_name).within(ns));
    match put_secret(&ctx.base, objects::config_secret(owner, yaml), live.as_deref().map(Live::Secret)).await? {
        Written::Written => out.written += 1,
        Written::Unchanged => {}
        Written::Refused(f) => out.refused.push((config_name, f)),
    }
    for shard in &split.shards {
        let secret_name = names::shard_secret(&owner.name, shard.index);
        let live = ctx.secrets.get(&ObjectRef::new(&secret_name).within(ns));
        match put_secret(&ctx.base, objects::shard_secret(owner, shard), live.as_deref().map(Live::Secret)).await? {
            Written::Written => out.written += 1,
            Written::Unchanged => {}
            Written::Refused(f) => {
                let live_index = live.as_deref().and_then(objects::shard_index).unwrap_or_default();
                let fallback = shards::keep_only_live(reg, ctx.base.sharding, shard.index, &live_index);
                // The shard holds the fallback whether this reconcile wrote it
                // or an earlier one did (unchanged): say so either way, or the
                // condition would flip between reconciles.
                match put_secret(&ctx.base, objects::shard_secret(owner, &fallback), live.as_deref().map(Live::Secret))
                    .await
                {
                    Ok(Written::Written) => {
                        out.written += 1;
                        out.fell_back.push(secret_name.clone());
                    }
                    Ok(Written::Unchanged) => out.fell_back.push(secret_name.clone()),
                    _ => {}
                }
                out.refused.push((secret_name, f));
            }
        }
    }
    Ok(out)
}

/// The key outcome of one reconcile.
struct Keys {
    plan: keys::KeyPlan,
    want: Want,
    /// When `KeysReady` may turn true again after a loss.
    wake_at: Option<i64>,
}

/// Creates `<name>-broker-keys` with one fresh key when it does not exist,
/// and puts a new key on top every `spec.broker.keyRotationInterval`. The
/// operator only ever adds lines (keys added by hand stay; a rewrite could
/// make stored grants unreadable); a Secret without a usable key line is
/// reported as an event. Returns when the next rotation is due.
async fn ensure_broker_keys(ctx: &Ctx, obj: &AuthServer, owner: &Owner, now: i64) -> Result<Option<i64>, Error> {
    let name = names::broker_keys_secret(&owner.name);
    let api: Api<Secret> = Api::namespaced(ctx.base.client.clone(), &owner.namespace);
    let interval = crate::render::config::seconds(&obj.spec.broker.key_rotation_interval).unwrap_or(0);
    let fresh_key = || -> Result<String, Error> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| Error::Incomplete("randomness for the broker key"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(key))
    };
    let kid = brokerkeys::made_id(now);
    let Some(live) = api.get_opt(&name).await? else {
        let text = brokerkeys::file(&kid, &fresh_key()?);
        put_secret(&ctx.base, objects::broker_keys_secret(owner, &text), None).await?;
        tracing::info!(secret = %name, "broker encryption key created");
        ctx.base
            .event(obj, false, "BrokerKeyCreated", format!("Secret {name} created with a fresh token-broker key"))
            .await;
        return Ok((interval > 0).then_some(now + interval));
    };
    let text = live
        .data
        .as_ref()
        .and_then(|d| d.get(crate::render::paths::BROKER_KEYS_FILE_NAME))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .unwrap_or_default();
    let Some(current) = brokerkeys::current_id(&text) else {
        let m = format!(
            "Secret {name} has no key in its broker.keys entry; the server cannot decrypt stored upstream tokens"
        );
        tracing::warn!(secret = %name, "{m}");
        ctx.base.event(obj, true, "InvalidBrokerKeys", m).await;
        return Ok(None);
    };
    // The schedule follows the operator's own `k<unix time>` ids: a key put
    // on top by hand under another id is not rotated automatically (name it
    // `k<unix time>` to keep the schedule).
    let due = match brokerkeys::made_at(current) {
        Some(t) if interval > 0 => Some(t + interval),
        _ => None,
    };
    if let Some(at) = due
        && at <= now
    {
        let rotated = brokerkeys::prepend(&text, &brokerkeys::line(&kid, &fresh_key()?));
        let mut desired = objects::broker_keys_secret(owner, &rotated);
        desired.metadata.labels = live.metadata.labels.clone().or(desired.metadata.labels);
        put_secret(&ctx.base, desired, Some(Live::Secret(&live))).await?;
        tracing::info!(secret = %name, previous = %current, "broker encryption key rotated; the previous key stays to decrypt until removed by hand");
        ctx.base
            .event(obj, false, "BrokerKeyRotated", format!("a new token-broker key is on top of Secret {name}; {current} stays for the rows not yet re-encrypted"))
            .await;
        return Ok((interval > 0).then_some(now + interval));
    }
    Ok(due)
}

/// Signing keys: read fresh from the API (never from a cache, so a lagging
/// cache can never make the operator drop a key), checked entry by entry,
/// rotated, and written exactly (stray or corrupt entries are removed). A
/// retained copy (`<name>-signing-keys-retained`, not owned, not mounted)
/// brings back keys whose Secret was deleted or corrupted.
async fn reconcile_keys(
    ctx: &Ctx,
    obj: &AuthServer,
    owner: &Owner,
    before: &AuthServerStatus,
    rendered: &crate::render::config::Rendered,
    now: i64,
) -> Result<Keys, Error> {
    let ns = &owner.namespace;
    let secrets_api: Api<Secret> = Api::namespaced(ctx.base.client.clone(), ns);
    let keys_name = names::keys_secret(&owner.name);
    let backup_name = names::keys_backup_secret(&owner.name);
    let live_keys = secrets_api.get_opt(&keys_name).await?;
    let live_backup = secrets_api.get_opt(&backup_name).await?;
    let (mut existing, bad) = live_keys.as_ref().map(objects::parse_keys).unwrap_or_default();
    let (retained, _) = live_backup.as_ref().map(objects::parse_keys).unwrap_or_default();
    let known: Vec<&str> = before.signing_keys.iter().map(|k| k.kid.as_str()).collect();

    // Restore from the retained copy what the key Secret lost.
    let mut restored = Vec::new();
    for k in &retained {
        let missing = !existing.iter().any(|e| e.kid == k.kid);
        let was_lost = live_keys.is_none() || bad.contains(&k.file_name()) || known.contains(&k.kid.as_str());
        if missing && was_lost {
            restored.push(k.kid.clone());
            existing.push(k.clone());
        }
    }
    // Keys the status said were published and that nothing could restore.
    let lost: Vec<String> =
        known.iter().filter(|kid| !existing.iter().any(|e| e.kid == **kid)).map(|k| (*k).to_owned()).collect();
    let pruned: Vec<&String> = bad.iter().filter(|b| !retained.iter().any(|k| &k.file_name() == *b)).collect();

    if !pruned.is_empty() {
        let m = format!(
            "removed entries that are not valid ES256 key files from Secret {keys_name}: {}",
            pruned.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
        tracing::warn!(secret = %keys_name, entries = pruned.len(), "{m}");
        ctx.base.event(obj, true, "InvalidSigningKey", m).await;
    }
    if !restored.is_empty() {
        let m = format!(
            "Secret {keys_name} had lost key(s) {}; restored from the retained copy {backup_name}",
            restored.join(", ")
        );
        tracing::warn!(secret = %keys_name, "{m}");
        ctx.base.event(obj, true, "SigningKeysRestored", m).await;
    }

    let policy = keys::Policy {
        interval: secs(rendered.rotation_interval.as_secs()),
        publish_ahead: secs(rendered.config.signing.publish_ahead.as_secs()),
        retire_after: secs(rendered.config.retire_after().as_secs()),
    };
    let plan = keys::plan(existing, now, policy, keys::generate)?;
    if !lost.is_empty() {
        let m = format!(
            "signing key(s) {} are gone from Secret {keys_name} and from the retained copy {backup_name}; \
             tokens they signed no longer verify",
            lost.join(", ")
        );
        tracing::warn!(secret = %keys_name, "{m}");
        ctx.base.event(obj, true, "SigningKeysLost", m).await;
    }
    let written =
        put_secret(&ctx.base, objects::keys_secret(owner, &plan.keys), live_keys.as_ref().map(Live::Secret)).await?;
    if let Written::Refused(f) = &written {
        return Ok(Keys {
            want: Want::fail(
                condition::KEYS_READY,
                f.reason,
                format!("the API server refused Secret {keys_name}: {}", f.message),
            ),
            plan,
            wake_at: None,
        });
    }
    // The retained copy follows the key Secret, so retired keys leave both.
    put_secret(&ctx.base, objects::keys_backup_secret(owner, &plan.keys), live_backup.as_ref().map(Live::Secret))
        .await?;

    if let Some(kid) = &plan.generated {
        let first = before.current_kid.is_none() && live_keys.is_none();
        if !first {
            ctx.base.metrics.key_rotations.inc();
        }
        let when = plan.keys.iter().find(|k| &k.kid == kid).map(|k| rfc3339(k.active_from)).unwrap_or_default();
        tracing::info!(kid = %kid, active_from = %when, "signing key published");
        ctx.base
            .event(obj, false, "SigningKeyPublished", format!("key {kid} published in JWKS; signs from {when}"))
            .await;
    }
    for kid in &plan.retired {
        tracing::info!(kid = %kid, "signing key retired");
        ctx.base.event(obj, false, "SigningKeyRetired", format!("key {kid} left JWKS")).await;
    }

    // A loss keeps KeysReady=False for as long as tokens signed by the lost
    // keys could still be presented: `retire_after` from the loss.
    let previous_loss = before
        .conditions
        .iter()
        .find(|c| c.type_ == condition::KEYS_READY && c.reason == "SigningKeysLost" && !c.is_true())
        .map(|c| {
            (c.message.clone(), c.last_transition_time.parse::<Timestamp>().map(|t| t.as_second()).unwrap_or(now))
        });
    let kid = plan.current_kid.clone().unwrap_or_default();
    let (want, wake_at) = if !lost.is_empty() {
        let until = now + policy.retire_after;
        (
            Want::fail(
                condition::KEYS_READY,
                "SigningKeysLost",
                format!(
                    "key(s) {} were lost (Secret {keys_name} deleted or corrupted, no retained copy); key {kid} signs \
                     now; tokens signed before {} do not verify; this clears at {}",
                    lost.join(", "),
                    rfc3339(now),
                    rfc3339(until)
                ),
            ),
            Some(until),
        )
    } else if !bad.is_empty() {
        // Checked: this read found entries a server cannot load. The write
        // above replaced them; the next reconcile re-reads the Secret from
        // the API and turns this True only if it holds valid keys alone.
        (
            Want::fail(
                condition::KEYS_READY,
                "InvalidSigningKey",
                format!(
                    "Secret {keys_name} held entries that are not valid ES256 key files ({}); rewritten without \
                     them (restored from {backup_name} where a copy was kept); re-reading the Secret",
                    bad.join(", ")
                ),
            ),
            Some(now + 2),
        )
    } else if let Some((message, since)) = previous_loss
        && now < since + policy.retire_after
    {
        (Want::fail(condition::KEYS_READY, "SigningKeysLost", message), Some(since + policy.retire_after))
    } else {
        let next = plan.next_rotation_at.map(rfc3339);
        (
            Want::ok(
                condition::KEYS_READY,
                "KeySigning",
                match &next {
                    Some(t) => format!("key {kid} signs; next key published at {t}"),
                    None => format!("key {kid} signs; automatic rotation is off"),
                },
            ),
            None,
        )
    };
    Ok(Keys { plan, want, wake_at })
}

/// `IssuerReachable` from the last fetch of the server's discovery document
/// through its Service (or `spec.issuerCheck.discoveryUrl`). Never waits for
/// the network; not part of `Ready`.
fn issuer_condition(
    ctx: &Ctx,
    obj: &AuthServer,
    owner: &Owner,
    before: &[authplane_crds::Condition],
    generation: Option<i64>,
    now: &str,
) -> authplane_crds::Condition {
    let key = ObjectRef::from_obj(obj);
    let check = &obj.spec.issuer_check;
    let v = if !check.enabled {
        ctx.discovery.forget(&key);
        verdict::Verdict::not_checked("spec.issuerCheck.enabled is false: the operator does not fetch discovery")
    } else {
        let url = check
            .discovery_url
            .clone()
            .unwrap_or_else(|| verdict::discovery_url(&objects::service_url(owner), &obj.spec.issuer));
        let urls = vec![url];
        match ctx.discovery.want(key, urls.clone()) {
            Some(f) => verdict::discovery(&f, &obj.spec.issuer),
            None => match verdict::pending(before, condition::ISSUER_REACHABLE, generation, &urls) {
                Some(c) => return c,
                None => verdict::checking(&urls),
            },
        }
    };
    verdict::condition(before, condition::ISSUER_REACHABLE, &v, generation, now)
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn ready_message(split: &shards::Shards, monitor: Option<&str>) -> String {
    let mut m = format!(
        "config, signing keys, Deployment and Service are in place ({} resources, {} clients)",
        split.resources, split.clients
    );
    if let Some(note) = monitor {
        m.push_str("; ");
        m.push_str(note);
    }
    m
}

/// The hex SHA-256 of a confidential client's secret, from the operator's
/// cache of its own Secrets or, for a bring-your-own Secret (or one the cache
/// has not seen yet), from the API.
async fn client_digest(ctx: &Ctx, c: &OAuthClient) -> Result<Option<String>, Error> {
    let ns = c.namespace().unwrap_or_default();
    let name = client_secret_name(&c.name_any(), &c.spec);
    let cached = ctx.credentials.get(&ns, &name).filter(|s| s.oauthclient.as_deref() == Some(c.name_any().as_str()));
    let secret: Option<Arc<Credential>> = match cached {
        Some(s) => Some(s),
        // Only ask the API when the OAuthClient says its Secret exists.
        None if c.status.as_ref().and_then(|s| s.secret_name.as_ref()).is_some() => {
            Api::<Secret>::namespaced(ctx.base.client.clone(), &ns)
                .get_opt(&name)
                .await?
                .map(|s| Arc::new(Credential::of(&s)))
        }
        None => None,
    };
    Ok(secret.filter(|s| super::oauthclient::secret_conflict(s, c).is_none()).and_then(|s| {
        let v = s.client_secret.as_ref()?;
        (v.len() >= super::oauthclient::MIN_SECRET_LEN).then(|| sha256_hex(v))
    }))
}

/// Applies (or removes) the ServiceMonitor; returns a note for `Ready` when
/// monitoring is asked for but impossible.
async fn service_monitor(base: &Context, obj: &AuthServer, owner: &Owner) -> Result<Option<String>, Error> {
    let enabled = obj.spec.monitoring.service_monitor.enabled;
    if !base.service_monitor_crd_exists().await {
        return Ok(enabled.then(|| {
            "spec.monitoring.serviceMonitor.enabled is set but the ServiceMonitor CRD (monitoring.coreos.com) is not installed".to_owned()
        }));
    }
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"));
    let api: Api<DynamicObject> = Api::namespaced_with(base.client.clone(), &owner.namespace, &ar);
    let live = api.get_opt(&owner.name).await?;
    let ours = live.as_ref().is_some_and(|l| {
        l.metadata.owner_references.iter().flatten().any(|o| o.uid == owner.owner_ref.uid && o.controller == Some(true))
    });
    if !enabled {
        if ours {
            api.delete(&owner.name, &DeleteParams::default()).await?;
            tracing::info!("ServiceMonitor deleted (monitoring disabled)");
        }
        return Ok(None);
    }
    let mut desired: DynamicObject = serde_json::from_value(objects::service_monitor(owner, &obj.spec))
        .map_err(|e| Error::Encode("ServiceMonitor", e))?;
    let hash = stamp(&mut desired);
    let key = format!("ServiceMonitor/{}/{}", owner.namespace, owner.name);
    let unchanged = live.as_ref().is_some_and(|l| {
        l.annotations().get(crate::render::HASH_ANNOTATION) == Some(&hash)
            && base.remembered(&key).is_some()
            && base.remembered(&key) == l.resource_version()
    });
    if !unchanged {
        let out = api.patch(&owner.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&desired)).await?;
        base.remember(key, out.resource_version());
    }
    Ok(None)
}
