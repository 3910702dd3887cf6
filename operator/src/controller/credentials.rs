//! The OAuthClients' credential Secrets, cached as the little the operator
//! reads of them. At 10,000 clients whole Secrets in a reflector store were
//! the largest part of the operator's heap (33.5 of 81.5 MiB at the peak,
//! measured with heaptrack: every label, annotation and data entry is its
//! own allocation, and each map a 0.5 KiB B-tree node); a [`Credential`]
//! keeps the owner, two labels, the `client_secret` and a fingerprint of the
//! rest, about a tenth of that.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::render::{FIELD_MANAGER, HASH_ANNOTATION, MANAGED_BY_LABEL, MANAGED_SELECTOR, OAUTHCLIENT_LABEL};

/// What the operator reads of a credential Secret. No `Debug`: it holds the
/// client secret.
#[derive(Clone)]
pub struct Credential {
    pub name: String,
    pub resource_version: Option<String>,
    /// SHA-256 of what a write compares: the rendered-hash annotation, the
    /// data, the labels and the owner references ([`fingerprint`]).
    pub fingerprint: [u8; 32],
    /// The owner reference with `controller: true`, if any.
    pub controller: Option<OwnerReference>,
    /// The `authplane.io/oauthclient` label.
    pub oauthclient: Option<String>,
    /// `app.kubernetes.io/managed-by=authplane-operator`.
    pub managed_by_operator: bool,
    /// The `client_secret` entry.
    pub client_secret: Option<Vec<u8>>,
}

impl Credential {
    pub fn of(s: &Secret) -> Self {
        Self {
            name: s.name_any(),
            resource_version: s.resource_version(),
            fingerprint: fingerprint(s),
            controller: s.owner_references().iter().find(|o| o.controller == Some(true)).cloned(),
            oauthclient: s.labels().get(OAUTHCLIENT_LABEL).cloned(),
            managed_by_operator: s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(FIELD_MANAGER),
            client_secret: s.data.as_ref().and_then(|d| d.get("client_secret")).map(|v| v.0.clone()),
        }
    }

    /// Name and uid of the controlling owner when it is a `K`.
    pub fn controller_of<K: Resource<DynamicType = ()>>(&self) -> Option<(&str, &str)> {
        self.controller
            .as_ref()
            .filter(|o| o.kind == K::kind(&()) && o.api_version == K::api_version(&()))
            .map(|o| (o.name.as_str(), o.uid.as_str()))
    }
}

/// SHA-256 over what `put_secret` compares of a Secret: equal fingerprints
/// mean equal rendered-hash annotation, data, labels and owner references.
pub fn fingerprint(s: &Secret) -> [u8; 32] {
    let hash = s.annotations().get(HASH_ANNOTATION);
    let parts = (hash, &s.data, &s.metadata.labels, &s.metadata.owner_references);
    let bytes = serde_json::to_vec(&parts).unwrap_or_default();
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Namespace → Secret name → what the operator reads of it (nested so that
/// a lookup, one per client per render, allocates nothing).
type Map = HashMap<String, HashMap<String, Arc<Credential>>>;

fn insert(m: &mut Map, s: &Secret) {
    m.entry(s.namespace().unwrap_or_default()).or_default().insert(s.name_any(), Arc::new(Credential::of(s)));
}

fn remove(m: &mut Map, s: &Secret) {
    let ns = s.namespace().unwrap_or_default();
    if let Some(names) = m.get_mut(&ns) {
        names.remove(&s.name_any());
        if names.is_empty() {
            m.remove(&ns);
        }
    }
}

/// The cache of the operator's credential Secrets, filled by the stream
/// [`Credentials::watch`] returns; `ready` once it holds the first list.
#[derive(Clone)]
pub struct Credentials {
    map: Arc<RwLock<Map>>,
    pub ready: tokio::sync::watch::Receiver<bool>,
}

/// The label selector of the operator's credential Secrets.
pub fn selector() -> String {
    format!("{MANAGED_SELECTOR},{OAUTHCLIENT_LABEL}")
}

impl Credentials {
    /// The credential Secret `name` in `ns`, as last seen by the watch.
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<Credential>> {
        self.map.read().ok()?.get(ns)?.get(name).cloned()
    }

    /// The cache and the watch that fills it; the stream yields every
    /// changed or deleted Secret (whole, and dropped once mapped), for
    /// triggers. It must be polled for the cache to fill.
    pub fn watch(
        client: &Client,
        namespace: Option<&str>,
    ) -> (Self, impl Stream<Item = Result<Secret, watcher::Error>> + Send + use<>) {
        let map: Arc<RwLock<Map>> = Arc::default();
        let (tx, ready) = tokio::sync::watch::channel(false);
        let writer = map.clone();
        // A relist fills a fresh map, swapped in whole at its end, so that a
        // Secret deleted while the watch was down does not linger.
        let mut relist: Option<Map> = None;
        let wc = watcher::Config::default().labels(&selector());
        let stream = watcher(super::api::<Secret>(client, namespace), wc).default_backoff().filter_map(move |ev| {
            let out = match ev {
                Ok(watcher::Event::Init) => {
                    relist = Some(Map::new());
                    None
                }
                Ok(watcher::Event::InitApply(s)) => {
                    if let Some(m) = relist.as_mut() {
                        insert(m, &s);
                    }
                    Some(Ok(s))
                }
                Ok(watcher::Event::InitDone) => {
                    if let (Some(fresh), Ok(mut m)) = (relist.take(), writer.write()) {
                        *m = fresh;
                    }
                    let _ = tx.send(true);
                    None
                }
                Ok(watcher::Event::Apply(s)) => {
                    if let Ok(mut m) = writer.write() {
                        insert(&mut m, &s);
                    }
                    Some(Ok(s))
                }
                Ok(watcher::Event::Delete(s)) => {
                    if let Ok(mut m) = writer.write() {
                        remove(&mut m, &s);
                    }
                    Some(Ok(s))
                }
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        });
        (Self { map, ready }, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn secret(value: &str, label: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("c-oauth-client".into()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
                    (OAUTHCLIENT_LABEL.to_owned(), label.to_owned()),
                ])),
                annotations: Some(BTreeMap::from([(HASH_ANNOTATION.to_owned(), "h".to_owned())])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "authplane.io/v1alpha1".into(),
                    kind: "OAuthClient".into(),
                    name: "c".into(),
                    uid: "u1".into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("client_secret".to_owned(), ByteString(value.as_bytes().to_vec()))])),
            ..Secret::default()
        }
    }

    #[test]
    fn a_credential_keeps_what_reconciles_read_and_fingerprints_the_rest() {
        let c = Credential::of(&secret("s3cret", "c"));
        assert_eq!(c.client_secret.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(c.oauthclient.as_deref(), Some("c"));
        assert!(c.managed_by_operator);
        assert_eq!(c.controller_of::<authplane_crds::OAuthClient>(), Some(("c", "u1")));
        assert_eq!(c.resource_version.as_deref(), Some("7"));
        // Whatever a write compares changes the fingerprint; the
        // resourceVersion (not compared) does not.
        let mut other_version = secret("s3cret", "c");
        other_version.metadata.resource_version = Some("8".into());
        assert_eq!(fingerprint(&other_version), c.fingerprint);
        assert_ne!(fingerprint(&secret("other", "c")), c.fingerprint);
        assert_ne!(fingerprint(&secret("s3cret", "d")), c.fingerprint);
        let mut annotated = secret("s3cret", "c");
        annotated.metadata.annotations = None;
        assert_ne!(fingerprint(&annotated), c.fingerprint);
    }

    #[test]
    fn the_cache_finds_removes_and_forgets_empty_namespaces() {
        let (_tx, ready) = tokio::sync::watch::channel(true);
        let cache = Credentials { map: Arc::default(), ready };
        let mut s = secret("s3cret", "c");
        s.metadata.namespace = Some("team".into());
        insert(&mut cache.map.write().unwrap(), &s);
        assert_eq!(cache.get("team", "c-oauth-client").and_then(|c| c.client_secret.clone()), Some(b"s3cret".to_vec()));
        assert!(cache.get("other", "c-oauth-client").is_none());
        remove(&mut cache.map.write().unwrap(), &s);
        assert!(cache.get("team", "c-oauth-client").is_none());
        assert!(cache.map.read().unwrap().is_empty());
    }
}
