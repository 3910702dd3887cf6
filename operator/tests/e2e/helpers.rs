//! Helpers for the operator's end-to-end tests on a real control plane
//! (`e2e/cluster.sh`): a namespace per test, an operator process per test
//! (scoped to that namespace), kubectl, and a real `authserver` standing in
//! for the pod with the config and keys copied out of the Secrets.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use authplane_crds::{AuthServer, Condition, OAuthClient, ProtectedResource};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| repo_root().join("target/debug").join(name))
}

pub async fn client() -> Client {
    Client::try_default().await.expect("KUBECONFIG must point at the e2e cluster (run e2e/operator-test.sh)")
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{:x}", (n as u64) ^ u64::from(std::process::id()))
}

/// A fresh namespace, deleted when dropped.
pub struct TestNs {
    pub name: String,
    pub client: Client,
}

impl TestNs {
    pub async fn new(test: &str) -> TestNs {
        let client = client().await;
        let name = unique(&format!("e2e-{test}"));
        let ns = Namespace {
            metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
        TestNs { name, client }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// `kubectl <args> -n <ns>`; returns (success, stdout+stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        kubectl_in(&self.name, args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> (bool, String) {
        kubectl_in(&self.name, args, Some(stdin))
    }

    pub fn apply(&self, yaml: &str) {
        let (ok, out) = self.kubectl_stdin(&["apply", "--server-side", "-f", "-"], yaml);
        assert!(ok, "kubectl apply failed: {out}");
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new(kubectl_bin())
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

fn kubectl_in(ns: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut cmd = Command::new(kubectl_bin());
    cmd.arg("-n").arg(ns).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("kubectl on PATH");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Reads a child's stdout on a thread: waits for a line containing `needle`,
/// and keeps a copy of everything for failure messages.
fn watch_stdout(child: &mut Child, tag: &'static str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if std::env::var_os("E2E_VERBOSE").is_some() {
                eprintln!("[{tag}] {line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("no line with {needle:?} within {timeout:?}; output:\n{}", seen.join("\n"));
}

/// `key=value` from a logfmt line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ').find_map(|kv| kv.strip_prefix(&format!("{key}=")))
}

/// The operator binary, watching one namespace, with its own Lease there.
pub struct Operator {
    child: Child,
    pub metrics: String,
    _lines: mpsc::Receiver<String>,
}

impl Operator {
    pub fn start(ns: &str) -> Operator {
        Self::start_with(ns, &[])
    }

    /// With extra `run` flags (e.g. a small `--max-shard-bytes`).
    pub fn start_with(ns: &str, extra: &[&str]) -> Operator {
        let mut child = Command::new(bin("AUTHPLANE_OPERATOR_BIN", "authplane-operator"))
            .args(["run", "--namespace", ns, "--lease-namespace", ns, "--metrics-addr", "127.0.0.1:0"])
            .args(["--lease-seconds", "6", "--server-image", "authplane/authserver:e2e"])
            .args(extra)
            .env("POD_NAME", unique("operator"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("authplane-operator binary (cargo build -p authplane-operator)");
        let rx = watch_stdout(&mut child, "operator");
        let line = wait_line(&rx, "authplane-operator started", Duration::from_secs(30));
        let metrics = field(&line, "metrics").unwrap().to_owned();
        Operator { child, metrics, _lines: rx }
    }

    /// SIGKILL: no graceful shutdown, no Lease release.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics)).await.unwrap().text().await.unwrap()
    }

    /// Sum of `authplane_operator_api_writes_total`, Lease renewals excluded.
    pub async fn writes(&self) -> u64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with("authplane_operator_api_writes_total{") && !l.contains("resource=\"leases\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- operator log ----");
            while let Ok(line) = self._lines.try_recv() {
                eprintln!("{line}");
            }
        }
    }
}

/// Polls `f` until it returns `Some`, or panics with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// Waits until `name`'s `Ready` condition has `status` (and, if given, `reason`).
pub async fn await_ready<K: CrObject>(ns: &TestNs, name: &str, status: bool, reason: Option<&str>) -> Condition {
    let want = if status { "True" } else { "False" };
    await_condition::<K>(ns, name, "Ready", want, reason, Duration::from_secs(60)).await
}

/// Waits until condition `type_` of `name` has `status` (and, if given,
/// `reason`); on timeout the panic shows the last condition seen.
pub async fn await_condition<K: CrObject>(
    ns: &TestNs,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> Condition {
    let api: Api<K> = ns.api();
    let mut last = None;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(obj)) = api.get_opt(name).await {
            let c = obj.conditions().iter().find(|c| c.type_ == type_).cloned();
            if let Some(c) = &c
                && c.status == status
                && reason.is_none_or(|r| r == c.reason)
            {
                return c.clone();
            }
            last = c;
        }
        assert!(
            Instant::now() < deadline,
            "{} {name}: no {type_}={status} {reason:?} within {timeout:?}; last: {last:?}",
            K::kind(&())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A namespaced custom resource with status conditions, as the helpers
/// read it (every CRD of this crate).
pub trait CrObject:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + HasConditions
{
}

impl<K> CrObject for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + HasConditions
{
}

pub trait HasConditions {
    fn conditions(&self) -> &[Condition];
}

impl HasConditions for AuthServer {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl HasConditions for ProtectedResource {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl HasConditions for OAuthClient {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

pub fn sample(file: &str) -> String {
    std::fs::read_to_string(repo_root().join("config/samples").join(file)).unwrap()
}

pub fn all_samples() -> String {
    ["authserver.yaml", "protectedresource.yaml", "oauthclient-public.yaml", "oauthclient-confidential.yaml"]
        .iter()
        .map(|f| sample(f))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()
}

pub async fn secret(ns: &TestNs, name: &str) -> Secret {
    let api: Api<Secret> = ns.api();
    eventually(&format!("Secret {name}"), Duration::from_secs(30), || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten() }
    })
    .await
}

pub async fn delete<K>(ns: &TestNs, name: &str)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    ns.api::<K>().delete(name, &DeleteParams::default()).await.unwrap();
}

/// What the server pods read: `config.yaml` from the config Secret and the
/// registry fragments (`registry-NN.yaml`) from the shard Secrets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodConfig {
    pub config: Vec<u8>,
    pub registry: BTreeMap<String, Vec<u8>>,
}

impl PodConfig {
    /// All of it as text, for `contains` checks.
    pub fn text(&self) -> String {
        let mut t = String::from_utf8_lossy(&self.config).into_owned();
        for v in self.registry.values() {
            t.push_str(&String::from_utf8_lossy(v));
        }
        t
    }

    /// How many `client_id:` entries the fragments hold.
    pub fn clients(&self) -> usize {
        self.registry.values().map(|v| String::from_utf8_lossy(v).matches("client_id:").count()).sum()
    }
}

/// The config of AuthServer `server` as the pods read it, from the API.
pub async fn pod_config(ns: &TestNs, server: &str) -> PodConfig {
    let api: Api<Secret> = ns.api();
    let config = secret_data(&secret(ns, &format!("{server}-config")).await)["config.yaml"].clone();
    let lp = kube::api::ListParams::default()
        .labels(&format!("authplane.io/authserver={server},authplane.io/registry-shard"));
    let mut registry = BTreeMap::new();
    for s in api.list(&lp).await.unwrap() {
        for (k, v) in secret_data(&s) {
            if k.starts_with("registry-") {
                registry.insert(k, v);
            }
        }
    }
    PodConfig { config, registry }
}

/// What kubelet does for a Secret volume: a new timestamped directory, then
/// an atomic swap of the `..data` symlink, and per-key symlinks.
fn kubelet_write(root: &Path, generation: u32, files: &BTreeMap<String, Vec<u8>>) {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(root).unwrap();
    let data = format!("..{generation}");
    std::fs::create_dir_all(root.join(&data)).unwrap();
    for (k, v) in files {
        std::fs::write(root.join(&data).join(k), v).unwrap();
    }
    let tmp = root.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&data, &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
    for k in files.keys() {
        let link = root.join(k);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{k}"), &link).unwrap();
        }
    }
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !files.contains_key(&name) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    if generation > 1 {
        let _ = std::fs::remove_dir_all(root.join(format!("..{}", generation - 1)));
    }
}

/// A real `authserver` standing in for the pod: the config file, the
/// registry directory and a kubelet-style key directory (`..data` symlink
/// swapped on change) built from the Secrets, on free loopback ports.
pub struct Server {
    child: Child,
    dir: PathBuf,
    pub public: String,
    generation: u32,
    lines: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(config: &PodConfig, keys: &BTreeMap<String, Vec<u8>>) -> Server {
        Self::try_start(config, keys).unwrap_or_else(|out| panic!("authserver did not start:\n{out}"))
    }

    /// Starts the server; `Err` with its output when it exits instead.
    pub fn try_start(config: &PodConfig, keys: &BTreeMap<String, Vec<u8>>) -> Result<Server, String> {
        Self::try_start_with(config, keys, &[], &[])
    }

    /// As [`Server::try_start`], with `files` (name, bytes) written into the
    /// server's directory first — the Secrets kubelet would mount — and `env`
    /// whose values may name them as `{dir}/<name>`.
    pub fn try_start_with(
        config: &PodConfig,
        keys: &BTreeMap<String, Vec<u8>>,
        files: &[(&str, Vec<u8>)],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        let dir = std::env::temp_dir().join(unique("ap-e2e-server"));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        let mut s = Server {
            child: Command::new("true").spawn().unwrap(),
            dir,
            public: String::new(),
            generation: 0,
            lines: mpsc::channel().1,
        };
        s.write_config(config);
        s.write_keys(keys);
        let mut child = Command::new(bin("AUTHPLANE_AUTHSERVER_BIN", "authserver"))
            .arg("--config")
            .arg(s.dir.join("config.yaml"))
            .arg("--registry-dir")
            .arg(s.dir.join("registry.d"))
            .arg("serve")
            .env("AUTHPLANE_SERVER_LISTEN", "127.0.0.1:0")
            .env("AUTHPLANE_ADMIN_LISTEN", "127.0.0.1:0")
            .env("AUTHPLANE_SIGNING_KEY_DIR", s.dir.join("keys"))
            .env("AUTHPLANE_DATABASE_URL", format!("sqlite://{}?mode=rwc", s.dir.join("db.sqlite").display()))
            .envs(env.iter().map(|(k, v)| (*k, v.replace("{dir}", &s.dir.display().to_string()))))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("authserver binary (cargo build -p authplane-server)");
        let err = child.stderr.take().unwrap();
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            let lines: Vec<String> = BufReader::new(err).lines().map_while(Result::ok).collect();
            let _ = etx.send(lines.join("\n"));
        });
        let rx = watch_stdout(&mut child, "authserver");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains("authserver started") => {
                    s.public = field(&line, "public").unwrap().to_owned();
                    break;
                }
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let stderr = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                    return Err(format!("{}\n{stderr}", seen.join("\n")));
                }
            }
        }
        s.child = child;
        s.lines = rx;
        Ok(s)
    }

    /// The config file and the registry directory, as kubelet updates them.
    pub fn write_config(&mut self, config: &PodConfig) {
        let tmp = self.dir.join(".config.yaml.tmp");
        std::fs::write(&tmp, &config.config).unwrap();
        std::fs::rename(tmp, self.dir.join("config.yaml")).unwrap();
        self.generation += 1;
        kubelet_write(&self.dir.join("registry.d"), self.generation, &config.registry);
    }

    pub fn write_keys(&mut self, keys: &BTreeMap<String, Vec<u8>>) {
        self.generation += 1;
        kubelet_write(&self.dir.join("keys"), self.generation, keys);
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        wait_line(&self.lines, needle, timeout)
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("http://{}{path}", self.public)).await.unwrap().json().await.unwrap()
    }

    /// `client_credentials` (RFC 6749 §4.4) with `client_secret_basic`.
    pub async fn client_credentials(&self, id: &str, secret: &str, resource: &str, scope: &str) -> String {
        self.try_client_credentials(id, secret, resource, scope).await.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn try_client_credentials(
        &self,
        id: &str,
        secret: &str,
        resource: &str,
        scope: &str,
    ) -> Result<String, String> {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/oauth/token", self.public))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("resource", resource), ("scope", scope)])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        if !status.is_success() {
            return Err(format!("token request failed: {status} {body}"));
        }
        Ok(body["access_token"].as_str().unwrap().to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Checks an ES256 JWT against a JWKS document; returns its `kid`.
pub fn verify(token: &str, jwks: &serde_json::Value) -> Result<String, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or(format!("kid {kid} not in JWKS"))?;
    let key = jsonwebtoken::DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
        .map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map_err(|e| e.to_string())?;
    Ok(kid)
}

pub fn jwks_kids(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"].as_array().into_iter().flatten().filter_map(|k| k["kid"].as_str().map(str::to_owned)).collect()
}

/// `reason` of every Event on `kind/name` (via kubectl, events.k8s.io and core).
pub fn event_reasons(ns: &TestNs, kind: &str, name: &str) -> Vec<String> {
    let (ok, out) = ns.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.kind={kind},involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    assert!(ok, "kubectl get events: {out}");
    out.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
}

/// Waits for an Event with `reason` on `kind/name`.
pub async fn await_event(ns: &TestNs, kind: &str, name: &str, reason: &str) {
    eventually(&format!("Event {reason} on {kind} {name}"), Duration::from_secs(30), || async {
        event_reasons(ns, kind, name).iter().any(|r| r == reason).then_some(())
    })
    .await
}

/// The `status` of condition `type_` of an AuthServer, with its reason.
pub async fn authserver_condition(ns: &TestNs, name: &str, type_: &str) -> Option<Condition> {
    let a: AuthServer = ns.api().get(name).await.ok()?;
    a.status?.conditions.into_iter().find(|c| c.type_ == type_)
}
