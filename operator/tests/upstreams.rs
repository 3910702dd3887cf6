//! `AuthServer.spec.upstreams` and `OAuthClient.spec.brokerUpstreams`,
//! rendered without a cluster: the config the server loads names each
//! upstream's client secret as a mounted file (never its value), the broker
//! key file when an upstream keeps tokens, and the Deployment mounts the
//! referenced Secrets. A client brokering an upstream the AuthServer does not
//! have (or that keeps no tokens) is left out with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authplane_core::config::{Config, UpstreamAuthMethod};
use authplane_crds::{AuthServer, OAuthClient, ProtectedResource};
use authplane_operator::render::config::{ClientIn, ResourceIn, Verdict, broker_refusal, registry, render, to_yaml};
use authplane_operator::render::objects::{self, Owner};
use kube::Resource;

fn parse<K: Resource + serde::de::DeserializeOwned>(yaml: &str, uid: &str) -> K {
    let mut k: K = serde_saphyr::from_str(yaml).unwrap();
    k.meta_mut().namespace = Some("demo".into());
    k.meta_mut().uid = Some(uid.into());
    k
}

const SERVER: &str = r#"
apiVersion: authplane.io/v1alpha1
kind: AuthServer
metadata: { name: authplane }
spec:
  issuer: https://auth.example.com
  upstreams:
    - id: corp
      displayName: Corp SSO
      issuer: https://idp.example.com
      clientId: authplane
      clientSecretRef: { name: corp-oidc, key: client-secret }
      scopes: [openid, email, profile, offline_access]
      allowedEmailDomains: [example.com]
      storeTokens: true
    - id: github
      authorizationEndpoint: https://github.com/login/oauth/authorize
      tokenEndpoint: https://github.com/login/oauth/access_token
      userinfoEndpoint: https://api.github.com/user
      clientId: Iv1.abc
      clientSecretRef: { name: github-oauth, key: secret }
      tokenEndpointAuthMethod: client_secret_post
      claims: { subject: id, name: login }
"#;

fn client(name: &str, brokers: &str) -> OAuthClient {
    parse(
        &format!(
            "apiVersion: authplane.io/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: {name} }}\nspec:\n  authServerRef: {{ name: authplane }}\n  type: confidential\n  grantTypes: [client_credentials]\n  allowedResources: [https://mcp.example.com/mcp]\n  brokerUpstreams: [{brokers}]\n"
        ),
        &format!("uid-{name}"),
    )
}

const DIGEST: &str = "55399ce7aa8c098453b45d90b73f3a2bda3f0c96f0246f4c3d2c5c4228e9df5c";

#[test]
fn upstreams_render_with_mounted_secrets_and_a_broker_key_and_bad_brokers_are_left_out() {
    let s: AuthServer = parse(SERVER, "uid-as");
    let r: ProtectedResource = parse(
        "apiVersion: authplane.io/v1alpha1\nkind: ProtectedResource\nmetadata: { name: mcp }\nspec:\n  authServerRef: { name: authplane }\n  resource: https://mcp.example.com/mcp\n  scopes: [tools/read]\n",
        "uid-r",
    );
    let good = client("corp-tools", "corp");
    let no_tokens = client("gh-tools", "github");
    let unknown = client("dex-tools", "dex");
    let ins: Vec<ClientIn<'_>> = [&good, &no_tokens, &unknown]
        .into_iter()
        .map(|c| ClientIn {
            name: c.metadata.name.as_deref().unwrap(),
            namespace: "demo",
            created: None,
            spec: &c.spec,
            digest: Some(DIGEST.into()),
            holds_id: false,
            awaits_adoption: false,
        })
        .collect();
    let rin = ResourceIn { name: "mcp", created: None, spec: &r.spec };
    let mut reg = registry(&[rin], &ins);
    let rendered = render(&s.spec, &mut reg).unwrap();

    // Only the client brokering corp (which keeps tokens) is in the config.
    assert_eq!(reg.client_names, vec!["corp-tools"]);
    assert_eq!(reg.clients[0].broker_upstreams, vec!["corp"]);
    for name in ["gh-tools", "dex-tools"] {
        match &reg.client_verdicts[name] {
            Verdict::Rejected { reason, message } => {
                assert_eq!(*reason, "UnknownUpstream");
                assert!(message.contains("storeTokens"), "{message}");
            }
            v => panic!("{name}: {v:?}"),
        }
    }
    assert!(broker_refusal(&["corp".to_owned()], &s.spec).is_none());

    let c = &rendered.config;
    assert_eq!(c.upstreams.len(), 2);
    assert_eq!(c.upstreams[0].client_secret_file.as_deref(), Some("/etc/authplane/upstreams/corp/client-secret"));
    assert!(c.upstreams.iter().all(|u| u.client_secret.is_none()), "no secret value in the config");
    assert_eq!(c.upstreams[1].token_endpoint_auth_method, UpstreamAuthMethod::ClientSecretPost);
    assert_eq!(c.upstreams[1].claims.subject, "id");
    assert_eq!(c.broker.encryption_key_file.as_deref(), Some("/etc/authplane/broker/broker.keys"));

    // What the pods read: the config file loads with the server's own loader
    // (the clients come in shards and are validated with it in render).
    let yaml = to_yaml("demo", "authplane", &s.spec, c).unwrap();
    let loaded = Config::load(Some(("config.yaml", &yaml)), vec![]).unwrap().config;
    assert_eq!(loaded.upstreams, c.upstreams);
    assert!(!yaml.contains("client_secret:"), "{yaml}");

    // The Deployment mounts each clientSecretRef (a directory, not subPath)
    // and the operator's broker key Secret.
    let owner = Owner::of(&s).unwrap();
    let d = objects::deployment(&owner, &s.spec, "img", 1);
    let pod = d.spec.template.spec.unwrap();
    let vol = |n: &str| pod.volumes.as_ref().unwrap().iter().find(|v| v.name == n).cloned().unwrap();
    let corp = vol("upstream-corp").secret.unwrap();
    assert_eq!(corp.secret_name.as_deref(), Some("corp-oidc"));
    assert_eq!(corp.items.unwrap()[0].key, "client-secret");
    assert_eq!(vol("upstream-github").secret.unwrap().secret_name.as_deref(), Some("github-oauth"));
    assert_eq!(vol("broker-keys").secret.unwrap().secret_name.as_deref(), Some("authplane-broker-keys"));
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    let at = |n: &str| mounts.iter().find(|m| m.name == n).map(|m| (m.mount_path.clone(), m.sub_path.clone()));
    assert_eq!(at("upstream-corp"), Some(("/etc/authplane/upstreams/corp".into(), None)));
    assert_eq!(at("broker-keys"), Some(("/etc/authplane/broker".into(), None)));

    // The key Secret the operator creates: no owner (the file format and
    // rotation are core::brokerkeys, tested there).
    let secret = objects::broker_keys_secret(&owner, &authplane_core::brokerkeys::file("k100", "AAAA"));
    assert!(secret.metadata.owner_references.is_none(), "deleting the AuthServer must not lose the key");
    let text = String::from_utf8(secret.data.unwrap()["broker.keys"].0.clone()).unwrap();
    assert_eq!(authplane_core::brokerkeys::current_id(&text), Some("k100"));
}
