//! A client id or a credential Secret is never taken over silently: a
//! waiting duplicate needs an explicit adoption, and a Secret another object
//! controls is refused.

use std::time::Duration;

use authplane_crds::OAuthClient;

use crate::helpers::*;

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn a_freed_client_id_needs_adoption_and_a_foreign_secret_is_refused() {
    let ns = TestNs::new("takeover").await;
    let _op = Operator::start(&ns.name);
    let backend = sample("oauthclient-confidential.yaml")
        .replace("  type: confidential", "  clientId: shared-id\n  type: confidential");
    let impostor = sample("oauthclient-public.yaml")
        .replace("name: cli", "name: impostor")
        .replace("  type: public", "  clientId: shared-id\n  type: public")
        .replace("http://127.0.0.1/callback", "https://evil.example.com/callback");
    ns.apply(&format!("{}\n---\n{}\n---\n{backend}", sample("authserver.yaml"), sample("protectedresource.yaml")));
    await_ready::<OAuthClient>(&ns, "backend", true, Some("Registered")).await;
    ns.apply(&impostor);
    await_ready::<OAuthClient>(&ns, "impostor", false, Some("DuplicateClientId")).await;

    // The holder goes away: the waiting duplicate does not inherit the id.
    delete::<OAuthClient>(&ns, "backend").await;
    let c = await_ready::<OAuthClient>(&ns, "impostor", false, Some("AdoptionRequired")).await;
    assert!(c.message.contains("authplane.io/adopt-client-id=shared-id"), "{}", c.message);
    await_event(&ns, "OAuthClient", "impostor", "AdoptionRequired").await;
    eventually("shared-id to leave the config", Duration::from_secs(30), || async {
        (!pod_config(&ns, "authplane").await.text().contains("client_id: shared-id\n")).then_some(())
    })
    .await;
    // Stays out while nobody adopts it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!pod_config(&ns, "authplane").await.text().contains("client_id: shared-id\n"));

    // An explicit adoption hands it over, with an Event.
    let (ok, out) = ns.kubectl(&["annotate", "oauthclient", "impostor", "authplane.io/adopt-client-id=shared-id"]);
    assert!(ok, "{out}");
    await_ready::<OAuthClient>(&ns, "impostor", true, Some("Registered")).await;
    await_event(&ns, "OAuthClient", "impostor", "ClientIdAdopted").await;
    assert!(pod_config(&ns, "authplane").await.text().contains("client_id: shared-id\n"));

    // A secretName pointing at another client's Secret is refused, and the
    // Secret is left alone.
    ns.apply(&sample("oauthclient-confidential.yaml").replace("name: backend", "name: owner"));
    await_ready::<OAuthClient>(&ns, "owner", true, Some("Registered")).await;
    let before = secret(&ns, "owner-oauth-client").await;
    ns.apply(
        &sample("oauthclient-confidential.yaml")
            .replace("name: backend", "name: thief")
            .replace("  type: confidential", "  secretName: owner-oauth-client\n  type: confidential"),
    );
    let c = await_ready::<OAuthClient>(&ns, "thief", false, Some("SecretConflict")).await;
    assert!(c.message.contains("OAuthClient owner"), "{}", c.message);
    assert!(!pod_config(&ns, "authplane").await.text().contains(&format!("client_id: {}.thief\n", ns.name)));
    let after = secret(&ns, "owner-oauth-client").await;
    assert_eq!(before.data, after.data);
    assert_eq!(before.metadata.owner_references, after.metadata.owner_references);
}
