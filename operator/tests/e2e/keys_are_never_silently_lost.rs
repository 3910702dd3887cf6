//! Signing keys: a corrupt entry is removed (a hand edit cannot pin it), a
//! damaged or deleted key Secret is restored from the retained copy, and a
//! loss that cannot be repaired says so loudly.

use std::time::Duration;

use authplane_crds::AuthServer;
use k8s_openapi::api::core::v1::Secret;

use crate::helpers::*;

async fn current_kid(ns: &TestNs) -> String {
    await_ready::<AuthServer>(ns, "authplane", true, None).await;
    let a: AuthServer = ns.api().get("authplane").await.unwrap();
    a.status.unwrap().current_kid.unwrap()
}

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn corrupt_and_deleted_keys_are_repaired_or_reported() {
    let ns = TestNs::new("keys").await;
    let op = Operator::start(&ns.name);
    ns.apply(&format!("{}\n---\n{}", sample("authserver.yaml"), sample("protectedresource.yaml")));
    let kid = current_kid(&ns).await;
    let file = format!("{kid}.json");
    let retained = secret(&ns, "authplane-signing-keys-retained").await;
    assert!(secret_data(&retained).contains_key(&file), "the retained copy holds the key");
    assert!(retained.metadata.owner_references.is_none(), "the retained copy survives the AuthServer");

    // Every KeysReady (status, reason) the AuthServer goes through, from a
    // watch (the False state lasts until the next reconcile re-reads the
    // Secret, about 2 s: too short to catch by polling).
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let watch = {
        use futures_util::StreamExt;
        let seen = seen.clone();
        let api: kube::Api<AuthServer> = ns.api();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(kube::runtime::watcher::watch_object(api, "authplane"));
            while let Some(Ok(Some(a))) = stream.next().await {
                if let Some(c) = a.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "KeysReady")) {
                    let mut v = seen.lock().unwrap();
                    if v.last() != Some(&(c.status.clone(), c.reason.clone())) {
                        v.push((c.status, c.reason));
                    }
                }
            }
        })
    };

    eventually("the watch to start", Duration::from_secs(10), || async {
        (!seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    // A stray corrupt entry added by hand (another field manager owns it).
    let (ok, out) = ns.kubectl(&[
        "patch",
        "secret",
        "authplane-signing-keys",
        "--type=merge",
        "-p",
        r#"{"data":{"junk.json":"bm90IGEga2V5"}}"#,
    ]);
    assert!(ok, "{out}");
    eventually("junk.json to be removed", Duration::from_secs(30), || async {
        let s: Secret = ns.api().get("authplane-signing-keys").await.ok()?;
        (!secret_data(&s).contains_key("junk.json")).then_some(())
    })
    .await;
    await_event(&ns, "AuthServer", "authplane", "InvalidSigningKey").await;
    // Flagged while it was there, and True again only once a fresh read of
    // the Secret found valid keys alone.
    eventually("KeysReady False InvalidSigningKey, then True", Duration::from_secs(30), || async {
        let v = seen.lock().unwrap().clone();
        let flagged = v.iter().position(|(s, r)| s == "False" && r == "InvalidSigningKey")?;
        v[flagged..].iter().any(|(s, _)| s == "True").then_some(())
    })
    .await;
    let c = authserver_condition(&ns, "authplane", "KeysReady").await.unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "KeySigning"), "{}", c.message);
    watch.abort();

    // The signing key itself corrupted: restored from the retained copy, the
    // same key keeps signing (tokens in flight still verify).
    let (ok, out) = ns.kubectl(&[
        "patch",
        "secret",
        "authplane-signing-keys",
        "--type=merge",
        "-p",
        &format!(r#"{{"data":{{"{file}":"e30="}}}}"#),
    ]);
    assert!(ok, "{out}");
    await_event(&ns, "AuthServer", "authplane", "SigningKeysRestored").await;
    let keys = eventually("the key to be valid again", Duration::from_secs(30), || async {
        let s: Secret = ns.api().get("authplane-signing-keys").await.ok()?;
        let d = secret_data(&s);
        (d.get(&file)? != b"{}").then_some(d)
    })
    .await;
    assert_eq!(keys.keys().collect::<Vec<_>>(), vec![&file]);
    assert_eq!(current_kid(&ns).await, kid);
    // A real server starts on it (a corrupt file would make it exit).
    let server = Server::start(&pod_config(&ns, "authplane").await, &keys);
    assert_eq!(jwks_kids(&server.get_json("/.well-known/jwks.json").await), vec![kid.clone()]);
    drop(server);

    // The key Secret deleted: recreated with the same key.
    let uid = secret(&ns, "authplane-signing-keys").await.metadata.uid;
    delete::<Secret>(&ns, "authplane-signing-keys").await;
    let keys = eventually("the key Secret to come back", Duration::from_secs(30), || async {
        let s: Secret = ns.api().get_opt("authplane-signing-keys").await.ok()??;
        (s.metadata.uid != uid).then(|| secret_data(&s))
    })
    .await;
    assert!(keys.contains_key(&file), "the recreated Secret holds the same key");
    assert_eq!(current_kid(&ns).await, kid);
    let c = authserver_condition(&ns, "authplane", "KeysReady").await.unwrap();
    assert_eq!(c.status, "True");

    // Both gone: a new key, and KeysReady=False says what was lost. Deleted
    // while the operator is stopped: a reconcile between two deletions
    // would (rightly) rebuild one from the other.
    drop(op);
    delete::<Secret>(&ns, "authplane-signing-keys-retained").await;
    delete::<Secret>(&ns, "authplane-signing-keys").await;
    let _op = Operator::start(&ns.name);
    let c = eventually("KeysReady=False SigningKeysLost", Duration::from_secs(30), || async {
        authserver_condition(&ns, "authplane", "KeysReady").await.filter(|c| c.reason == "SigningKeysLost")
    })
    .await;
    assert_eq!(c.status, "False");
    assert!(c.message.contains(&kid), "{}", c.message);
    await_event(&ns, "AuthServer", "authplane", "SigningKeysLost").await;
    let a: AuthServer = ns.api().get("authplane").await.unwrap();
    let st = a.status.unwrap();
    assert_ne!(st.current_kid.as_deref(), Some(kid.as_str()));
    assert_eq!(ready(&st.conditions).unwrap().status, "False");
    // The retained copy is back, holding the new key.
    let retained = secret(&ns, "authplane-signing-keys-retained").await;
    assert!(secret_data(&retained).contains_key(&format!("{}.json", st.current_kid.unwrap())));
}
