//! A steady stream of edits is written within the debounce's maximum wait
//! (5 s), not only once the edits stop.

use std::time::{Duration, Instant};

use authplane_crds::OAuthClient;

use crate::helpers::*;

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn a_burst_of_edits_is_written_within_the_maximum_wait() {
    let ns = TestNs::new("debounce").await;
    let _op = Operator::start(&ns.name);
    ns.apply(&all_samples());
    await_ready::<OAuthClient>(&ns, "backend", true, Some("Registered")).await;

    // Edit a client every 300 ms for 14 s; note when each edit's name first
    // shows up in the config the pods read.
    let start = Instant::now();
    let mut first_seen: Option<Duration> = None;
    let mut distinct_configs = 0;
    let mut last_text = pod_config(&ns, "authplane").await.text();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(14) {
        i += 1;
        ns.apply(
            &sample("oauthclient-confidential.yaml")
                .replace("clientName: Example backend", &format!("clientName: Backend edit {i}")),
        );
        let text = pod_config(&ns, "authplane").await.text();
        if text != last_text {
            distinct_configs += 1;
            last_text = text;
            if first_seen.is_none() {
                first_seen = Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let first = first_seen.expect("no config write during 14 s of edits");
    assert!(first < Duration::from_secs(8), "first write after {first:?}; the maximum wait is 5 s");
    assert!(distinct_configs >= 2, "only {distinct_configs} writes during the burst");

    // After the burst the last edit lands, and Ready follows the config.
    let last = format!("Backend edit {i}");
    await_ready::<OAuthClient>(&ns, "backend", true, Some("Registered")).await;
    eventually("the last edit in the config", Duration::from_secs(10), || async {
        pod_config(&ns, "authplane").await.text().contains(&last).then_some(())
    })
    .await;
}
