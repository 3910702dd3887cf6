//! Kubernetes Events (`events.k8s.io/v1`), published the way kube's
//! `Recorder` does — a repeat of the same event on the same object within
//! six minutes becomes a `series` update of the first one — but remembering
//! only what a repeat needs (the event's name, its count and when it was
//! last seen) instead of a copy of each whole Event. At 10,000 OAuthClients,
//! each with a `CredentialsCreated` Event, kube's cache held ~25 MiB.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// How long a repeat is folded into the first event (kube's `Recorder`
/// uses the same).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Most events remembered for folding; beyond it the oldest are forgotten
/// (a repeat then becomes a new Event, never an error).
const MAX_REMEMBERED: usize = 50_000;

/// One event to publish.
pub struct Event<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub note: String,
    pub action: &'a str,
}

struct Seen {
    name: String,
    count: i32,
    last: Instant,
}

pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    seen: tokio::sync::Mutex<HashMap<u64, Seen>>,
    pruned: tokio::sync::Mutex<Instant>,
}

impl Events {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Events {
        Events {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            seen: tokio::sync::Mutex::new(HashMap::new()),
            pruned: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Creates the Event, or counts a repeat (same object, type, reason and
    /// action within [`SERIES_WINDOW`]) on the first one.
    pub async fn publish(&self, ev: &Event<'_>, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let key = key(ev, regarding);
        let now = Instant::now();
        let ts = Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = {
            let mut seen = self.seen.lock().await;
            // Forgetting old entries costs a pass over the map: once per
            // window's tenth, not per event (10,000 events in a burst).
            let mut pruned = self.pruned.lock().await;
            if now.duration_since(*pruned) >= SERIES_WINDOW / 10 {
                seen.retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
                *pruned = now;
            }
            drop(pruned);
            let seen_recent = seen.get(&key).is_some_and(|s| now.duration_since(s.last) < SERIES_WINDOW);
            if !seen_recent {
                seen.remove(&key);
            }
            seen.get_mut(&key).map(|s| {
                s.count += 1;
                s.last = now;
                (s.name.clone(), s.count)
            })
        };
        if let Some((name, count)) = repeat {
            let patch = serde_json::json!({
                "series": EventSeries { count, last_observed_time: MicroTime(ts) },
            });
            return api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ());
        }
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(&self.controller), ts.as_nanosecond());
        let event = K8sEvent {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            action: Some(ev.action.to_owned()),
            reason: Some(ev.reason.to_owned()),
            note: Some(ev.note.clone()),
            event_time: Some(MicroTime(ts)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if ev.warning { "Warning" } else { "Normal" }.to_owned()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        let mut seen = self.seen.lock().await;
        if seen.len() >= MAX_REMEMBERED
            && let Some(oldest) = seen.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k)
        {
            seen.remove(&oldest);
        }
        seen.insert(key, Seen { name, count: 1, last: now });
        Ok(())
    }
}

fn key(ev: &Event<'_>, r: &ObjectReference) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (ev.warning, ev.reason, ev.action).hash(&mut h);
    (&r.kind, &r.namespace, &r.name, &r.uid, &r.api_version).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("OAuthClient".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_key_folds_repeats_on_one_object_only() {
        let a = Event { warning: true, reason: "ConfigTooLarge", note: "one".into(), action: "Reconcile" };
        let a_other_note = Event { warning: true, reason: "ConfigTooLarge", note: "two".into(), action: "Reconcile" };
        assert_eq!(key(&a, &reference("x", "1")), key(&a_other_note, &reference("x", "1")));
        assert_ne!(key(&a, &reference("x", "1")), key(&a, &reference("y", "2")));
        assert_ne!(key(&a, &reference("x", "1")), key(&a, &reference("x", "3")), "a re-created object is another");
        let normal = Event { warning: false, reason: "ConfigTooLarge", note: "one".into(), action: "Reconcile" };
        assert_ne!(key(&a, &reference("x", "1")), key(&normal, &reference("x", "1")));
    }
}
