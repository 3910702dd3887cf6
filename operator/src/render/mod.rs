//! Pure functions from custom resources to the objects the operator owns.
//! No client, no clock, no randomness: tests call them without a cluster.

pub mod config;
pub mod objects;
pub mod shards;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "authplane-operator";
/// Annotation holding the hash of what the operator last rendered for an object.
pub const HASH_ANNOTATION: &str = "authplane.io/rendered-hash";
/// Label naming the AuthServer an object belongs to.
pub const AUTHSERVER_LABEL: &str = "authplane.io/authserver";
/// Label on a registry shard Secret: its index.
pub const SHARD_LABEL: &str = "authplane.io/registry-shard";
/// Label naming the OAuthClient a credential Secret belongs to.
pub const OAUTHCLIENT_LABEL: &str = "authplane.io/oauthclient";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/managed-by=authplane-operator`: what the operator's watches select.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=authplane-operator";

/// Paths and ports inside the server pod.
pub mod paths {
    pub const PUBLIC_PORT: u16 = 9000;
    pub const ADMIN_PORT: u16 = 9001;
    pub const CONFIG_DIR: &str = "/etc/authplane/config";
    pub const CONFIG_FILE_NAME: &str = "config.yaml";
    /// Subdirectory of `CONFIG_DIR` with the registry shards.
    pub const REGISTRY_DIR_NAME: &str = "registry.d";
    pub const KEYS_DIR: &str = "/etc/authplane/keys";
    pub const ADMIN_DIR: &str = "/etc/authplane/admin";
    pub const ADMIN_KEY_FILE_NAME: &str = "api-key";
    pub const DATA_DIR: &str = "/var/lib/authplane";
    pub const POSTGRES_PLACEHOLDER: &str = "postgres://from-env-AUTHPLANE_DATABASE_URL@invalid/authplane";
    /// `spec.database.postgres.caSecretRef` is mounted here as `ca.crt`.
    pub const POSTGRES_CA_DIR: &str = "/etc/authplane/postgres-ca";
    pub const POSTGRES_CA_FILE_NAME: &str = "ca.crt";

    /// `spec.upstreams[].clientSecretRef` of upstream `<id>` is mounted in
    /// `UPSTREAMS_DIR/<id>/` as `client-secret`.
    pub const UPSTREAMS_DIR: &str = "/etc/authplane/upstreams";
    pub const UPSTREAM_SECRET_FILE_NAME: &str = "client-secret";
    /// The broker's key Secret (`<name>-broker-keys`) is mounted here.
    pub const BROKER_DIR: &str = "/etc/authplane/broker";
    pub const BROKER_KEYS_FILE_NAME: &str = authplane_core::brokerkeys::FILE_NAME;

    pub fn upstream_secret_file(id: &str) -> String {
        format!("{UPSTREAMS_DIR}/{id}/{UPSTREAM_SECRET_FILE_NAME}")
    }

    pub fn broker_keys_file() -> String {
        format!("{BROKER_DIR}/{BROKER_KEYS_FILE_NAME}")
    }

    pub fn postgres_ca_file() -> String {
        format!("{POSTGRES_CA_DIR}/{POSTGRES_CA_FILE_NAME}")
    }

    pub fn config_file() -> String {
        format!("{CONFIG_DIR}/{CONFIG_FILE_NAME}")
    }

    pub fn registry_dir() -> String {
        format!("{CONFIG_DIR}/{REGISTRY_DIR_NAME}")
    }

    pub fn admin_key_file() -> String {
        format!("{ADMIN_DIR}/{ADMIN_KEY_FILE_NAME}")
    }

    pub fn sqlite_url() -> String {
        format!("sqlite://{DATA_DIR}/authplane.db?mode=rwc")
    }
}

/// Names of the objects owned by an AuthServer.
pub mod names {
    pub fn config_secret(authserver: &str) -> String {
        format!("{authserver}-config")
    }

    pub fn keys_secret(authserver: &str) -> String {
        format!("{authserver}-signing-keys")
    }

    /// Retained copy of the signing keys: not mounted, not owned, so it
    /// survives the deletion of the key Secret or of the AuthServer.
    pub fn keys_backup_secret(authserver: &str) -> String {
        format!("{authserver}-signing-keys-retained")
    }

    /// The token broker's encryption keys: created by the operator when an
    /// upstream has `storeTokens`, never owned (deleting the AuthServer must
    /// not make the stored grants unreadable) and never rewritten.
    pub fn broker_keys_secret(authserver: &str) -> String {
        format!("{authserver}-broker-keys")
    }

    pub fn shard_secret(authserver: &str, index: u32) -> String {
        format!("{authserver}-registry-{index:02}")
    }
}

/// A controller owner reference to `owner` (deletion cascades; `.owns()` maps back).
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}

/// Labels on everything owned by an AuthServer; the pods add `app=authplane`.
pub fn labels(authserver: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "authplane".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), authserver.to_owned()),
        ("app.kubernetes.io/component".to_owned(), "authserver".to_owned()),
        (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
        (AUTHSERVER_LABEL.to_owned(), authserver.to_owned()),
    ])
}

/// The pod selector of an AuthServer's Deployment and Service.
pub fn selector(authserver: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_owned(), "authplane".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), authserver.to_owned()),
    ])
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// Puts the hash of `obj` (as rendered, without the annotation) into its
/// annotations and returns it, so later reconciles can tell "unchanged".
pub fn stamp<K: Resource + serde::Serialize>(obj: &mut K) -> String {
    obj.meta_mut().annotations.get_or_insert_with(BTreeMap::new).remove(HASH_ANNOTATION);
    let hash = serde_json::to_vec(obj).map(|b| sha256_hex(&b)[..16].to_owned()).unwrap_or_default();
    obj.meta_mut().annotations.get_or_insert_with(BTreeMap::new).insert(HASH_ANNOTATION.into(), hash.clone());
    hash
}
