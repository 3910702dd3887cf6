//! Leader election on a `coordination.k8s.io/v1` Lease: one replica
//! reconciles, the others wait. Optimistic concurrency (the Lease's
//! `resourceVersion`) decides races; a leader that cannot renew within the
//! lease duration stops, so two leaders never act at once for long.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader lease {0} lost: {1}")]
    Lost(String, String),
}

/// What a look at the Lease decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ours already: renew.
    Renew,
    /// Free or expired: take it.
    Take,
    /// Someone else holds a live lease.
    Wait { holder: String },
}

/// Pure: may `identity` hold `spec` at `now`?
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else { return Decision::Take };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Take;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    match renewed {
        Some(t) if now.as_second() < t.as_second() + seconds => Decision::Wait { holder },
        _ => Decision::Take,
    }
}

/// One attempt to take or renew the Lease. `Ok(true)` = we hold it.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &cfg.identity, now);
    let seconds = i32::try_from(cfg.duration.as_secs()).unwrap_or(15);
    match (current, decision) {
        (_, Decision::Wait { .. }) => Ok(false),
        (None, _) => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(cfg.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        (Some(mut lease), decision) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if decision == Decision::Take {
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.holder_identity = Some(cfg.identity.clone());
            spec.lease_duration_seconds = Some(seconds);
            spec.renew_time = Some(MicroTime(now));
            // `replace` carries the resourceVersion we read: a concurrent
            // writer makes it fail with 409 instead of both winning.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut logged = false;
    loop {
        match try_acquire(&api, cfg).await {
            Ok(true) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "leader lease acquired");
                return;
            }
            Ok(false) => {
                if !logged {
                    tracing::info!(lease = %cfg.name, "another replica leads; standing by");
                    logged = true;
                }
            }
            Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "leader lease: cannot read or write the Lease"),
        }
        tokio::time::sleep(cfg.duration / 3).await;
    }
}

/// Renews the Lease every third of its duration; returns an error once it
/// could not be renewed for a whole duration (or someone else took it).
pub async fn keep(client: Client, cfg: LeaseConfig) -> LeaderError {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.duration / 3).await;
        match try_acquire(&api, &cfg).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => return LeaderError::Lost(cfg.name.clone(), "another replica holds it".into()),
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "leader lease renewal failed");
                if last_ok.elapsed() >= cfg.duration {
                    return LeaderError::Lost(cfg.name.clone(), e.to_string());
                }
            }
        }
    }
}

/// Hands the Lease back on shutdown so a standby takes over at once.
pub async fn release(client: Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
    {
        spec.holder_identity = None;
        let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(secs),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::Take);
        assert_eq!(decide(Some(&spec("a", 990, 15)), "a", now), Decision::Renew);
        assert_eq!(decide(Some(&spec("b", 990, 15)), "a", now), Decision::Wait { holder: "b".into() });
        assert_eq!(decide(Some(&spec("b", 980, 15)), "a", now), Decision::Take, "expired");
        assert_eq!(decide(Some(&spec("", 999, 15)), "a", now), Decision::Take, "released");
    }
}
