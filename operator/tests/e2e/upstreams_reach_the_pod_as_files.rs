//! `AuthServer.spec.upstreams` on a real control plane: the rendered config
//! names each upstream's client secret as the file the pod mounts (the value
//! never appears in the config Secret), the operator creates the broker's key
//! Secret (no owner, so deleting the AuthServer keeps stored grants
//! readable) and rotates it by putting a new key on top, a real authserver
//! loads the config with those files, an
//! OAuthClient brokering an upstream the AuthServer lacks is refused with a
//! reason, and CEL refuses an upstream without issuer or endpoints.

use std::time::Duration;

use authplane_crds::{AuthServer, OAuthClient};
use k8s_openapi::api::core::v1::Secret;

use crate::helpers::*;

const SECRET_VALUE: &str = "upstream-client-secret-9f3c2a7e";

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn upstream_secrets_reach_the_pod_as_files_and_never_the_config() {
    let ns = TestNs::new("upstreams").await;
    let _op = Operator::start(&ns.name);
    let server = sample("authserver.yaml").replace(
        "  oauth:\n",
        "  upstreams:\n    - id: corp\n      displayName: Corp SSO\n      issuer: https://idp.example.com\n      clientId: authplane\n      clientSecretRef: { name: corp-oidc, key: client-secret }\n      storeTokens: true\n  broker:\n    keyRotationInterval: 4s\n  oauth:\n",
    );
    assert!(server.contains("upstreams:"), "the sample changed shape: {server}");
    let broker = |name: &str, upstream: &str| {
        format!(
            "apiVersion: authplane.io/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: {name} }}\nspec:\n  authServerRef: {{ name: authplane }}\n  type: confidential\n  grantTypes: [client_credentials]\n  allowedResources: [https://mcp.example.com/mcp]\n  brokerUpstreams: [{upstream}]\n"
        )
    };
    ns.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: corp-oidc }}\nstringData: {{ client-secret: {SECRET_VALUE} }}\n---\n{server}\n---\n{}\n---\n{}\n---\n{}",
        sample("protectedresource.yaml"),
        broker("corp-tools", "corp"),
        broker("dex-tools", "dex"),
    ));
    await_ready::<AuthServer>(&ns, "authplane", true, None).await;
    await_ready::<OAuthClient>(&ns, "corp-tools", true, None).await;
    let refused = await_ready::<OAuthClient>(&ns, "dex-tools", false, Some("UnknownUpstream")).await;
    assert!(refused.message.contains("dex"), "{}", refused.message);

    let config = eventually("config with the broker client", Duration::from_secs(30), || async {
        let c = pod_config(&ns, "authplane").await;
        (c.text().contains("broker_upstreams")).then_some(c)
    })
    .await;
    let text = config.text();
    assert!(text.contains("client_secret_file: /etc/authplane/upstreams/corp/client-secret"), "{text}");
    assert!(text.contains("encryption_key_file: /etc/authplane/broker/broker.keys"), "{text}");
    assert!(!text.contains(SECRET_VALUE), "the client secret is in the config Secret in clear");
    assert!(!text.contains("dex-tools") && !text.contains("demo.dex-tools"), "the refused client is not in the config");

    // The broker key: created once, no owner.
    let keys_secret: Secret = secret(&ns, "authplane-broker-keys").await;
    assert!(keys_secret.metadata.owner_references.is_none(), "owned: deleting the AuthServer would lose it");
    let broker_keys = secret_data(&keys_secret)["broker.keys"].clone();

    // Rotation: a new key goes on top every keyRotationInterval (4 s here);
    // the older line stays to decrypt rows not yet re-encrypted.
    let first_line = String::from_utf8_lossy(&broker_keys).lines().find(|l| l.starts_with('k')).unwrap().to_owned();
    let rotated = eventually("a second broker key", Duration::from_secs(30), || async {
        let s: Secret = ns.api().get("authplane-broker-keys").await.ok()?;
        let text = String::from_utf8_lossy(&secret_data(&s)["broker.keys"]).into_owned();
        let keys: Vec<String> = text.lines().filter(|l| l.starts_with('k')).map(str::to_owned).collect();
        (keys.len() >= 2).then_some(keys)
    })
    .await;
    assert_ne!(rotated[0], first_line, "the new key is on top");
    assert!(rotated.contains(&first_line), "the old key stays: {rotated:?}");
    let broker_keys = secret_data(&secret(&ns, "authplane-broker-keys").await)["broker.keys"].clone();

    // A real server with the files kubelet would mount where the config says.
    let signing = secret_data(&secret(&ns, "authplane-signing-keys").await);
    let upstream_secret = secret_data(&secret(&ns, "corp-oidc").await)["client-secret"].clone();
    let s = Server::try_start_with(
        &config,
        &signing,
        &[("client-secret", upstream_secret), ("broker.keys", broker_keys)],
        &[
            ("AUTHPLANE_UPSTREAMS_CORP_CLIENT_SECRET_FILE", "{dir}/client-secret"),
            ("AUTHPLANE_BROKER_ENCRYPTION_KEY_FILE", "{dir}/broker.keys"),
        ],
    )
    .unwrap_or_else(|out| panic!("authserver refused the rendered config:\n{out}"));
    let meta = s.get_json("/.well-known/oauth-authorization-server").await;
    let grants = meta["grant_types_supported"].to_string();
    assert!(grants.contains("urn:ietf:params:oauth:grant-type:token-exchange"), "{grants}");
    drop(s);

    // CEL: an upstream with neither issuer nor endpoints is refused at the API.
    let bad = server.replace("      issuer: https://idp.example.com\n", "");
    let (ok, err) = ns.kubectl_stdin(&["apply", "-f", "-"], &bad);
    assert!(!ok, "an upstream without issuer or endpoints must be refused: {err}");
    assert!(err.contains("set issuer (OpenID Connect), or authorizationEndpoint"), "{err}");
}
