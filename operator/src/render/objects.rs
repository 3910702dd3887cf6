//! The Kubernetes objects an AuthServer and an OAuthClient own.
//!
//! Configuration reaches running pods by hot reload: the config and key
//! Secrets are mounted as directories (never `subPath`, which kubelet does not
//! update) and the server re-reads both within 2 s of the kubelet's `..data`
//! swap. Only settings the server cannot change at runtime (image, database
//! source, listeners, log format, mounts) are in the pod template, so only
//! they roll the pods.

use std::collections::BTreeMap;

use authplane_core::keyfile::SigningKeyFile;
use authplane_crds::AuthServer;
use authplane_crds::authserver::AuthServerSpec;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    Lifecycle, LifecycleHandler, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ProjectedVolumeSource, SeccompProfile, Secret, SecretKeySelector, SecretProjection, SecretVolumeSource,
    SecurityContext, Service, ServicePort, ServiceSpec, SleepAction, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::shards::{INDEX_KEY, Shard, ShardIndex, fragment_key};
use super::{labels, names, paths, selector};

/// Seconds a terminating server pod keeps serving before SIGTERM (preStop);
/// counted in its 30 s termination grace period.
pub const PRE_STOP_SECONDS: i64 = 5;

/// Identity of an AuthServer for rendering.
#[derive(Debug, Clone)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    pub owner_ref: OwnerReference,
}

impl Owner {
    pub fn of(a: &AuthServer) -> Option<Owner> {
        Some(Owner { name: a.name_any(), namespace: a.namespace()?, owner_ref: super::owner_ref(a)? })
    }

    fn meta(&self, name: String, extra_labels: BTreeMap<String, String>) -> ObjectMeta {
        let mut l = labels(&self.name);
        l.extend(extra_labels);
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(l),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// `<name>-config` with `config.yaml`.
pub fn config_secret(owner: &Owner, yaml: &str) -> Secret {
    Secret {
        metadata: owner.meta(names::config_secret(&owner.name), BTreeMap::new()),
        data: Some(BTreeMap::from([(paths::CONFIG_FILE_NAME.to_owned(), ByteString(yaml.as_bytes().to_vec()))])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// `<name>-registry-NN`: one shard of the registry (`registry-NN.yaml`,
/// mounted into the pod's registry directory) and its `index.json`.
pub fn shard_secret(owner: &Owner, shard: &Shard) -> Secret {
    let labels = BTreeMap::from([(super::SHARD_LABEL.to_owned(), shard.index.to_string())]);
    Secret {
        metadata: owner.meta(names::shard_secret(&owner.name, shard.index), labels),
        data: Some(BTreeMap::from([
            (fragment_key(shard.index), ByteString(shard.fragment.as_bytes().to_vec())),
            (INDEX_KEY.to_owned(), ByteString(shard.index_json().into_bytes())),
        ])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// The index of a shard Secret; `None` when it has none or it does not parse.
pub fn shard_index(secret: &Secret) -> Option<ShardIndex> {
    let raw = secret.data.as_ref()?.get(INDEX_KEY)?;
    serde_json::from_slice(&raw.0).ok()
}

/// `<name>-signing-keys` with one `<kid>.json` per published key.
pub fn keys_secret(owner: &Owner, keys: &[SigningKeyFile]) -> Secret {
    let data =
        keys.iter().map(|k| (k.file_name(), ByteString(serde_json::to_vec_pretty(k).unwrap_or_default()))).collect();
    Secret {
        metadata: owner.meta(names::keys_secret(&owner.name), BTreeMap::new()),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// `<name>-broker-keys` holding `text` (`broker.keys`), no owner: deleting
/// the AuthServer must not make the stored grants unreadable.
pub fn broker_keys_secret(owner: &Owner, text: &str) -> Secret {
    let mut meta = owner.meta(names::broker_keys_secret(&owner.name), BTreeMap::new());
    meta.owner_references = None;
    Secret {
        metadata: meta,
        data: Some(BTreeMap::from([(paths::BROKER_KEYS_FILE_NAME.to_owned(), ByteString(text.as_bytes().to_vec()))])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// `<name>-signing-keys-retained`: the same keys, not mounted and with no
/// owner, so deleting the key Secret or the AuthServer does not lose them.
/// It is removed only by hand (see docs/operator.md, "Retention").
pub fn keys_backup_secret(owner: &Owner, keys: &[SigningKeyFile]) -> Secret {
    let mut s = keys_secret(owner, keys);
    s.metadata.name = Some(names::keys_backup_secret(&owner.name));
    s.metadata.owner_references = None;
    s
}

/// Parses a key Secret's data; entries that are not key files are returned
/// by name so the caller can report them.
pub fn parse_keys(secret: &Secret) -> (Vec<SigningKeyFile>, Vec<String>) {
    let mut keys = Vec::new();
    let mut bad = Vec::new();
    for (name, value) in secret.data.iter().flatten() {
        match serde_json::from_slice::<SigningKeyFile>(&value.0) {
            Ok(k) if k.file_name() == *name && crate::keys::is_valid(&k) => keys.push(k),
            _ => bad.push(name.clone()),
        }
    }
    (keys, bad)
}

/// The credential Secret of an OAuthClient, owned by the OAuthClient.
pub fn client_secret(
    client: &authplane_crds::OAuthClient,
    secret_name: &str,
    authserver: &str,
    client_id: &str,
    client_secret: Option<&str>,
    issuer: &str,
) -> Option<Secret> {
    let mut l = labels(authserver);
    l.insert(super::OAUTHCLIENT_LABEL.into(), client.name_any());
    l.insert("app.kubernetes.io/component".into(), "oauth-client".into());
    let mut data = BTreeMap::from([
        ("client_id".to_owned(), ByteString(client_id.as_bytes().to_vec())),
        ("issuer".to_owned(), ByteString(issuer.as_bytes().to_vec())),
    ]);
    if let Some(s) = client_secret {
        data.insert("client_secret".into(), ByteString(s.as_bytes().to_vec()));
    }
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            namespace: client.namespace(),
            labels: Some(l),
            owner_references: Some(vec![super::owner_ref(client)?]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

fn secret_volume(name: &str, secret: &str, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            items,
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), read_only: Some(true), ..VolumeMount::default() }
}

fn env_from_secret(name: &str, r: &authplane_crds::SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: r.name.clone(), key: r.key.clone(), optional: Some(false) }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// UID/GID of the server process (distroless `nonroot`).
const RUN_AS: i64 = 65532;

/// The config volume: the config Secret's `config.yaml` and every shard's
/// fragment under `registry.d/`, one projected directory that kubelet
/// updates in place (hot reload; never `subPath`).
fn config_volume(owner: &Owner, shards: u32) -> Volume {
    let mut sources = vec![VolumeProjection {
        secret: Some(SecretProjection {
            name: names::config_secret(&owner.name),
            items: Some(vec![KeyToPath {
                key: paths::CONFIG_FILE_NAME.into(),
                path: paths::CONFIG_FILE_NAME.into(),
                ..KeyToPath::default()
            }]),
            optional: Some(false),
        }),
        ..VolumeProjection::default()
    }];
    for i in 0..shards {
        sources.push(VolumeProjection {
            secret: Some(SecretProjection {
                name: names::shard_secret(&owner.name, i),
                items: Some(vec![KeyToPath {
                    key: fragment_key(i),
                    path: format!("{}/{}", paths::REGISTRY_DIR_NAME, fragment_key(i)),
                    ..KeyToPath::default()
                }]),
                optional: Some(false),
            }),
            ..VolumeProjection::default()
        });
    }
    Volume {
        name: "config".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(0o440),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The server Deployment; `shards` is the number of registry shards.
pub fn deployment(owner: &Owner, spec: &AuthServerSpec, image: &str, shards: u32) -> Deployment {
    let mut pod_labels = labels(&owner.name);
    pod_labels.extend(selector(&owner.name));

    let mut volumes = vec![
        config_volume(owner, shards),
        secret_volume("signing-keys", &names::keys_secret(&owner.name), None),
        Volume { name: "tmp".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() },
    ];
    let mut mounts = vec![
        mount("config", paths::CONFIG_DIR),
        mount("signing-keys", paths::KEYS_DIR),
        VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..VolumeMount::default() },
    ];
    let mut env = Vec::new();

    if let Some(r) = &spec.admin_api_key_secret_ref {
        volumes.push(secret_volume(
            "admin-api-key",
            &r.name,
            Some(vec![KeyToPath {
                key: r.key.clone(),
                path: paths::ADMIN_KEY_FILE_NAME.into(),
                ..KeyToPath::default()
            }]),
        ));
        mounts.push(mount("admin-api-key", paths::ADMIN_DIR));
    }
    // Identity providers' client secrets: one directory mount each (not
    // subPath), so a rotated Secret reaches the pod; never in the config.
    for u in &spec.upstreams {
        let volume = format!("upstream-{}", u.id);
        volumes.push(secret_volume(
            &volume,
            &u.client_secret_ref.name,
            Some(vec![KeyToPath {
                key: u.client_secret_ref.key.clone(),
                path: paths::UPSTREAM_SECRET_FILE_NAME.into(),
                ..KeyToPath::default()
            }]),
        ));
        mounts.push(mount(&volume, &format!("{}/{}", paths::UPSTREAMS_DIR, u.id)));
    }
    if spec.upstreams.iter().any(|u| u.store_tokens) {
        volumes.push(secret_volume(
            "broker-keys",
            &names::broker_keys_secret(&owner.name),
            Some(vec![KeyToPath {
                key: paths::BROKER_KEYS_FILE_NAME.into(),
                path: paths::BROKER_KEYS_FILE_NAME.into(),
                ..KeyToPath::default()
            }]),
        ));
        mounts.push(mount("broker-keys", paths::BROKER_DIR));
    }
    match &spec.database.postgres {
        Some(pg) => {
            env.push(env_from_secret("AUTHPLANE_DATABASE_URL", &pg.url_secret_ref));
            // A directory mount (not subPath), so a rotated CA reaches the pod.
            if let Some(ca) = &pg.ca_secret_ref {
                volumes.push(secret_volume(
                    "postgres-ca",
                    &ca.name,
                    Some(vec![KeyToPath {
                        key: ca.key.clone(),
                        path: paths::POSTGRES_CA_FILE_NAME.into(),
                        ..KeyToPath::default()
                    }]),
                ));
                mounts.push(mount("postgres-ca", paths::POSTGRES_CA_DIR));
            }
        }
        None => {
            let claim = spec.database.sqlite.as_ref().and_then(|s| s.volume_claim_name.clone());
            volumes.push(Volume {
                name: "data".into(),
                persistent_volume_claim: claim
                    .map(|claim_name| PersistentVolumeClaimVolumeSource { claim_name, read_only: Some(false) }),
                empty_dir: spec
                    .database
                    .sqlite
                    .as_ref()
                    .and_then(|s| s.volume_claim_name.as_ref())
                    .is_none()
                    .then(EmptyDirVolumeSource::default),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: "data".into(),
                mount_path: paths::DATA_DIR.into(),
                ..VolumeMount::default()
            });
        }
    }
    if let Some(r) = &spec.oauth.initial_access_token_secret_ref {
        env.push(env_from_secret("AUTHPLANE_OAUTH_INITIAL_ACCESS_TOKEN", r));
    }

    let container = Container {
        name: "authserver".into(),
        image: Some(image.into()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_owned()),
        args: Some(vec![
            "--config".into(),
            paths::config_file(),
            "--registry-dir".into(),
            paths::registry_dir(),
            "serve".into(),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: i32::from(paths::PUBLIC_PORT),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: i32::from(paths::ADMIN_PORT),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        env: Some(env),
        resources: spec.resources.clone(),
        // /health checks the database too: a pod that cannot reach it stops
        // getting traffic; liveness only asks whether the process answers.
        readiness_probe: Some(http_probe("/health", "http", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", "admin", 10, 6)),
        startup_probe: Some(http_probe("/healthz", "admin", 2, 60)),
        // A terminating pod leaves the Service's endpoints as it is told to
        // stop; kube-proxy (and any load balancer) needs a moment to stop
        // sending it new connections. Serving PRE_STOP_SECONDS longer before
        // SIGTERM lets a rolling restart drop no request (e2e/pods-test.sh
        // step 6 dropped 5 of 158 without it). The sleep action needs no
        // shell in the image.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: PRE_STOP_SECONDS }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    // SQLite is one writer on one volume: never run two pods at once.
    let strategy = if spec.database.postgres.is_some() {
        None
    } else {
        Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None })
    };

    Deployment {
        metadata: owner.meta(owner.name.clone(), BTreeMap::new()),
        spec: DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector { match_labels: Some(selector(&owner.name)), ..LabelSelector::default() },
            strategy,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// The Service: `http` 9000 (public), `admin` 9001 (metrics, admin API).
pub fn service(owner: &Owner) -> Service {
    let port = |name: &str, port: u16| ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    Service {
        metadata: owner.meta(owner.name.clone(), BTreeMap::new()),
        spec: Some(ServiceSpec {
            selector: Some(selector(&owner.name)),
            ports: Some(vec![port("http", paths::PUBLIC_PORT), port("admin", paths::ADMIN_PORT)]),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// In-cluster URL of the public port.
pub fn service_url(owner: &Owner) -> String {
    format!("http://{}.{}.svc:{}", owner.name, owner.namespace, paths::PUBLIC_PORT)
}

/// A Prometheus Operator ServiceMonitor scraping `admin` `/metrics`.
pub fn service_monitor(owner: &Owner, spec: &AuthServerSpec) -> serde_json::Value {
    let sm = &spec.monitoring.service_monitor;
    let mut meta_labels = labels(&owner.name);
    meta_labels.extend(sm.labels.clone());
    let mut endpoint = serde_json::json!({"port": "admin", "path": "/metrics", "scheme": "http"});
    if let Some(i) = &sm.interval {
        endpoint["interval"] = i.clone().into();
    }
    serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": meta_labels,
            "ownerReferences": [owner.owner_ref],
        },
        "spec": {
            "selector": {"matchLabels": labels(&owner.name)},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [endpoint],
        }
    })
}
