//! Status conditions: `lastTransitionTime` moves only when `status` changes.

use authplane_crds::Condition;

/// The condition a reconcile wants, without timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Want {
    pub fn ok(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Want {
        Want { type_, status: true, reason, message: message.into() }
    }

    pub fn fail(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Want {
        Want { type_, status: false, reason, message: message.into() }
    }
}

/// The new condition list: one entry per wanted type, in the wanted order.
/// An entry whose status did not change keeps its `lastTransitionTime`.
pub fn merge(existing: &[Condition], wants: &[Want], generation: Option<i64>, now: &str) -> Vec<Condition> {
    wants
        .iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let last_transition_time = match existing.iter().find(|c| c.type_ == w.type_) {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => now.to_owned(),
            };
            Condition {
                type_: w.type_.to_owned(),
                status: status.to_owned(),
                last_transition_time,
                reason: w.reason.to_owned(),
                message: w.message.clone(),
                observed_generation: generation,
            }
        })
        .collect()
}

/// `(type, new status)` for every condition whose status changed (for Events).
pub fn transitions<'a>(before: &[Condition], after: &'a [Condition]) -> Vec<&'a Condition> {
    after.iter().filter(|a| before.iter().find(|b| b.type_ == a.type_).is_none_or(|b| b.status != a.status)).collect()
}

/// RFC 3339 time of `unix` seconds, as Kubernetes writes it (`Z`, no fraction).
pub fn rfc3339(unix: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let first = merge(&[], &[Want::fail("Ready", "AuthServerNotFound", "missing")], Some(1), "t1");
        assert_eq!(first[0].last_transition_time, "t1");
        // Same status, new message and generation: time stays.
        let same = merge(&first, &[Want::fail("Ready", "AuthServerNotFound", "still missing")], Some(2), "t2");
        assert_eq!(same[0].last_transition_time, "t1");
        assert_eq!(same[0].message, "still missing");
        assert_eq!(same[0].observed_generation, Some(2));
        assert!(transitions(&first, &same).is_empty());
        // Status flips: time moves.
        let flipped = merge(&same, &[Want::ok("Ready", "Registered", "ok")], Some(2), "t3");
        assert_eq!(flipped[0].last_transition_time, "t3");
        assert_eq!(transitions(&same, &flipped).len(), 1);
    }

    #[test]
    fn rfc3339_matches_kubernetes() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_782_864_000), "2026-07-01T00:00:00Z");
    }
}
