//! AuthServer → config Secret, signing-key Secret (with rotation), Deployment,
//! Service, ServiceMonitor, status.
//!
//! Triggered by the AuthServer itself, by the objects it owns (so a deleted or
//! edited child is repaired), by every ProtectedResource and OAuthClient that
//! references it, and by the rotation schedule (`requeue_after`).

use std::sync::Arc;
use std::time::Duration;

use authplane_crds::authserver::SigningKeyStatus;
use authplane_crds::common::condition;
use authplane_crds::oauthclient::ClientType;
use authplane_crds::{AuthServer, AuthServerStatus, OAuthClient, ProtectedResource};
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

use super::{Context, Error, api, apply_secret, apply_tracked, generation_token, patch_status, reflect, version_token};
use crate::conditions::{Want, merge, rfc3339, transitions};
use crate::keys;
use crate::render::config::{ClientIn, Registry, ResourceIn, client_secret_name, registry, render, to_yaml};
use crate::render::objects::{self, Owner};
use crate::render::{AUTHSERVER_LABEL, FIELD_MANAGER, MANAGED_SELECTOR, OAUTHCLIENT_LABEL, names, sha256_hex, stamp};

const KIND: &str = "AuthServer";
/// Longest sleep between reconciles of a settled AuthServer (picks up
/// changes to bring-your-own client Secrets, which are not watched).
const RESYNC: Duration = Duration::from_secs(600);

pub struct Ctx {
    pub base: Arc<Context>,
    ready: tokio::sync::watch::Receiver<bool>,
    secrets: Store<Secret>,
    deployments: Store<Deployment>,
    resources: Store<ProtectedResource>,
    clients: Store<OAuthClient>,
    services: Store<Service>,
}

/// The AuthServer controller; runs until `shutdown` resolves.
pub fn run(
    base: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let client: Client = base.client.clone();
    let ns = namespace.as_deref();
    let managed = watcher::Config::default().labels(MANAGED_SELECTOR);
    let (servers, server_stream) = reflect(api::<AuthServer>(&client, ns), watcher::Config::default());
    let (secrets, secret_stream) = reflect(api::<Secret>(&client, ns), managed.clone());
    let (deployments, deployment_stream) = reflect(api::<Deployment>(&client, ns), managed.clone());
    let (services, service_stream) = reflect(api::<Service>(&client, ns), managed);
    let (resources, resource_stream) = reflect(api::<ProtectedResource>(&client, ns), watcher::Config::default());
    let (clients, client_stream) = reflect(api::<OAuthClient>(&client, ns), watcher::Config::default());

    let wait_secrets = secrets.clone();
    let wait_deployments = deployments.clone();
    let wait_resources = resources.clone();
    let wait_clients = clients.clone();
    let wait_services = services.clone();
    let ready = super::when_ready(async move {
        let _ = wait_secrets.wait_until_ready().await;
        let _ = wait_deployments.wait_until_ready().await;
        let _ = wait_resources.wait_until_ready().await;
        let _ = wait_clients.wait_until_ready().await;
        let _ = wait_services.wait_until_ready().await;
    });
    let ctx = Arc::new(Ctx { base, ready, secrets, deployments, resources, clients, services });
    let controller = Controller::for_stream(server_stream, servers)
        // Every Secret the operator writes carries the AuthServer's name: its
        // own config and keys (repair on delete or edit) and the OAuthClients'
        // credentials (a new or changed secret means a new digest).
        .watches_stream(secret_stream, |s: Secret| {
            let ns = s.namespace()?;
            s.labels().get(AUTHSERVER_LABEL).map(|a| ObjectRef::new(a).within(&ns))
        })
        .owns_stream(deployment_stream)
        .owns_stream(service_stream)
        .watches_stream(resource_stream, |r: ProtectedResource| {
            r.namespace().map(|ns| ObjectRef::new(&r.spec.auth_server_ref.name).within(&ns))
        })
        .watches_stream(client_stream, |c: OAuthClient| {
            c.namespace().map(|ns| ObjectRef::new(&c.spec.auth_server_ref.name).within(&ns))
        })
        // Trailing-edge debounce: a burst of OAuthClient changes becomes one
        // config render instead of one per client.
        .with_config(Config::default().debounce(Duration::from_secs(1)).concurrency(4))
        .graceful_shutdown_on(shutdown)
        .run(
            |obj, ctx: Arc<Ctx>| async move {
                let ns = obj.namespace().unwrap_or_default();
                let name = obj.name_any();
                let span = super::span(KIND, &ns, &name);
                reconcile(obj, ctx).instrument(span).await
            },
            |obj, e, ctx| super::on_error(&ctx.base.metrics, KIND, &obj.name_any(), e),
            ctx,
        );
    super::drain(KIND, controller)
}

fn now() -> i64 {
    Timestamp::now().as_second()
}

async fn reconcile(obj: Arc<AuthServer>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let _measure = ctx.base.metrics.measure(KIND);
    tracing::debug!("reconcile");
    // Decide only on complete caches: a half-filled cache would report a
    // missing AuthServer (or drop clients from the config) at start-up.
    super::caches_ready(&ctx.ready).await;
    if obj.metadata.deletion_timestamp.is_some() {
        // Owned objects go with it (owner references).
        return Ok(Action::await_change());
    }
    let owner = Owner::of(&obj).ok_or(Error::Incomplete("namespace or uid"))?;
    let ns = owner.namespace.clone();
    let name = owner.name.clone();
    let generation = obj.metadata.generation;
    let before = obj.status.clone().unwrap_or_default();
    let now = now();

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
            c.namespace().as_deref() == Some(ns.as_str())
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
        client_inputs.push(ClientIn {
            name: c.metadata.name.as_deref().unwrap_or_default(),
            namespace: &ns,
            created: c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            spec: &c.spec,
            digest,
        });
    }
    let resource_inputs: Vec<ResourceIn<'_>> = resources
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .map(|r| ResourceIn {
            name: r.metadata.name.as_deref().unwrap_or_default(),
            created: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            spec: &r.spec,
        })
        .collect();
    let reg: Registry = registry(&resource_inputs, &client_inputs);

    // 2. The config file.
    let rendered = match render(&obj.spec, &reg).and_then(|r| Ok((to_yaml(&ns, &name, &obj.spec, &r.config)?, r))) {
        Ok(r) => r,
        Err(e) => {
            let wants = [
                Want::fail(condition::READY, "InvalidSpec", e.0.clone()),
                Want::fail(condition::CONFIG_RENDERED, "InvalidSpec", e.0.clone()),
            ];
            let mut status = before.clone();
            status.observed_generation = generation;
            status.conditions = merge(&before.conditions, &wants, generation, &rfc3339(now));
            if patch_status(&ctx.base, obj.as_ref(), obj.status.as_ref(), &status).await? {
                ctx.base.event(obj.as_ref(), true, "InvalidSpec", e.0.clone()).await;
            }
            tracing::warn!(reason = "InvalidSpec", detail = %e, "AuthServer spec refused; nothing changed");
            return Ok(Action::await_change());
        }
    };
    let (yaml, rendered) = rendered;
    let config_hash = sha256_hex(yaml.as_bytes())[..16].to_owned();
    let config_secret = objects::config_secret(&owner, &yaml);
    let live_config = ctx.secrets.get(&ObjectRef::new(&names::config_secret(&name)).within(&ns));
    if apply_secret(&ctx.base, config_secret, live_config.as_deref()).await? {
        tracing::info!(
            config_hash = %config_hash,
            resources = reg.resources.len(),
            clients = reg.clients.len(),
            "config Secret written"
        );
    }

    // 3. Signing keys: always read fresh from the API, never from the cache,
    // so a lagging cache can never make the operator drop a key.
    let secrets_api: Api<Secret> = Api::namespaced(ctx.base.client.clone(), &ns);
    let keys_name = names::keys_secret(&name);
    let live_keys = secrets_api.get_opt(&keys_name).await?;
    let (existing, bad) = live_keys.as_ref().map(objects::parse_keys).unwrap_or_default();
    if !bad.is_empty() {
        ctx.base
            .event(
                obj.as_ref(),
                true,
                "InvalidSigningKey",
                format!(
                    "removed entries that are not valid ES256 key files from Secret {keys_name}: {}",
                    bad.join(", ")
                ),
            )
            .await;
    }
    if live_keys.is_none() && before.current_kid.is_some() {
        ctx.base
            .event(
                obj.as_ref(),
                true,
                "SigningKeysRecreated",
                format!("Secret {keys_name} was deleted; a new key was generated and tokens signed by the old keys no longer verify"),
            )
            .await;
    }
    let policy = keys::Policy {
        interval: secs(rendered.rotation_interval.as_secs()),
        publish_ahead: secs(rendered.config.signing.publish_ahead.as_secs()),
        retire_after: secs(rendered.config.retire_after().as_secs()),
    };
    let plan = keys::plan(existing, now, policy, keys::generate)?;
    apply_secret(&ctx.base, objects::keys_secret(&owner, &plan.keys), live_keys.as_ref()).await?;
    if let Some(kid) = &plan.generated {
        let first = before.current_kid.is_none() && live_keys.is_none();
        if !first {
            ctx.base.metrics.key_rotations.inc();
        }
        let when = plan.keys.iter().find(|k| &k.kid == kid).map(|k| rfc3339(k.active_from)).unwrap_or_default();
        tracing::info!(kid = %kid, active_from = %when, "signing key published");
        ctx.base
            .event(
                obj.as_ref(),
                false,
                "SigningKeyPublished",
                format!("key {kid} published in JWKS; signs from {when}"),
            )
            .await;
    }
    for kid in &plan.retired {
        tracing::info!(kid = %kid, "signing key retired");
        ctx.base.event(obj.as_ref(), false, "SigningKeyRetired", format!("key {kid} left JWKS")).await;
    }

    // 4. Workload.
    let image = obj.spec.image.clone().unwrap_or_else(|| ctx.base.server_image.clone());
    let live_deploy = ctx.deployments.get(&ObjectRef::new(&name).within(&ns));
    apply_tracked(&ctx.base, objects::deployment(&owner, &obj.spec, &image), live_deploy.as_deref(), generation_token)
        .await?;
    let live_svc = ctx.services.get(&ObjectRef::new(&name).within(&ns));
    apply_tracked(&ctx.base, objects::service(&owner), live_svc.as_deref(), version_token).await?;
    let monitor = service_monitor(&ctx.base, &obj, &owner).await?;

    // 5. Status.
    let available =
        live_deploy.as_ref().and_then(|d| d.status.as_ref()).and_then(|s| s.available_replicas).unwrap_or(0);
    let kid = plan.current_kid.clone().unwrap_or_default();
    let next = plan.next_rotation_at.map(rfc3339);
    let mut wants = vec![
        Want::ok(condition::READY, "Reconciled", ready_message(&reg, monitor.as_deref())),
        Want::ok(
            condition::CONFIG_RENDERED,
            "Rendered",
            format!(
                "Secret {} holds the config ({} resources, {} clients, hash {config_hash})",
                names::config_secret(&name),
                reg.resources.len(),
                reg.clients.len()
            ),
        ),
        Want::ok(
            condition::KEYS_READY,
            "KeySigning",
            match &next {
                Some(t) => format!("key {kid} signs; next key published at {t}"),
                None => format!("key {kid} signs; automatic rotation is off"),
            },
        ),
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
    let status = AuthServerStatus {
        observed_generation: generation,
        conditions: merge(&before.conditions, &wants, generation, &rfc3339(now)),
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
        config_hash: Some(config_hash),
        resources: i32::try_from(reg.resources.len()).unwrap_or(i32::MAX),
        clients: i32::try_from(reg.clients.len()).unwrap_or(i32::MAX),
        available_replicas: available,
    };
    let changed = transitions(&before.conditions, &status.conditions)
        .into_iter()
        .map(|c| (c.type_.clone(), c.is_true(), c.reason.clone(), c.message.clone()))
        .collect::<Vec<_>>();
    patch_status(&ctx.base, obj.as_ref(), obj.status.as_ref(), &status).await?;
    for (type_, ok, reason, message) in changed {
        if type_ == condition::READY && ok {
            ctx.base.event(obj.as_ref(), false, &reason, message).await;
        }
    }

    let wait = plan
        .wake_at
        .map(|t| Duration::from_secs(u64::try_from(t - now).unwrap_or(0).max(1)))
        .map_or(RESYNC, |d| d.min(RESYNC));
    Ok(Action::requeue(wait))
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn ready_message(reg: &Registry, monitor: Option<&str>) -> String {
    let mut m = format!(
        "config, signing keys, Deployment and Service are in place ({} resources, {} clients)",
        reg.resources.len(),
        reg.clients.len()
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
    let cached = ctx
        .secrets
        .get(&ObjectRef::new(&name).within(&ns))
        .filter(|s| s.labels().get(OAUTHCLIENT_LABEL).map(String::as_str) == Some(c.name_any().as_str()));
    let secret = match cached {
        Some(s) => Some((*s).clone()),
        // Only ask the API when the OAuthClient says its Secret exists.
        None if c.status.as_ref().and_then(|s| s.secret_name.as_ref()).is_some() => {
            Api::<Secret>::namespaced(ctx.base.client.clone(), &ns).get_opt(&name).await?
        }
        None => None,
    };
    Ok(secret.and_then(|s| {
        let v = s.data.as_ref()?.get("client_secret")?;
        (v.0.len() >= super::oauthclient::MIN_SECRET_LEN).then(|| sha256_hex(&v.0))
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
