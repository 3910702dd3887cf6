//! Faults: deleted children come back; an operator killed mid-reconcile
//! converges after a restart without changing generated secrets or keys.

use std::time::Duration;

use authplane_crds::{AuthServer, OAuthClient};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Resource;

use crate::helpers::*;

async fn recreated<K>(ns: &TestNs, name: &str)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = ns.api::<K>();
    let uid = api.get(name).await.unwrap().meta().uid.clone();
    delete::<K>(ns, name).await;
    eventually(&format!("{} {name} to come back", K::kind(&())), Duration::from_secs(30), || {
        let api = api.clone();
        let uid = uid.clone();
        async move {
            let o = api.get_opt(name).await.ok()??;
            (o.meta().uid != uid && o.meta().deletion_timestamp.is_none()).then_some(())
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn deleted_children_are_recreated() {
    let ns = TestNs::new("repair").await;
    let _op = Operator::start(&ns.name);
    ns.apply(&all_samples());
    await_ready::<AuthServer>(&ns, "authplane", true, None).await;
    await_ready::<OAuthClient>(&ns, "backend", true, None).await;

    recreated::<Secret>(&ns, "authplane-config").await;
    recreated::<Deployment>(&ns, "authplane").await;
    recreated::<Service>(&ns, "authplane").await;

    // A deleted credential Secret is recreated; the old secret is gone with
    // it, so a new one is generated (and the config gets its digest).
    let old = secret_data(&secret(&ns, "backend-oauth-client").await)["client_secret"].clone();
    recreated::<Secret>(&ns, "backend-oauth-client").await;
    let new = secret_data(&secret(&ns, "backend-oauth-client").await)["client_secret"].clone();
    assert_ne!(old, new);
}

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn an_operator_killed_mid_reconcile_converges_after_restart() {
    let ns = TestNs::new("restart").await;
    let op = Operator::start(&ns.name);
    ns.apply(&all_samples());
    await_ready::<OAuthClient>(&ns, "backend", true, None).await;
    let server: AuthServer = await_object(&ns, "authplane").await;
    let kid = server.status.and_then(|s| s.current_kid).unwrap();
    let creds = secret_data(&secret(&ns, "backend-oauth-client").await);

    // A burst of new clients, and a kill while the operator works on them.
    let burst: String = (0..20)
        .map(|i| sample("oauthclient-confidential.yaml").replace("name: backend", &format!("name: burst-{i}")))
        .collect::<Vec<_>>()
        .join("\n---\n");
    ns.apply(&burst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    op.kill();

    let op = Operator::start(&ns.name);
    for i in 0..20 {
        await_ready::<OAuthClient>(&ns, &format!("burst-{i}"), true, None).await;
    }
    eventually("config with 22 clients", Duration::from_secs(60), || async {
        let s: AuthServer = ns.api().get("authplane").await.ok()?;
        (s.status?.clients == 22).then_some(())
    })
    .await;
    // Nothing generated twice: same key, same secret.
    let after: AuthServer = ns.api().get("authplane").await.unwrap();
    assert_eq!(after.status.unwrap().current_kid.unwrap(), kid);
    assert_eq!(secret_data(&secret(&ns, "backend-oauth-client").await), creds);
    drop(op);
}

async fn await_object(ns: &TestNs, name: &str) -> AuthServer {
    await_ready::<AuthServer>(ns, name, true, None).await;
    ns.api().get(name).await.unwrap()
}
