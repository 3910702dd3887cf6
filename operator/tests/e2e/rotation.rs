//! Rotation with a short interval: JWKS serves two keys, then one; a token
//! minted before the rotation still verifies during the overlap.

use std::time::Duration;

use authplane_crds::{AuthServer, OAuthClient};
use k8s_openapi::api::core::v1::Secret;

use crate::helpers::*;

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn rotation_publishes_then_retires_and_old_tokens_verify() {
    let ns = TestNs::new("rotation").await;
    let _op = Operator::start(&ns.name);
    // A new key every 40 s, published 8 s before it signs, the old one kept
    // 12 s after: 40 > 8 + 12, as the server requires.
    let server_yaml = sample("authserver.yaml")
        .replace("rotationInterval: 30d", "rotationInterval: 40s")
        .replace("publishAhead: 6m", "publishAhead: 8s\n    overlap: 12s");
    ns.apply(&format!(
        "{server_yaml}\n---\n{}\n---\n{}",
        sample("protectedresource.yaml"),
        sample("oauthclient-confidential.yaml")
    ));
    await_ready::<AuthServer>(&ns, "authplane", true, None).await;
    await_ready::<OAuthClient>(&ns, "backend", true, None).await;
    let config = eventually("config with the client", Duration::from_secs(30), || async {
        let s: AuthServer = ns.api().get("authplane").await.ok()?;
        (s.status?.clients == 1).then_some(())?;
        Some(pod_config(&ns, "authplane").await)
    })
    .await;
    let keys_api = ns.api::<Secret>();
    let keys = keys_api.get("authplane-signing-keys").await.unwrap();
    let mut server = Server::start(&config, &secret_data(&keys));
    let mut synced_rv = keys.metadata.resource_version.clone();

    let creds = secret_data(&secret(&ns, "backend-oauth-client").await);
    let id = String::from_utf8(creds["client_id"].clone()).unwrap();
    let client_secret = String::from_utf8(creds["client_secret"].clone()).unwrap();
    let old_token = server.client_credentials(&id, &client_secret, "https://mcp.example.com/mcp", "tools/read").await;
    let first = verify(&old_token, &server.get_json("/.well-known/jwks.json").await).unwrap();

    // Play kubelet: copy the key Secret into the directory on every change,
    // and watch JWKS go 1 → 2 → 1 keys.
    let mut saw_two = false;
    let mut verified_in_overlap = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "rotation did not complete (saw two keys: {saw_two})");
        let keys = keys_api.get("authplane-signing-keys").await.unwrap();
        if keys.metadata.resource_version != synced_rv {
            server.write_keys(&secret_data(&keys));
            synced_rv = keys.metadata.resource_version.clone();
        }
        let jwks = server.get_json("/.well-known/jwks.json").await;
        let kids = jwks_kids(&jwks);
        if kids.len() == 2 {
            saw_two = true;
            assert!(kids.contains(&first));
            // The pre-rotation token still verifies while both are published.
            assert_eq!(verify(&old_token, &jwks).unwrap(), first);
            // Once the new key signs, new tokens carry it.
            let status = ns.api::<AuthServer>().get("authplane").await.unwrap().status.unwrap();
            if status.current_kid.as_deref() != Some(first.as_str()) {
                let new_token =
                    server.client_credentials(&id, &client_secret, "https://mcp.example.com/mcp", "tools/read").await;
                let kid = verify(&new_token, &jwks).unwrap();
                if kid != first {
                    verified_in_overlap = true;
                }
            }
        }
        if saw_two && kids.len() == 1 {
            assert_ne!(kids[0], first, "the old key is the one retired");
            assert!(verify(&old_token, &jwks).is_err(), "retired key no longer verifies");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(verified_in_overlap, "never saw the new key signing while the old one was still published");
    // The server hid the retired key on schedule; the operator removes it
    // from the Secret at the same moment (its requeue), give or take a second.
    eventually("the retired key to leave the Secret and the status", Duration::from_secs(15), || async {
        let keys = secret_data(&keys_api.get("authplane-signing-keys").await.ok()?);
        let status = ns.api::<AuthServer>().get("authplane").await.ok()?.status?;
        (keys.len() == 1 && status.signing_keys.len() == 1 && status.next_rotation.is_some()).then_some(())
    })
    .await;
}
