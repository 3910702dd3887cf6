//! The config and keys copied out of the Secrets start a real authserver:
//! discovery matches the CRs, the generated client secret works, and a scope
//! change on a ProtectedResource reaches the running server by hot reload.

use std::time::Duration;

use authplane_crds::{AuthServer, OAuthClient, ProtectedResource};

use crate::helpers::*;

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn rendered_config_runs_a_real_server_and_follows_scope_changes() {
    let ns = TestNs::new("server").await;
    let _op = Operator::start(&ns.name);
    ns.apply(&all_samples());
    await_ready::<AuthServer>(&ns, "authplane", true, None).await;
    await_ready::<OAuthClient>(&ns, "backend", true, None).await;

    // Wait until the config holds both clients (the AuthServer is debounced).
    let config = eventually("config with 2 clients", Duration::from_secs(30), || async {
        let s: AuthServer = ns.api().get("authplane").await.ok()?;
        (s.status?.clients == 2).then_some(())?;
        Some(pod_config(&ns, "authplane").await)
    })
    .await;
    assert_eq!(config.clients(), 2, "the registry shards hold both clients");
    let keys = secret_data(&secret(&ns, "authplane-signing-keys").await);
    let mut server = Server::start(&config, &keys);

    let meta = server.get_json("/.well-known/oauth-authorization-server").await;
    assert_eq!(meta["issuer"], "https://auth.example.com");
    assert_eq!(meta["scopes_supported"], serde_json::json!(["tools/read", "tools/write"]));
    let jwks = server.get_json("/.well-known/jwks.json").await;
    let kid = ns.api::<AuthServer>().get("authplane").await.unwrap().status.unwrap().current_kid.unwrap();
    assert_eq!(jwks_kids(&jwks), vec![kid.clone()]);

    // The operator's generated secret authenticates; the server only has its digest.
    let creds = secret_data(&secret(&ns, "backend-oauth-client").await);
    let id = String::from_utf8(creds["client_id"].clone()).unwrap();
    let client_secret = String::from_utf8(creds["client_secret"].clone()).unwrap();
    let token = server.client_credentials(&id, &client_secret, "https://mcp.example.com/mcp", "tools/read").await;
    assert_eq!(verify(&token, &jwks).unwrap(), kid);

    // Change the resource's scopes → its registry shard changes → copy it (as
    // kubelet would) → the running server advertises the new scopes. Ready
    // comes back only once the shard holds the change.
    ns.apply(
        &sample("protectedresource.yaml")
            .replace("scopes: [tools/read, tools/write]", "scopes: [tools/read, tools/write, tools/admin]"),
    );
    eventually("the resource's status to follow the edit", Duration::from_secs(30), || async {
        let r: ProtectedResource = ns.api().get("mcp-tools").await.ok()?;
        let st = r.status?;
        (st.observed_generation == r.metadata.generation && ready(&st.conditions)?.status == "True").then_some(())
    })
    .await;
    let config = pod_config(&ns, "authplane").await;
    assert!(config.text().contains("tools/admin"), "Ready=True but the config lacks the change");
    server.write_config(&config);
    eventually("server to advertise tools/admin", Duration::from_secs(15), || async {
        let meta = server.get_json("/.well-known/oauth-authorization-server").await;
        (meta["scopes_supported"] == serde_json::json!(["tools/admin", "tools/read", "tools/write"])).then_some(())
    })
    .await;
}
