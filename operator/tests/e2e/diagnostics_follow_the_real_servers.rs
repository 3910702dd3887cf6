//! The operator's diagnostics against real servers on loopback: a real
//! `authserver` (from the rendered config) and the example MCP server
//! (`sdk/examples/mcp-server`). Each fault is planted and repaired, and the
//! conditions (`IssuerReachable`, `PRMVerified`) flip both ways with an Event
//! each time, without touching `Ready`; once settled, the periodic fetches
//! write nothing.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authplane_crds::{AuthServer, Condition, ProtectedResource};

use crate::helpers::*;

const ISSUER: &str = "https://auth.example.com";
const INTERVAL: &str = "2";

/// The example MCP server on `127.0.0.1:port`, claiming `resource` and `issuer`.
struct McpServer {
    child: Option<Child>,
    port: u16,
    env: [(&'static str, String); 4],
}

impl McpServer {
    async fn start(port: u16, resource: &str, issuer: &str, as_metadata: &str) -> McpServer {
        let mut s = McpServer {
            child: None,
            port,
            env: [
                ("MCP_LISTEN", format!("127.0.0.1:{port}")),
                ("AUTHPLANE_RESOURCE", resource.to_owned()),
                ("AUTHPLANE_ISSUER", issuer.to_owned()),
                ("AUTHPLANE_AS_METADATA_URL", as_metadata.to_owned()),
            ],
        };
        s.spawn();
        let url = s.prm_url();
        eventually("the MCP server to serve its PRM", Duration::from_secs(30), || async {
            let r = reqwest::get(&url).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        s
    }

    /// Starts the process (again), without waiting for it.
    fn spawn(&mut self) {
        let bin = std::env::var_os("AUTHPLANE_MCP_SERVER_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/debug/mcp-server"));
        let child = Command::new(bin)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mcp-server binary (scripts/build-test-bins.sh)");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn prm_url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp", self.port)
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until condition `type_` of `name` has `status` and `reason`.
async fn await_condition<K: CrObject>(ns: &TestNs, name: &str, type_: &str, status: &str, reason: &str) -> Condition {
    crate::helpers::await_condition::<K>(ns, name, type_, status, Some(reason), Duration::from_secs(45)).await
}

/// Occurrences of Events with `reason` on `kind/name`, counting each
/// series (repeats the recorder folds into one Event) in full.
fn event_total(ns: &TestNs, kind: &str, name: &str, reason: &str) -> u32 {
    let (ok, out) = ns.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.kind={kind},involvedObject.name={name},reason={reason}"),
        "-o",
        "jsonpath={range .items[*]}{.series.count}{\"\\n\"}{end}",
    ]);
    assert!(ok, "kubectl get events: {out}");
    out.lines().map(|l| l.trim().parse::<u32>().unwrap_or(1)).sum()
}

/// Waits until there are more than `before` Events with `reason`.
async fn await_more_events(ns: &TestNs, kind: &str, name: &str, reason: &str, before: u32) {
    eventually(&format!("a new Event {reason} on {kind} {name}"), Duration::from_secs(30), || async {
        (event_total(ns, kind, name, reason) > before).then_some(())
    })
    .await;
}

fn patch(ns: &TestNs, kind: &str, name: &str, body: serde_json::Value) {
    let (ok, out) = ns.kubectl(&["patch", kind, name, "--type", "merge", "-p", &body.to_string()]);
    assert!(ok, "kubectl patch {kind} {name}: {out}");
}

/// Plants a fault with `plant`, waits for condition `reason` and its Event,
/// then repairs with `repair` and waits for True and its Event.
struct Flip<'a> {
    ns: &'a TestNs,
    kind: &'static str,
    name: &'static str,
    type_: &'static str,
    ok_reason: &'static str,
    ok_event: &'static str,
}

impl Flip<'_> {
    async fn to_false<K: CrObject>(&self, reason: &str, plant: impl FnOnce()) -> Condition {
        let events = event_total(self.ns, self.kind, self.name, reason);
        plant();
        let c = await_condition::<K>(self.ns, self.name, self.type_, "False", reason).await;
        await_more_events(self.ns, self.kind, self.name, reason, events).await;
        c
    }

    async fn to_true<K: CrObject>(&self, repair: impl FnOnce()) -> Condition {
        let events = event_total(self.ns, self.kind, self.name, self.ok_event);
        repair();
        let c = await_condition::<K>(self.ns, self.name, self.type_, "True", self.ok_reason).await;
        await_more_events(self.ns, self.kind, self.name, self.ok_event, events).await;
        c
    }
}

#[tokio::test]
#[ignore = "needs a control plane: e2e/operator-test.sh"]
async fn prm_and_discovery_faults_show_in_status_and_clear() {
    let ns = TestNs::new("diag").await;
    // Every fault below is planted in, and repaired on, ProtectedResource "notes".
    let patch_notes = |body: serde_json::Value| patch(&ns, "protectedresource", "notes", body);
    let op = Operator::start_with(&ns.name, &["--probe-interval", INTERVAL]);
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let pr = |extra: &str| {
        format!(
            "apiVersion: authplane.io/v1alpha1\nkind: ProtectedResource\nmetadata:\n  name: notes\nspec:\n  \
             authServerRef: {{name: authplane}}\n  resource: {resource}\n  scopes: [tools/read, tools/write]\n{extra}"
        )
    };
    ns.apply(&format!("{}\n---\n{}", sample("authserver.yaml"), pr("")));

    // --- AuthServer: discovery through its own Service. This control plane
    // has no kube-proxy, so the Service does not answer: False, not True.
    let c = await_condition::<AuthServer>(&ns, "authplane", "IssuerReachable", "False", "DiscoveryUnreachable").await;
    let service_url = format!("http://authplane.{}.svc:9000/.well-known/oauth-authorization-server", ns.name);
    assert!(c.message.contains(&service_url), "{}", c.message);
    await_event(&ns, "AuthServer", "authplane", "DiscoveryUnreachable").await;
    // A diagnostic: Ready does not depend on it.
    await_ready::<AuthServer>(&ns, "authplane", true, None).await;
    // No prmCheck: not checked, and never True on an assumption.
    let c = await_condition::<ProtectedResource>(&ns, "notes", "PRMVerified", "Unknown", "NotChecked").await;
    assert!(c.message.contains("spec.prmCheck"), "{}", c.message);
    await_ready::<ProtectedResource>(&ns, "notes", true, None).await;

    // A real authserver standing in for the pod, and the override URL.
    let config = pod_config(&ns, "authplane").await;
    let keys = secret_data(&secret(&ns, "authplane-signing-keys").await);
    let server = Server::start(&config, &keys);
    let discovery = format!("http://{}/.well-known/oauth-authorization-server", server.public);
    let auth = Flip {
        ns: &ns,
        kind: "AuthServer",
        name: "authplane",
        type_: "IssuerReachable",
        ok_reason: "IssuerVerified",
        ok_event: "IssuerReachable",
    };
    let c = auth
        .to_true::<AuthServer>(|| {
            patch(
                &ns,
                "authserver",
                "authplane",
                serde_json::json!({"spec": {"issuerCheck": {"discoveryUrl": discovery}}}),
            )
        })
        .await;
    assert!(c.message.contains(&discovery) && c.message.contains(ISSUER), "{}", c.message);

    // Issuer changed in the CR; the running server still says the old one.
    let c = auth
        .to_false::<AuthServer>("IssuerMismatch", || {
            patch(&ns, "authserver", "authplane", serde_json::json!({"spec": {"issuer": "https://auth2.example.com"}}))
        })
        .await;
    assert!(c.message.contains("\"https://auth.example.com\"") && c.message.contains("auth2"), "{}", c.message);
    auth.to_true::<AuthServer>(|| {
        patch(&ns, "authserver", "authplane", serde_json::json!({"spec": {"issuer": ISSUER}}))
    })
    .await;

    // --- ProtectedResource: the example MCP server, and a second one whose
    // PRM names another authorization server.
    let mut mcp = McpServer::start(port, &resource, ISSUER, &discovery).await;
    let elsewhere = McpServer::start(free_port(), &resource, "https://elsewhere.example.com", &discovery).await;
    let prm = Flip {
        ns: &ns,
        kind: "ProtectedResource",
        name: "notes",
        type_: "PRMVerified",
        ok_reason: "Verified",
        ok_event: "PRMVerified",
    };
    // `prmCheck: {}`: the URL derived from spec.resource (RFC 9728 §3.1).
    let c = prm.to_true::<ProtectedResource>(|| ns.apply(&pr("  prmCheck: {}\n"))).await;
    assert!(c.message.contains(&mcp.prm_url()), "{}", c.message);
    let (ok, table) = ns.kubectl(&["get", "protectedresources", "-o", "wide"]);
    assert!(ok && table.contains("PRM") && table.contains("Verified"), "{table}");
    let (ok, table) = ns.kubectl(&["get", "authservers"]);
    assert!(ok && table.contains("DISCOVERY") && table.contains("True"), "{table}");

    // Wrong resource: the spec names /other; the MCP server's PRM (found at
    // the root form after /.well-known/oauth-protected-resource/other 404s)
    // says /mcp.
    let c = prm
        .to_false::<ProtectedResource>("ResourceMismatch", || {
            patch_notes(serde_json::json!({"spec": {"resource": format!("http://127.0.0.1:{port}/other")}}))
        })
        .await;
    assert!(c.message.contains(&format!("\"{resource}\"")), "{}", c.message);
    prm.to_true::<ProtectedResource>(|| patch_notes(serde_json::json!({"spec": {"resource": resource}}))).await;

    // PRM authorization_servers pointing elsewhere (an in-cluster-style URL override).
    let c = prm
        .to_false::<ProtectedResource>("IssuerMismatch", || {
            patch_notes(serde_json::json!({"spec": {"prmCheck": {"url": elsewhere.prm_url()}}}))
        })
        .await;
    assert!(c.message.contains("elsewhere.example.com"), "{}", c.message);
    await_ready::<ProtectedResource>(&ns, "notes", true, Some("Registered")).await;
    prm.to_true::<ProtectedResource>(|| patch_notes(serde_json::json!({"spec": {"prmCheck": {"url": null}}}))).await;

    // Scopes differing.
    let c = prm
        .to_false::<ProtectedResource>("ScopesMismatch", || {
            patch_notes(serde_json::json!({"spec": {"scopes": ["tools/read", "tools/write", "tools/admin"]}}))
        })
        .await;
    assert!(c.message.contains("tools/admin"), "{}", c.message);
    prm.to_true::<ProtectedResource>(|| {
        patch_notes(serde_json::json!({"spec": {"scopes": ["tools/read", "tools/write"]}}))
    })
    .await;

    // PRM 404.
    let missing = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/missing");
    prm.to_false::<ProtectedResource>("PRMNotFound", || {
        patch_notes(serde_json::json!({"spec": {"prmCheck": {"url": missing}}}))
    })
    .await;
    await_ready::<ProtectedResource>(&ns, "notes", true, Some("Registered")).await;
    prm.to_true::<ProtectedResource>(|| patch_notes(serde_json::json!({"spec": {"prmCheck": {"url": null}}}))).await;

    // Not a JSON document.
    let css = format!("http://{}/ui/static/authplane.css", server.public);
    let c = prm
        .to_false::<ProtectedResource>("PRMInvalid", || {
            patch_notes(serde_json::json!({"spec": {"prmCheck": {"url": css}}}))
        })
        .await;
    assert!(c.message.contains("not JSON"), "{}", c.message);
    prm.to_true::<ProtectedResource>(|| patch_notes(serde_json::json!({"spec": {"prmCheck": {"url": null}}}))).await;

    // Unreachable, with no change to any object: the periodic fetch finds it.
    let c = prm.to_false::<ProtectedResource>("PRMUnreachable", || mcp.kill()).await;
    assert!(c.message.contains("connection refused"), "{}", c.message);
    prm.to_true::<ProtectedResource>(|| mcp.spawn()).await;

    // Settled: the fetches go on every 2 s and write nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let versions = |ns: &TestNs| {
        let (ok, out) = ns.kubectl(&[
            "get",
            "authservers,protectedresources,events",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion}{\"\\n\"}{end}",
        ]);
        assert!(ok, "{out}");
        out
    };
    let before = versions(&ns);
    let writes = op.writes().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(versions(&ns), before, "objects or Events changed while nothing did");
    assert_eq!(op.writes().await, writes, "the operator wrote while nothing changed:\n{}", op.metrics_text().await);

    // The AuthServer's server goes away: found by the periodic fetch too.
    let c = auth.to_false::<AuthServer>("DiscoveryUnreachable", || drop(server)).await;
    assert!(c.message.contains(&discovery), "{}", c.message);

    // Opting out: Unknown, not True.
    patch(&ns, "authserver", "authplane", serde_json::json!({"spec": {"issuerCheck": {"enabled": false}}}));
    await_condition::<AuthServer>(&ns, "authplane", "IssuerReachable", "Unknown", "NotChecked").await;
    patch_notes(serde_json::json!({"spec": {"prmCheck": null}}));
    await_condition::<ProtectedResource>(&ns, "notes", "PRMVerified", "Unknown", "NotChecked").await;
}
