//! The registry reaches the pods in shards: a registry larger than the shard
//! limit says so in conditions and Events instead of pretending, Ready means
//! "in the config the pods read", and a deletion always takes effect.

use std::time::Duration;

use authplane_crds::{AuthServer, OAuthClient};

use crate::helpers::*;

fn clients(n: usize) -> String {
    (0..n)
        .map(|i| {
            sample("oauthclient-confidential.yaml")
                .replace("name: backend", &format!("name: c-{i:03}"))
                .replace("clientName: Example backend", &format!("clientName: Client number {i} with a long name"))
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

async fn client_ready(ns: &TestNs, name: &str) -> Option<(String, String)> {
    let c: OAuthClient = ns.api().get(name).await.ok()?;
    let r = ready(&c.status?.conditions)?.clone();
    Some((r.status, r.reason))
}

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn an_oversized_registry_is_flagged_and_a_deletion_still_takes_effect() {
    let ns = TestNs::new("oversized").await;
    // Two shards of 4 KiB: room for a handful of clients each.
    let _op = Operator::start_with(&ns.name, &["--registry-shards", "2", "--max-shard-bytes", "4096"]);
    let n = 30;
    ns.apply(&format!("{}\n---\n{}\n---\n{}", sample("authserver.yaml"), sample("protectedresource.yaml"), clients(n)));

    // The AuthServer says what happened, with a Warning Event.
    let c = eventually("ConfigRendered=False ConfigTooLarge", Duration::from_secs(60), || async {
        authserver_condition(&ns, "authplane", "ConfigRendered").await.filter(|c| c.reason == "ConfigTooLarge")
    })
    .await;
    assert_eq!(c.status, "False");
    assert!(c.message.contains("objects left out"), "{}", c.message);
    await_event(&ns, "AuthServer", "authplane", "ConfigTooLarge").await;

    // Every client settles as Registered or ConfigTooLarge, and Registered
    // means exactly "its client_id is in the config the pods read".
    let names: Vec<String> = (0..n).map(|i| format!("c-{i:03}")).collect();
    let states = eventually("every client settled", Duration::from_secs(60), || async {
        let mut out = Vec::new();
        for name in &names {
            let (status, reason) = client_ready(&ns, name).await?;
            if reason != "Registered" && reason != "ConfigTooLarge" {
                return None;
            }
            out.push((name.clone(), status == "True"));
        }
        Some(out)
    })
    .await;
    let config = pod_config(&ns, "authplane").await;
    let text = config.text();
    let in_config: Vec<&String> = states.iter().filter(|(_, r)| *r).map(|(n, _)| n).collect();
    let left_out: Vec<&String> = states.iter().filter(|(_, r)| !*r).map(|(n, _)| n).collect();
    assert!(!in_config.is_empty() && !left_out.is_empty(), "{states:?}");
    for name in &in_config {
        assert!(text.contains(&format!("client_id: {}.{name}\n", ns.name)), "{name} Ready but not in the config");
    }
    for name in &left_out {
        assert!(!text.contains(&format!("client_id: {}.{name}\n", ns.name)), "{name} not Ready but in the config");
    }
    for (k, v) in &config.registry {
        assert!(v.len() <= 4096, "{k} is {} bytes", v.len());
    }

    // A real server on that config: a Registered client gets a token.
    let keys = secret_data(&secret(&ns, "authplane-signing-keys").await);
    let mut server = Server::start(&config, &keys);
    let victim = in_config[0].clone();
    let creds = secret_data(&secret(&ns, &format!("{victim}-oauth-client")).await);
    let id = String::from_utf8(creds["client_id"].clone()).unwrap();
    let client_secret = String::from_utf8(creds["client_secret"].clone()).unwrap();
    server.client_credentials(&id, &client_secret, "https://mcp.example.com/mcp", "tools/read").await;

    // Delete it: the registry is still over its limit, and the deletion
    // still reaches the config; the server refuses the client after reload.
    delete::<OAuthClient>(&ns, &victim).await;
    let config = eventually("the deleted client to leave the config", Duration::from_secs(30), || async {
        let c = pod_config(&ns, "authplane").await;
        (!c.text().contains(&format!("client_id: {id}\n"))).then_some(c)
    })
    .await;
    server.write_config(&config);
    server.wait_log("config reloaded", Duration::from_secs(15));
    let refused = server.try_client_credentials(&id, &client_secret, "https://mcp.example.com/mcp", "tools/read").await;
    assert!(refused.is_err(), "a deleted client still gets tokens");
    let a: AuthServer = ns.api().get("authplane").await.unwrap();
    assert_eq!(ready(&a.status.unwrap().conditions).unwrap().status, "True", "the AuthServer itself is in place");
}

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn a_refused_write_is_reported_backed_off_and_removals_still_land() {
    let ns = TestNs::new("refused").await;
    let _op = Operator::start_with(&ns.name, &["--registry-shards", "1"]);
    ns.apply(&format!("{}\n---\n{}\n---\n{}", sample("authserver.yaml"), sample("protectedresource.yaml"), clients(3)));
    for i in 0..3 {
        await_ready::<OAuthClient>(&ns, &format!("c-{i:03}"), true, Some("Registered")).await;
    }
    // A real admission refusal: a ValidatingAdmissionPolicy that rejects the
    // registry shard once it is larger than now by more than half a client.
    let shard = secret(&ns, "authplane-registry-00").await;
    let held = shard.data.as_ref().unwrap()["registry-00.yaml"].0.len();
    let entry = held / 3;
    let limit = (held + entry / 2) * 4 / 3 + 4; // in base64 characters
    let policy = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {ns}-small-shards
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [secrets]
  validations:
    - expression: "!has(object.data) || !('registry-00.yaml' in object.data) || size(object.data['registry-00.yaml']) <= {limit}"
      message: registry shard too large for this test
      reason: Invalid
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {ns}-small-shards
spec:
  policyName: {ns}-small-shards
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {ns}
"#,
        ns = ns.name
    );
    let (ok, out) = ns.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &policy);
    assert!(ok, "{out}");
    // Policies take effect asynchronously; give it a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes_before = _op.writes().await;

    // Two more clients make the shard too large for the policy: the write
    // is refused, and everybody hears about it.
    ns.apply(&clients(5));
    let c = eventually("ConfigRendered=False with the API's reason", Duration::from_secs(60), || async {
        authserver_condition(&ns, "authplane", "ConfigRendered").await.filter(|c| c.status == "False")
    })
    .await;
    assert_eq!(c.reason, "Invalid", "{c:?}");
    assert!(c.message.contains("registry shard too large for this test"), "{}", c.message);
    await_event(&ns, "AuthServer", "authplane", "Invalid").await;
    let r = await_ready::<OAuthClient>(&ns, "c-003", false, Some("PendingConfig")).await;
    assert!(r.message.contains("ConfigRendered=False"), "{}", r.message);
    let a: AuthServer = ns.api().get("authplane").await.unwrap();
    assert_eq!(ready(&a.status.unwrap().conditions).unwrap().status, "False");

    // The refused payload is not sent again while nothing changes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = _op.writes().await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = _op.writes().await;
    assert!(after - settled <= 1, "resent a refused payload: {} writes", after - settled);
    assert!(settled > writes_before);

    // Deleting a client still takes effect although the shard as wanted
    // (4 clients) is still refused: it falls back to what it held, minus
    // the removal.
    delete::<OAuthClient>(&ns, "c-000").await;
    eventually("c-000 to leave the config", Duration::from_secs(30), || async {
        let c = pod_config(&ns, "authplane").await;
        (!c.text().contains(&format!("client_id: {}.c-000\n", ns.name))).then_some(())
    })
    .await;
    // The status follows the Secret write in the same reconcile: wait for it.
    let c = eventually("ConfigRendered says the deletion took effect", Duration::from_secs(30), || async {
        authserver_condition(&ns, "authplane", "ConfigRendered")
            .await
            .filter(|c| c.message.contains("deletions still took effect"))
    })
    .await;
    assert_eq!(c.status, "False");
    await_ready::<OAuthClient>(&ns, "c-001", true, Some("Registered")).await;

    // With room again, the pending clients get in.
    delete::<OAuthClient>(&ns, "c-001").await;
    await_ready::<OAuthClient>(&ns, "c-003", true, Some("Registered")).await;
    await_ready::<OAuthClient>(&ns, "c-004", true, Some("Registered")).await;
    let c = eventually("ConfigRendered=True", Duration::from_secs(30), || async {
        authserver_condition(&ns, "authplane", "ConfigRendered").await.filter(|c| c.status == "True")
    })
    .await;
    assert_eq!(c.reason, "Rendered");
    let _ = ns.kubectl(&["delete", "validatingadmissionpolicybinding", &format!("{}-small-shards", ns.name)]);
    let _ = ns.kubectl(&["delete", "validatingadmissionpolicy", &format!("{}-small-shards", ns.name)]);
}
