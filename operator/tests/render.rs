//! The pure render functions, without a cluster: CRs (the shipped samples
//! among them) → config file parsed by the server's own loader, Deployment,
//! Service, Secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use authplane_core::config::{Config, SslMode, TokenEndpointAuthMethod};
use authplane_crds::authserver::{PostgresSpec, PostgresSslMode, SqliteSpec};
use authplane_crds::{AuthServer, OAuthClient, ProtectedResource, SecretKeyRef};
use authplane_operator::render::config::{ClientIn, ResourceIn, Verdict, registry, render, to_yaml};
use authplane_operator::render::objects::{self, Owner};
use authplane_operator::render::shards::{self, Fragment, Sharding, Shards};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;

fn sample<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples").join(file);
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn with_meta<K: Resource>(mut k: K, uid: &str, created: i64) -> K {
    k.meta_mut().namespace = Some("demo".into());
    k.meta_mut().uid = Some(uid.into());
    k.meta_mut().creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::from_second(created).unwrap()));
    k
}

fn server() -> AuthServer {
    with_meta(sample("authserver.yaml"), "uid-as", 0)
}

fn resource_in(r: &ProtectedResource) -> ResourceIn<'_> {
    ResourceIn {
        name: r.metadata.name.as_deref().unwrap(),
        created: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
        spec: &r.spec,
    }
}

fn client_in<'a>(c: &'a OAuthClient, digest: Option<&str>) -> ClientIn<'a> {
    ClientIn {
        name: c.metadata.name.as_deref().unwrap(),
        namespace: "demo",
        created: c.metadata.creation_timestamp.as_ref().map(|t| t.0),
        spec: &c.spec,
        digest: digest.map(str::to_owned),
        holds_id: false,
        awaits_adoption: false,
    }
}

/// The main config plus every shard's fragment, as the server merges them
/// (`--registry-dir`), validated as one.
fn load_with_shards(yaml: &str, shards: &Shards) -> Config {
    let mut loaded = Config::load(Some(("config.yaml", yaml)), vec![]).unwrap();
    for s in &shards.shards {
        let f: Fragment = serde_saphyr::from_str(&s.fragment).unwrap();
        loaded.config.resources.extend(f.resources);
        loaded.config.clients.extend(f.clients);
    }
    loaded.config.validate(&loaded.from_env).unwrap();
    loaded.config
}

const DIGEST: &str = "55399ce7aa8c098453b45d90b73f3a2bda3f0c96f0246f4c3d2c5c4228e9df5c";

#[test]
fn samples_render_to_a_config_the_server_loads() {
    let s = server();
    let r: ProtectedResource = with_meta(sample("protectedresource.yaml"), "uid-r", 1);
    let public: OAuthClient = with_meta(sample("oauthclient-public.yaml"), "uid-c1", 2);
    let confidential: OAuthClient = with_meta(sample("oauthclient-confidential.yaml"), "uid-c2", 3);
    let mut reg = registry(&[resource_in(&r)], &[client_in(&public, None), client_in(&confidential, Some(DIGEST))]);
    assert!(reg.client_verdicts.values().all(|v| *v == Verdict::Accepted), "{:?}", reg.client_verdicts);

    let rendered = render(&s.spec, &mut reg).unwrap();
    let yaml = to_yaml("demo", "authplane", &s.spec, &rendered.config).unwrap();
    assert!(yaml.starts_with("# Rendered by authplane-operator from AuthServer demo/authplane."));
    // The server's own loader, with no environment: what the pod will read.
    let split = shards::split(&reg, Sharding::default());
    assert!(Config::load(Some(("config.yaml", &yaml)), vec![]).unwrap().config.clients.is_empty());
    let loaded = load_with_shards(&yaml, &split);
    assert_eq!(loaded.server.issuer, "https://auth.example.com");
    assert_eq!(loaded.scopes_supported(), vec!["tools/read", "tools/write"]);
    assert_eq!(loaded.signing.key_dir, "/etc/authplane/keys");
    assert!(loaded.signing.rotation_interval.is_zero(), "the operator rotates; the server must not");
    assert_eq!(rendered.rotation_interval.as_secs(), 30 * 86_400);
    let backend = loaded.clients.iter().find(|c| c.client_id == "demo.backend").unwrap();
    assert_eq!(backend.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretBasic);
    assert_eq!(backend.client_secret_sha256.as_deref(), Some(DIGEST));
    let cli = loaded.clients.iter().find(|c| c.client_id == "demo.cli").unwrap();
    assert_eq!(cli.client_secret_sha256, None);
    assert!(!yaml.contains("client_secret:"), "only digests reach the server");
}

#[test]
fn bad_entries_are_left_out_with_a_reason_and_the_older_object_wins() {
    let mut a: ProtectedResource = with_meta(sample("protectedresource.yaml"), "a", 10);
    a.metadata.name = Some("a".into());
    let mut b = with_meta(a.clone(), "b", 5);
    b.metadata.name = Some("b".into());
    b.spec.resource = "https://MCP.example.com:443/mcp/".into();
    let mut dpop = with_meta(a.clone(), "d", 1);
    dpop.metadata.name = Some("d".into());
    dpop.spec.resource = "https://other.example.com/mcp".into();
    dpop.spec.dpop_required = true;

    let confidential: OAuthClient = with_meta(sample("oauthclient-confidential.yaml"), "c", 1);
    let mut lost: OAuthClient = with_meta(sample("oauthclient-public.yaml"), "l", 2);
    lost.spec.allowed_resources = vec!["https://nowhere.example.com/mcp".into()];
    let mut twin = with_meta(confidential.clone(), "t", 0);
    twin.metadata.name = Some("twin".into());
    twin.spec.client_id = Some("demo.backend".into());

    let mut reg = registry(
        &[resource_in(&a), resource_in(&b), resource_in(&dpop)],
        &[client_in(&confidential, None), client_in(&lost, None), client_in(&twin, Some(DIGEST))],
    );
    let reason = |v: Option<&Verdict>| match v {
        Some(Verdict::Rejected { reason, .. }) => *reason,
        _ => "Accepted",
    };
    // b is older and canonicalises to the same URI.
    assert_eq!(reason(reg.resource_verdicts.get("b")), "Accepted");
    assert_eq!(reason(reg.resource_verdicts.get("a")), "DuplicateResource");
    // dpopRequired is enforced by the server now: the resource is served.
    assert_eq!(reason(reg.resource_verdicts.get("d")), "Accepted");
    assert_eq!(reason(reg.client_verdicts.get("backend")), "SecretPending");
    assert_eq!(reason(reg.client_verdicts.get("cli")), "UnknownResource");
    assert_eq!(reason(reg.client_verdicts.get("twin")), "Accepted");
    assert_eq!(reg.resources.len(), 2);
    assert_eq!(reg.clients.len(), 1);
    // And what is left still renders.
    render(&server().spec, &mut reg).unwrap();
}

#[test]
fn dpop_fields_reach_the_server_config() {
    let s = server();
    let mut r: ProtectedResource = with_meta(sample("protectedresource.yaml"), "uid-r", 1);
    r.spec.dpop_required = true;
    let mut public: OAuthClient = with_meta(sample("oauthclient-public.yaml"), "uid-c1", 2);
    public.spec.dpop_bound_access_tokens = true;
    let confidential: OAuthClient = with_meta(sample("oauthclient-confidential.yaml"), "uid-c2", 3);
    let mut reg = registry(&[resource_in(&r)], &[client_in(&public, None), client_in(&confidential, Some(DIGEST))]);
    assert!(reg.resource_verdicts.values().all(|v| *v == Verdict::Accepted), "{:?}", reg.resource_verdicts);
    let rendered = render(&s.spec, &mut reg).unwrap();
    let yaml = to_yaml("demo", "authplane", &s.spec, &rendered.config).unwrap();
    let loaded = load_with_shards(&yaml, &shards::split(&reg, Sharding::default()));
    assert!(loaded.resources[0].dpop_required);
    let cli = loaded.clients.iter().find(|c| c.client_id == "demo.cli").unwrap();
    assert!(cli.dpop_bound_access_tokens);
    let backend = loaded.clients.iter().find(|c| c.client_id == "demo.backend").unwrap();
    assert!(!backend.dpop_bound_access_tokens, "off unless asked for");
}

#[test]
fn a_spec_the_server_would_refuse_is_named_by_its_field() {
    let mut s = server();
    s.spec.signing.rotation_interval = "5m".into();
    let e = render(&s.spec, &mut Default::default()).unwrap_err();
    assert!(e.0.starts_with("spec.signing.rotationInterval"), "{e}");
    let mut s = server();
    s.spec.issuer = "http://auth.example.com".into();
    let e = render(&s.spec, &mut Default::default()).unwrap_err();
    assert!(e.0.starts_with("spec.issuer"), "{e}");
    s.spec.allow_insecure_http = true;
    render(&s.spec, &mut Default::default()).unwrap();
}

#[test]
fn deployment_runs_the_server_as_specified() {
    let s = server();
    let owner = Owner::of(&s).unwrap();
    let d = objects::deployment(&owner, &s.spec, "img:1", 4);
    let pod = d.spec.template.spec.as_ref().unwrap();
    let labels = d.spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(labels.get("app").map(String::as_str), Some("authplane"));
    assert_eq!(d.spec.strategy.as_ref().unwrap().type_.as_deref(), Some("Recreate"), "one SQLite writer");
    let c = &pod.containers[0];
    let ports: Vec<(Option<&str>, i32)> =
        c.ports.iter().flatten().map(|p| (p.name.as_deref(), p.container_port)).collect();
    assert_eq!(ports, vec![(Some("http"), 9000), (Some("admin"), 9001)]);
    assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/health"));
    assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    // Serves a few seconds into termination, while the Service forgets it.
    let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()).and_then(|h| h.sleep.as_ref());
    assert_eq!(pre_stop.map(|s| s.seconds), Some(objects::PRE_STOP_SECONDS));
    assert!(objects::PRE_STOP_SECONDS < pod.termination_grace_period_seconds.unwrap());
    // Secrets as directories (never subPath), so kubelet updates reach the pod.
    let mounts = c.volume_mounts.as_ref().unwrap();
    assert!(mounts.iter().all(|m| m.sub_path.is_none()));
    assert!(mounts.iter().any(|m| m.mount_path == "/etc/authplane/keys"));
    // The config file and the registry shards: one projected directory, and
    // the server is told where the shards are.
    let config = pod.volumes.iter().flatten().find(|v| v.name == "config").unwrap();
    let paths: Vec<String> = config
        .projected
        .as_ref()
        .unwrap()
        .sources
        .iter()
        .flatten()
        .flat_map(|s| s.secret.as_ref().unwrap().items.clone().unwrap())
        .map(|i| i.path)
        .collect();
    assert_eq!(
        paths,
        vec![
            "config.yaml",
            "registry.d/registry-00.yaml",
            "registry.d/registry-01.yaml",
            "registry.d/registry-02.yaml",
            "registry.d/registry-03.yaml"
        ]
    );
    let args = c.args.clone().unwrap();
    assert_eq!(
        args,
        vec![
            "--config",
            "/etc/authplane/config/config.yaml",
            "--registry-dir",
            "/etc/authplane/config/registry.d",
            "serve"
        ]
    );
    assert_eq!(c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0, "256Mi");
    // The rendered config hash is not in the pod template: config hot-reloads.
    assert!(d.spec.template.metadata.as_ref().unwrap().annotations.is_none());

    let mut pg = s.clone();
    pg.spec.replicas = 3;
    pg.spec.database.sqlite = None::<SqliteSpec>;
    pg.spec.database.postgres = Some(PostgresSpec {
        url_secret_ref: SecretKeyRef { name: "db".into(), key: "url".into() },
        max_connections: Some(5),
        ssl_mode: None,
        ca_secret_ref: None,
    });
    let d = objects::deployment(&owner, &pg.spec, "img:1", 4);
    assert!(d.spec.strategy.is_none());
    let env = d.spec.template.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
    let url = env.iter().find(|e| e.name == "AUTHPLANE_DATABASE_URL").unwrap();
    assert_eq!(url.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().name, "db");
    let rendered = render(&pg.spec, &mut Default::default()).unwrap();
    assert_eq!(rendered.config.database.max_connections, 5);
    assert_eq!((rendered.config.database.sslmode, rendered.config.database.sslrootcert), (None, None));

    // A CA Secret: mounted as a directory, set as sslrootcert, verify-full by default.
    let mut tls = pg.clone();
    tls.spec.database.postgres.as_mut().unwrap().ca_secret_ref =
        Some(SecretKeyRef { name: "rds-ca".into(), key: "global-bundle.pem".into() });
    let d = objects::deployment(&owner, &tls.spec, "img:1", 16);
    let pod = d.spec.template.spec.as_ref().unwrap();
    let vol = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "postgres-ca").unwrap();
    let secret = vol.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("rds-ca"));
    let item = &secret.items.as_ref().unwrap()[0];
    assert_eq!((item.key.as_str(), item.path.as_str()), ("global-bundle.pem", "ca.crt"));
    let m = pod.containers[0].volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "postgres-ca").unwrap();
    assert_eq!((m.mount_path.as_str(), m.sub_path.as_deref()), ("/etc/authplane/postgres-ca", None));
    let rendered = render(&tls.spec, &mut Default::default()).unwrap();
    assert_eq!(rendered.config.database.sslmode, Some(SslMode::VerifyFull));
    assert_eq!(rendered.config.database.sslrootcert.as_deref(), Some("/etc/authplane/postgres-ca/ca.crt"));
    tls.spec.database.postgres.as_mut().unwrap().ssl_mode = Some(PostgresSslMode::VerifyCa);
    assert_eq!(render(&tls.spec, &mut Default::default()).unwrap().config.database.sslmode, Some(SslMode::VerifyCa));
    // A CA with a mode that does not verify is refused, naming the field.
    tls.spec.database.postgres.as_mut().unwrap().ssl_mode = Some(PostgresSslMode::Require);
    let e = render(&tls.spec, &mut Default::default()).unwrap_err().to_string();
    assert!(e.contains("spec.database.postgres.sslMode"), "{e}");
}

#[test]
fn service_and_monitor_expose_named_ports() {
    let s = server();
    let owner = Owner::of(&s).unwrap();
    let svc = objects::service(&owner);
    let ports: Vec<(Option<&str>, i32)> =
        svc.spec.as_ref().unwrap().ports.iter().flatten().map(|p| (p.name.as_deref(), p.port)).collect();
    assert_eq!(ports, vec![(Some("http"), 9000), (Some("admin"), 9001)]);
    let sm = objects::service_monitor(&owner, &s.spec);
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "30s");
    assert_eq!(sm["metadata"]["ownerReferences"][0]["controller"], true);
}

#[test]
fn key_secret_round_trips() {
    let s = server();
    let owner = Owner::of(&s).unwrap();
    let k = authplane_operator::keys::generate(1, 1).unwrap();
    let secret = objects::keys_secret(&owner, std::slice::from_ref(&k));
    assert!(secret.data.as_ref().unwrap().contains_key(&format!("{}.json", k.kid)));
    let (keys, bad) = objects::parse_keys(&secret);
    assert_eq!(keys, vec![k]);
    assert!(bad.is_empty());
}

fn many_clients(n: usize) -> Vec<OAuthClient> {
    let base: OAuthClient = sample("oauthclient-confidential.yaml");
    (0..n)
        .map(|i| {
            let mut c = with_meta(base.clone(), &format!("u{i}"), 100 + i as i64);
            c.metadata.name = Some(format!("client-{i:04}"));
            c.spec.client_id = None;
            c
        })
        .collect()
}

#[test]
fn shards_stay_under_their_limit_and_a_removal_always_takes_effect() {
    let s = server();
    let r: ProtectedResource = with_meta(sample("protectedresource.yaml"), "uid-r", 1);
    let clients = many_clients(300);
    let inputs: Vec<ClientIn<'_>> = clients.iter().map(|c| client_in(c, Some(DIGEST))).collect();
    let mut reg = registry(&[resource_in(&r)], &inputs);
    assert_eq!(reg.clients.len(), 300);
    let small = Sharding { count: 4, max_bytes: 16 * 1024 };
    let split = shards::split(&reg, small);
    for sh in &split.shards {
        // The limit bounds the entries; the names of those left out come on top.
        let left_out: usize = sh.entries.too_large.iter().map(|k| k.len() + 3).sum();
        assert!(sh.fragment.len() + sh.index_json().len() <= small.max_bytes + left_out, "shard {} too big", sh.index);
        assert!(sh.fragment.len() > small.max_bytes / 2, "shard {} is not filled", sh.index);
    }
    assert!(!split.too_large.is_empty(), "300 clients cannot fit in 64 KiB");
    assert_eq!(split.clients + split.too_large.len(), 300);
    // Oldest first: whatever was left out is younger than what went in.
    let yaml = to_yaml("demo", "authplane", &s.spec, &render(&s.spec, &mut reg).unwrap().config).unwrap();
    assert_eq!(reg.clients.len(), 300, "render hands the registry back whole");
    let loaded = load_with_shards(&yaml, &split);
    assert_eq!(loaded.clients.len(), split.clients);

    // Delete an accepted client: it leaves its shard, and nothing accepted
    // before is dropped for it.
    let victim = reg.client_names[0].clone();
    let fewer: Vec<ClientIn<'_>> = inputs.iter().filter(|c| c.name != victim).cloned().collect();
    let reg2 = registry(&[resource_in(&r)], &fewer);
    let split2 = shards::split(&reg2, small);
    let all =
        |sp: &Shards| -> Vec<String> { sp.shards.iter().flat_map(|s| s.entries.clients.keys().cloned()).collect() };
    assert!(!all(&split2).contains(&victim));
    for n in all(&split) {
        assert!(n == victim || all(&split2).contains(&n), "{n} was dropped by an unrelated deletion");
    }

    // A shard the API server refuses falls back to what it held, minus the
    // removal: never larger, and the deleted client is gone.
    let shard = shards::shard_of(&victim, small.count);
    let before = &split.shards[shard as usize];
    let fallback = shards::keep_only_live(&reg2, small, shard, &before.entries);
    assert!(fallback.fragment.len() <= before.fragment.len());
    assert!(!fallback.entries.clients.contains_key(&victim));
    assert_eq!(fallback.entries.clients.len(), before.entries.clients.len() - 1);
}

#[test]
fn a_freed_client_id_is_not_handed_to_a_waiting_duplicate() {
    let r: ProtectedResource = with_meta(sample("protectedresource.yaml"), "uid-r", 1);
    let backend: OAuthClient = with_meta(sample("oauthclient-confidential.yaml"), "b", 1);
    let mut impostor: OAuthClient = with_meta(sample("oauthclient-public.yaml"), "i", 2);
    impostor.metadata.name = Some("impostor".into());
    impostor.spec.client_id = Some("demo.backend".into());
    impostor.spec.allowed_resources.clear();
    let reason = |reg: &authplane_operator::render::config::Registry, n: &str| match reg.client_verdicts.get(n) {
        Some(Verdict::Rejected { reason, .. }) => *reason,
        _ => "Accepted",
    };
    // While backend holds the id, impostor waits.
    let reg = registry(&[resource_in(&r)], &[client_in(&backend, Some(DIGEST)), client_in(&impostor, None)]);
    assert_eq!(reason(&reg, "impostor"), "DuplicateClientId");
    // backend is gone; impostor waited: it does not get the id by itself.
    let waiting = ClientIn { awaits_adoption: true, ..client_in(&impostor, None) };
    let reg = registry(&[resource_in(&r)], &[waiting]);
    assert_eq!(reason(&reg, "impostor"), "AdoptionRequired");
    assert!(reg.clients.is_empty());
    // With the adoption annotation it does.
    let reg = registry(&[resource_in(&r)], &[client_in(&impostor, None)]);
    assert_eq!(reason(&reg, "impostor"), "Accepted");
    // A holder keeps its id against an older object that claims it later.
    let holder = ClientIn { holds_id: true, ..client_in(&impostor, None) };
    let reg = registry(&[resource_in(&r)], &[client_in(&backend, Some(DIGEST)), holder]);
    assert_eq!(reason(&reg, "impostor"), "Accepted");
    assert_eq!(reason(&reg, "backend"), "DuplicateClientId");
}

#[test]
fn has_client_id_matches_client_id() {
    use authplane_operator::render::config::{client_id, has_client_id};
    let mut c: OAuthClient = sample("oauthclient-public.yaml");
    for (ns, name, id) in [("demo", "cli", "demo.cli"), ("demo", "cli", "demo.clix"), ("de", "mo.cli", "demo.cli")] {
        assert_eq!(has_client_id(ns, name, &c.spec, id), client_id(ns, name, &c.spec) == id, "{ns} {name} {id}");
    }
    c.spec.client_id = Some("x".into());
    assert!(has_client_id("demo", "cli", &c.spec, "x"));
    assert!(!has_client_id("demo", "cli", &c.spec, "demo.cli"));
}

#[test]
fn id_claim_reads_status_and_the_adoption_annotation() {
    use authplane_operator::render::config::{ADOPT_ANNOTATION, id_claim};
    let mut c: OAuthClient = with_meta(sample("oauthclient-public.yaml"), "i", 2);
    assert_eq!(id_claim(&c, "demo.cli"), (false, false));
    let cond = |reason: &str, status: &str| authplane_crds::Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: String::new(),
        last_transition_time: String::new(),
        observed_generation: None,
    };
    c.status = Some(authplane_crds::OAuthClientStatus {
        client_id: Some("demo.cli".into()),
        conditions: vec![cond("DuplicateClientId", "False")],
        ..Default::default()
    });
    assert_eq!(id_claim(&c, "demo.cli"), (false, true));
    c.metadata.annotations = Some([(ADOPT_ANNOTATION.to_owned(), "demo.cli".to_owned())].into());
    assert_eq!(id_claim(&c, "demo.cli"), (false, false));
    c.status.as_mut().unwrap().conditions = vec![cond("Registered", "True")];
    assert_eq!(id_claim(&c, "demo.cli"), (true, false));
    assert_eq!(id_claim(&c, "other"), (false, false));
}

/// The Secret reference is written into a comment of the rendered file; a
/// newline or control character in it (the CRD bounds only its length) must
/// neither break the YAML nor add config keys (found by `fuzz/`
/// `operator_render`).
#[test]
fn a_secret_reference_cannot_break_or_inject_into_the_config_file() {
    let mut s = server();
    s.spec.database.postgres = Some(PostgresSpec {
        url_secret_ref: SecretKeyRef { name: "db\nadmin:\n  listen: 0.0.0.0:1".into(), key: "u\u{7f}rl".into() },
        max_connections: None,
        ssl_mode: None,
        ca_secret_ref: None,
    });
    let mut reg = registry(&[], &[]);
    let rendered = render(&s.spec, &mut reg).unwrap();
    let yaml = to_yaml("demo", "authplane", &s.spec, &rendered.config).unwrap();
    let env = vec![("AUTHPLANE_DATABASE_URL".to_owned(), "postgres://u:p@db:5432/authplane".to_owned())];
    let loaded = Config::load(Some(("config.yaml", &yaml)), env).unwrap();
    assert_eq!(loaded.config.admin.listen, rendered.config.admin.listen, "{yaml}");
    assert!(yaml.contains(r"db\nadmin:\n  listen: 0.0.0.0:1"), "{yaml}");
}
