//! `kubectl apply -f config/samples/` → every object Ready; Secrets,
//! Deployment, Service and ServiceMonitor exactly as specified.

use std::time::Duration;

use authplane_crds::{AuthServer, OAuthClient, ProtectedResource};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use crate::helpers::*;

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn samples_become_ready_with_every_owned_object() {
    let ns = TestNs::new("samples").await;
    let _op = Operator::start(&ns.name);
    let (ok, out) = ns.kubectl(&["apply", "-f", crate::helpers::repo_root().join("config/samples").to_str().unwrap()]);
    assert!(ok, "{out}");

    await_ready::<AuthServer>(&ns, "authplane", true, Some("Reconciled")).await;
    await_ready::<ProtectedResource>(&ns, "mcp-tools", true, Some("Registered")).await;
    await_ready::<OAuthClient>(&ns, "cli", true, Some("Registered")).await;
    await_ready::<OAuthClient>(&ns, "backend", true, Some("Registered")).await;

    // The clients are Registered once their shard holds them; the
    // AuthServer's counts follow in the status write of that same reconcile.
    let status = eventually("the AuthServer counts 1 resource and 2 clients", Duration::from_secs(30), || async {
        let server: AuthServer = ns.api().get("authplane").await.ok()?;
        server.status.filter(|s| (s.resources, s.clients) == (1, 2))
    })
    .await;
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.issuer.as_deref(), Some("https://auth.example.com"));
    assert_eq!((status.resources, status.clients), (1, 2));
    let kid = status.current_kid.clone().unwrap();
    assert!(status.next_rotation.is_some());
    for t in ["Ready", "ConfigRendered", "KeysReady", "Available"] {
        assert!(status.conditions.iter().any(|c| c.type_ == t), "{t} missing");
    }

    // Secrets: the config file plus the registry shards, loaded as the
    // server does (`--registry-dir`).
    let pod = pod_config(&ns, "authplane").await;
    let yaml = pod.text();
    let mut loaded =
        authplane_core::config::Config::load(Some(("config.yaml", &String::from_utf8_lossy(&pod.config))), vec![])
            .unwrap();
    for fragment in pod.registry.values() {
        let f: serde_json::Value = serde_saphyr::from_str(&String::from_utf8_lossy(fragment)).unwrap();
        loaded.config.resources.extend(serde_json::from_value::<Vec<_>>(f["resources"].clone()).unwrap());
        loaded.config.clients.extend(serde_json::from_value::<Vec<_>>(f["clients"].clone()).unwrap());
    }
    loaded.config.validate(&[]).unwrap();
    let loaded = loaded.config;
    assert_eq!(loaded.scopes_supported(), vec!["tools/read", "tools/write"]);
    assert_eq!(loaded.clients.len(), 2);
    let keys = secret_data(&secret(&ns, "authplane-signing-keys").await);
    assert_eq!(keys.keys().cloned().collect::<Vec<_>>(), vec![format!("{kid}.json")]);
    let backend = secret_data(&secret(&ns, "backend-oauth-client").await);
    assert_eq!(backend["client_id"], format!("{}.backend", ns.name).into_bytes());
    let client_secret = String::from_utf8(backend["client_secret"].clone()).unwrap();
    assert_eq!(client_secret.len(), 43, "256 bits, base64url");
    assert!(!yaml.contains(&client_secret), "the server sees only the digest");
    let cli = secret_data(&secret(&ns, "cli-oauth-client").await);
    assert!(!cli.contains_key("client_secret"), "public clients have no secret");

    // Deployment.
    let d: Deployment = ns.api().get("authplane").await.unwrap();
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("AuthServer", Some(true)));
    let tpl = d.spec.template;
    assert_eq!(tpl.metadata.unwrap().labels.unwrap()["app"], "authplane");
    let pod = tpl.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("authplane/authserver:e2e"));
    let ports: Vec<_> = c.ports.iter().flatten().map(|p| (p.name.clone().unwrap(), p.container_port)).collect();
    assert_eq!(ports, vec![("http".to_owned(), 9000), ("admin".to_owned(), 9001)]);
    assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/health"));
    assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!((sc.run_as_non_root, sc.read_only_root_filesystem), (Some(true), Some(true)));
    let volumes = pod.volumes.unwrap();
    let secret_of = |v: &str| {
        volumes.iter().find(|x| x.name == v).and_then(|x| x.secret.as_ref()).and_then(|s| s.secret_name.clone())
    };
    let projected: Vec<String> = volumes
        .iter()
        .find(|x| x.name == "config")
        .and_then(|x| x.projected.as_ref())
        .and_then(|p| p.sources.clone())
        .unwrap()
        .into_iter()
        .filter_map(|s| Some(s.secret?.name))
        .collect();
    assert_eq!(projected[0], "authplane-config");
    assert_eq!(projected.len(), 17, "the config and 16 registry shards: {projected:?}");
    for name in &projected {
        secret(&ns, name).await;
    }
    assert_eq!(secret_of("signing-keys").as_deref(), Some("authplane-signing-keys"));
    assert!(c.volume_mounts.iter().flatten().all(|m| m.sub_path.is_none()));
    assert_eq!(c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0, "50m");

    // Service.
    let svc: Service = ns.api().get("authplane").await.unwrap();
    let spec = svc.spec.unwrap();
    let ports: Vec<_> = spec.ports.iter().flatten().map(|p| (p.name.clone().unwrap(), p.port)).collect();
    assert_eq!(ports, vec![("http".to_owned(), 9000), ("admin".to_owned(), 9001)]);
    assert_eq!(spec.selector.unwrap()["app"], "authplane");

    // ServiceMonitor (the e2e script installs its CRD).
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"));
    let sm =
        kube::Api::<DynamicObject>::namespaced_with(ns.client.clone(), &ns.name, &ar).get("authplane").await.unwrap();
    assert_eq!(sm.data["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(sm.data["spec"]["endpoints"][0]["interval"], "30s");
}
