//! A settled cluster causes zero writes: for 30 s after convergence no
//! object's resourceVersion changes and the operator's write counter
//! (Lease renewals aside) stays flat.

use std::collections::BTreeMap;
use std::time::Duration;

use authplane_crds::{AuthServer, OAuthClient, ProtectedResource};

use crate::helpers::*;

async fn versions(ns: &TestNs) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kind in [
        "secrets",
        "deployments",
        "services",
        "servicemonitors",
        "authservers",
        "protectedresources",
        "oauthclients",
        "events",
    ] {
        let (ok, text) = ns.kubectl(&[
            "get",
            kind,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion}{\"\\n\"}{end}",
        ]);
        assert!(ok, "{text}");
        for line in text.lines().filter(|l| !l.is_empty()) {
            out.insert(format!("{kind}/{line}"), String::new());
        }
    }
    out
}

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn a_settled_cluster_causes_zero_writes() {
    let ns = TestNs::new("settled").await;
    let op = Operator::start(&ns.name);
    ns.apply(&all_samples());
    await_ready::<AuthServer>(&ns, "authplane", true, None).await;
    await_ready::<ProtectedResource>(&ns, "mcp-tools", true, None).await;
    await_ready::<OAuthClient>(&ns, "cli", true, None).await;
    await_ready::<OAuthClient>(&ns, "backend", true, None).await;
    eventually("config with 2 clients", Duration::from_secs(30), || async {
        let s: AuthServer = ns.api().get("authplane").await.ok()?;
        (s.status?.clients == 2).then_some(())
    })
    .await;
    // Let the last debounced reconcile and watch events land.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let before = versions(&ns).await;
    let writes_before = op.writes().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = versions(&ns).await;
    let writes_after = op.writes().await;
    assert_eq!(before, after, "objects changed in a settled cluster");
    assert_eq!(writes_before, writes_after, "the operator wrote in a settled cluster:\n{}", op.metrics_text().await);
    println!("settled: {} objects, {} operator writes before settling, 0 after", before.len(), writes_before);
}
