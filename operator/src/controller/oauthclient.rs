//! OAuthClient → credential Secret (`client_id`, `client_secret`, `issuer`)
//! and status. The secret is generated once and then read back from the
//! Secret on every reconcile, so it never changes; a Secret the operator did
//! not create is used as-is and never written. The AuthServer controller
//! hands the server only the secret's SHA-256 digest.

use std::sync::Arc;
use std::time::Duration;

use authplane_crds::common::condition;
use authplane_crds::oauthclient::ClientType;
use authplane_crds::{AuthServer, OAuthClient, OAuthClientStatus, ProtectedResource};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::Future;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tracing::Instrument;

use super::credentials::{Credential, Credentials};
use super::{Context, Error, Live, Written, api, in_shard, patch_status, put_secret};
use crate::conditions::{Want, merge, rfc3339, transitions};
use crate::render::config::{
    ADOPT_ANNOTATION, ClientIn, ResourceIn, Verdict, client_id, client_secret_name, has_client_id, registry,
};
use crate::render::shards::entry_hash;
use crate::render::{objects, sha256_hex};

const KIND: &str = "OAuthClient";
/// Shortest client secret accepted from a bring-your-own Secret (the
/// generated ones are 43 characters: 256 bits, base64url).
pub const MIN_SECRET_LEN: usize = 32;

pub struct Ctx {
    pub base: Arc<Context>,
    ready: tokio::sync::watch::Receiver<bool>,
    servers: Store<AuthServer>,
    resources: Store<ProtectedResource>,
    clients: Store<OAuthClient>,
    credentials: Credentials,
    shards: Arc<super::ShardWatch>,
}

pub fn run(
    base: Arc<Context>,
    namespace: Option<String>,
    (credentials, credential_stream): (
        Credentials,
        impl futures_util::Stream<Item = Result<Secret, watcher::Error>> + Send + 'static,
    ),
    (shared_clients, client_stream): (
        super::SharedClients,
        impl futures_util::Stream<Item = Result<OAuthClient, watcher::Error>> + Send + 'static,
    ),
    shared_servers: super::Shared<AuthServer>,
    shared_resources: super::Shared<ProtectedResource>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let client = base.client.clone();
    let ns = namespace.as_deref();
    // The cache shared with the AuthServer controller; this controller's
    // main stream fills it.
    let clients = shared_clients.store.clone();
    // The AuthServer and ProtectedResource caches are their controllers';
    // here only watches that trigger, and only on what a client's status
    // reads of them: not on every AuthServer status write (one per render),
    // each of which would reconcile every client.
    let servers = shared_servers.store.clone();
    let resources = shared_resources.store.clone();
    let server_stream =
        super::triggers_on(api::<AuthServer>(&client, ns), watcher::Config::default(), super::server_trigger_key);
    let resource_stream = super::triggers_on(
        api::<ProtectedResource>(&client, ns),
        watcher::Config::default(),
        super::spec_trigger_key::<ProtectedResource>,
    );
    // The credential Secrets' cache (read by the AuthServer controller too)
    // is filled by this controller's trigger stream of them; the registry
    // shards are watched for the clients whose entry changed.
    let shards = Arc::new(super::ShardWatch::default());
    let shard_stream = super::shard_triggers(
        shards.clone(),
        api::<Secret>(&client, ns),
        clients.clone(),
        |c: &OAuthClient| &c.spec.auth_server_ref.name,
        base.sharding,
    );
    let by_server = clients.clone();
    let by_resource = clients.clone();
    let shards_listed = shards.ready.clone();
    let credentials_listed = credentials.ready.clone();
    let ready = super::when_ready(async move {
        super::caches_ready(&shared_servers.ready).await;
        super::caches_ready(&shared_resources.ready).await;
        super::caches_ready(&credentials_listed).await;
        super::caches_ready(&shards_listed).await;
    });
    let ctx = Arc::new(Ctx {
        base,
        ready,
        servers,
        resources,
        clients: clients.clone(),
        credentials: credentials.clone(),
        shards,
    });
    let controller = Controller::for_stream(client_stream, clients)
        // A registry shard change wakes the clients whose entry in it
        // changed (their Ready depends on it), not all of its clients: at
        // 10,000 clients that was every client at every render.
        .reconcile_on(shard_stream)
        // A credential Secret maps to its OAuthClient.
        .watches_stream(credential_stream, move |s: Secret| {
            let ns = s.namespace();
            super::controller_owner::<OAuthClient>(&s)
                .map(|(name, _)| ObjectRef::new(&name).within(ns.as_deref().unwrap_or_default()))
        })
        .watches_stream(server_stream, move |a: AuthServer| {
            referencing(&by_server, a.namespace(), &a.name_any(), false)
        })
        .watches_stream(resource_stream, move |r: ProtectedResource| {
            // Only clients that restrict resources can change verdict.
            referencing(&by_resource, r.namespace(), &r.spec.auth_server_ref.name, true)
        })
        .with_config(Config::default().concurrency(16))
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

fn referencing(
    clients: &Store<OAuthClient>,
    ns: Option<String>,
    server: &str,
    restricted_only: bool,
) -> Vec<ObjectRef<OAuthClient>> {
    clients
        .state()
        .into_iter()
        .filter(|c| {
            c.metadata.namespace == ns
                && c.spec.auth_server_ref.name == server
                && (!restricted_only || !c.spec.allowed_resources.is_empty())
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// 256 random bits, base64url without padding.
fn generate_secret() -> Result<String, Error> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Keys(crate::keys::KeyGenError::Generate))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// Where the credentials come from.
enum Source {
    /// The operator's Secret; `secret` is the value to keep (or a new one).
    Generated { live: Option<Arc<Credential>>, secret: Option<String>, created: bool },
    /// The user's Secret; `problem` when it is unusable; `value` the digest
    /// of its `client_secret`.
    Provided { problem: Option<String>, value: Option<String> },
}

async fn reconcile(obj: Arc<OAuthClient>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let _measure = ctx.base.metrics.measure(KIND);
    tracing::debug!("reconcile");
    // Decide only on complete caches: a half-filled cache would report a
    // missing AuthServer (or drop clients from the config) at start-up.
    super::caches_ready(&ctx.ready).await;
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
    let name = obj.name_any();
    let uid = obj.uid().ok_or(Error::Incomplete("uid"))?;
    let before = obj.status.clone().unwrap_or_default();
    let server_name = obj.spec.auth_server_ref.name.clone();
    let id = client_id(&ns, &name, &obj.spec);
    let secret_name = client_secret_name(&name, &obj.spec);
    let confidential = obj.spec.type_ == ClientType::Confidential;
    let mut requeue = None;

    let server = ctx.servers.get(&ObjectRef::new(&server_name).within(&ns));
    let Some(server) = server else {
        let want = Want::fail(
            condition::READY,
            "AuthServerNotFound",
            format!(
                "AuthServer {server_name} does not exist in namespace {ns}; create it or fix spec.authServerRef.name"
            ),
        );
        return finish(&ctx, &obj, before, want, &id, None, None).await;
    };

    // 1. Credentials.
    // The cache holds the operator's own credential Secrets; it may lag
    // behind one created a moment ago, and a bring-your-own Secret is not in
    // it: before generating a secret, ask the API, so the secret is made
    // exactly once.
    let live: Option<Arc<Credential>> = match ctx.credentials.get(&ns, &secret_name) {
        Some(c) => Some(c),
        None => Api::<Secret>::namespaced(ctx.base.client.clone(), &ns)
            .get_opt(&secret_name)
            .await?
            .map(|s| Arc::new(Credential::of(&s))),
    };
    if let Some(conflict) = live.as_ref().and_then(|s| secret_conflict(s, &obj)) {
        // Refused rather than shared: another object's Secret would hand this
        // client its credentials, and that object's deletion would rotate
        // them under this client.
        let want = Want::fail(condition::READY, "SecretConflict", conflict);
        return finish(&ctx, &obj, before, want, &id, None, None).await;
    }
    let source = match live {
        Some(s) if s.controller_of::<OAuthClient>().map(|(_, u)| u) != Some(uid.as_str()) => {
            let value = s.client_secret.as_ref().map(Vec::len);
            let problem = match (confidential, value) {
                (false, _) => None,
                (true, None) => Some(format!("Secret {secret_name} (yours) has no client_secret key")),
                (true, Some(n)) if n < MIN_SECRET_LEN => Some(format!(
                    "Secret {secret_name} (yours): client_secret is {n} characters; use at least {MIN_SECRET_LEN} random characters"
                )),
                _ => None,
            };
            let value = s.client_secret.as_ref().map(|v| sha256_hex(v));
            Source::Provided { problem, value }
        }
        Some(s) => {
            let existing = s
                .client_secret
                .as_ref()
                .and_then(|v| String::from_utf8(v.clone()).ok())
                .filter(|v| v.len() >= MIN_SECRET_LEN);
            let (secret, created) = match (confidential, existing) {
                (false, _) => (None, false),
                (true, Some(v)) => (Some(v), false),
                (true, None) => (Some(generate_secret()?), true),
            };
            Source::Generated { live: Some(s), secret, created }
        }
        None => {
            let secret = if confidential { Some(generate_secret()?) } else { None };
            Source::Generated { live: None, secret, created: confidential }
        }
    };
    let (secret_source, secret_problem, secret_value) = match source {
        Source::Provided { problem, value } => ("Provided", problem, value),
        Source::Generated { live, secret, created } => {
            let desired =
                objects::client_secret(&obj, &secret_name, &server_name, &id, secret.as_deref(), &server.spec.issuer)
                    .ok_or(Error::Incomplete("uid"))?;
            let wrote = match put_secret(&ctx.base, desired, live.as_deref().map(Live::Credential)).await? {
                Written::Written => true,
                Written::Unchanged => false,
                Written::Refused(f) => {
                    let want = Want::fail(
                        condition::READY,
                        f.reason,
                        format!("the API server refused Secret {secret_name}: {}", f.message),
                    );
                    return finish(&ctx, &obj, before, want, &id, None, None).await;
                }
            };
            if wrote && (created || live.is_none()) {
                tracing::info!(secret = %secret_name, client_id = %id, "credentials Secret created");
                ctx.base
                    .event(
                        obj.as_ref(),
                        false,
                        "CredentialsCreated",
                        format!("client_id {id} written to Secret {secret_name}"),
                    )
                    .await;
            }
            ("Generated", None, secret.map(|v| sha256_hex(v.as_bytes())))
        }
    };

    // 2. Would the AuthServer accept it? The same pure rules it runs.
    let want = if let Some(problem) = secret_problem {
        Want::fail(condition::READY, "SecretInvalid", problem)
    } else {
        let resources: Vec<Arc<ProtectedResource>> = ctx
            .resources
            .state()
            .into_iter()
            .filter(|r| r.namespace().as_deref() == Some(ns.as_str()) && r.spec.auth_server_ref.name == server_name)
            .collect();
        let resource_inputs: Vec<ResourceIn<'_>> =
            resources.iter().filter(|r| r.metadata.deletion_timestamp.is_none()).map(|r| ResourceIn::of(r)).collect();
        // Siblings matter only for client_id conflicts; their secrets are
        // their own business (a stand-in digest keeps them in the running).
        let siblings: Vec<Arc<OAuthClient>> = ctx
            .clients
            .state()
            .into_iter()
            .filter(|c| {
                c.metadata.namespace.as_deref() == Some(ns.as_str())
                    && c.spec.auth_server_ref.name == server_name
                    && c.metadata.deletion_timestamp.is_none()
                    && c.metadata.name.as_deref().is_some_and(|n| n != name && has_client_id(&ns, n, &c.spec, &id))
            })
            .collect();
        let stand_in = Some("0".repeat(64));
        let mut client_inputs: Vec<ClientIn<'_>> =
            siblings.iter().map(|c| ClientIn::of(c, &ns, &id, stand_in.clone())).collect();
        // Its own entry with its real digest: what the AuthServer renders.
        client_inputs.push(ClientIn::of(&obj, &ns, &id, secret_value.clone()));
        let reg = registry(&resource_inputs, &client_inputs);
        // The AuthServer's render leaves out a client whose brokerUpstreams it
        // cannot honour: say so here, with the same reason.
        let refusal = crate::render::config::broker_refusal(&obj.spec.broker_upstreams, &server.spec);
        match refusal.as_ref().or_else(|| reg.client_verdicts.get(&name)) {
            Some(Verdict::Accepted) | None => {
                let entry = reg.client_names.iter().position(|n| *n == name).and_then(|i| reg.clients.get(i));
                let hash = entry.map(entry_hash).unwrap_or_default();
                if before_reason(&before) == Some("AdoptionRequired") {
                    ctx.base
                        .event(
                            obj.as_ref(),
                            true,
                            "ClientIdAdopted",
                            format!("client_id {id} adopted as asked by annotation {ADOPT_ANNOTATION}"),
                        )
                        .await;
                }
                let in_config = in_shard(&ctx.shards, &ns, &server_name, &name, ctx.base.sharding);
                in_config.want("OAuthClient", &name, &hash, &server, &server_name)
            }
            Some(Verdict::Rejected { reason, message }) => {
                if matches!(*reason, "DuplicateClientId" | "UnknownResource") {
                    requeue = Some(Duration::from_secs(60));
                }
                Want::fail(condition::READY, reason, message.clone())
            }
        }
    };
    let action = finish(&ctx, &obj, before, want, &id, Some(secret_name), Some(secret_source)).await?;
    Ok(requeue.map_or(action, Action::requeue))
}

async fn finish(
    ctx: &Ctx,
    obj: &OAuthClient,
    before: OAuthClientStatus,
    want: Want,
    id: &str,
    secret_name: Option<String>,
    secret_source: Option<&str>,
) -> Result<Action, Error> {
    let generation = obj.metadata.generation;
    let status = OAuthClientStatus {
        observed_generation: generation,
        conditions: merge(
            &before.conditions,
            std::slice::from_ref(&want),
            generation,
            &rfc3339(Timestamp::now().as_second()),
        ),
        client_id: Some(id.to_owned()),
        secret_name,
        secret_source: secret_source.map(str::to_owned),
    };
    // An Event when Ready turns False, or stays False for a new reason.
    let flipped = !transitions(&before.conditions, &status.conditions).is_empty()
        || before.conditions.iter().any(|c| c.type_ == condition::READY && c.reason != want.reason);
    patch_status(&ctx.base, obj, obj.status.as_ref(), &status).await?;
    if flipped && !want.status && want.reason != "PendingConfig" {
        ctx.base.event(obj, true, want.reason, want.message.clone()).await;
    }
    Ok(Action::await_change())
}

fn before_reason(before: &OAuthClientStatus) -> Option<&str> {
    before.conditions.iter().find(|c| c.type_ == condition::READY).map(|c| c.reason.as_str())
}

/// Why `secret` cannot be `client`'s credential Secret: it is controlled by
/// another object, or the operator made it for another OAuthClient.
pub fn secret_conflict(secret: &Credential, client: &OAuthClient) -> Option<String> {
    let name = &secret.name;
    let uid = client.uid();
    if let Some(owner) = &secret.controller {
        if owner.kind == "OAuthClient" && Some(&owner.uid) == uid.as_ref() {
            return None;
        }
        return Some(if owner.kind == "OAuthClient" && owner.name == client.name_any() {
            format!("Secret {name} belongs to an earlier OAuthClient {} and is being deleted; waiting", owner.name)
        } else {
            format!(
                "Secret {name} is controlled by {} {}; it cannot be shared. Set spec.secretName to a Secret of \
                 this client's own",
                owner.kind, owner.name
            )
        });
    }
    if secret.managed_by_operator {
        return Some(format!(
            "Secret {name} is managed by authplane-operator for another object; it cannot be shared. Set \
             spec.secretName to a Secret of this client's own"
        ));
    }
    None
}
