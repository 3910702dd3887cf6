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
        let mut child = Command::new(bin("AUTHPLANE_OPERATOR_BIN", "authplane-operator"))
            .args(["run", "--namespace", ns, "--lease-namespace", ns, "--metrics-addr", "127.0.0.1:0"])
            .args(["--lease-seconds", "6", "--server-image", "authplane/authserver:e2e"])
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
pub async fn await_ready<K>(ns: &TestNs, name: &str, status: bool, reason: Option<&str>) -> Condition
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + HasConditions,
{
    let api: Api<K> = ns.api();
    let want = if status { "True" } else { "False" };
    eventually(&format!("{} {name} Ready={want} {reason:?}", K::kind(&())), Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let obj = api.get_opt(name).await.ok()??;
            let c = ready(obj.conditions())?.clone();
            (c.status == want && reason.is_none_or(|r| r == c.reason)).then_some(c)
        }
    })
    .await
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

/// A real `authserver` standing in for the pod: the config file and a
/// kubelet-style key directory (`..data` symlink swapped on change) built
/// from the Secrets, on free loopback ports.
pub struct Server {
    child: Child,
    dir: PathBuf,
    pub public: String,
    generation: u32,
    _lines: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(config_yaml: &[u8], keys: &BTreeMap<String, Vec<u8>>) -> Server {
        let dir = std::env::temp_dir().join(unique("ap-e2e-server"));
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        std::fs::write(dir.join("config.yaml"), config_yaml).unwrap();
        let mut s = Server {
            child: Command::new("true").spawn().unwrap(),
            dir,
            public: String::new(),
            generation: 0,
            _lines: mpsc::channel().1,
        };
        s.write_keys(keys);
        let mut child = Command::new(bin("AUTHPLANE_AUTHSERVER_BIN", "authserver"))
            .arg("--config")
            .arg(s.dir.join("config.yaml"))
            .arg("serve")
            .env("AUTHPLANE_SERVER_LISTEN", "127.0.0.1:0")
            .env("AUTHPLANE_ADMIN_LISTEN", "127.0.0.1:0")
            .env("AUTHPLANE_SIGNING_KEY_DIR", s.dir.join("keys"))
            .env("AUTHPLANE_DATABASE_URL", format!("sqlite://{}?mode=rwc", s.dir.join("db.sqlite").display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("authserver binary (cargo build -p authplane-server)");
        let rx = watch_stdout(&mut child, "authserver");
        let line = wait_line(&rx, "authserver started", Duration::from_secs(60));
        s.public = field(&line, "public").unwrap().to_owned();
        s.child = child;
        s._lines = rx;
        s
    }

    pub fn write_config(&self, yaml: &[u8]) {
        let tmp = self.dir.join(".config.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(tmp, self.dir.join("config.yaml")).unwrap();
    }

    /// What kubelet does for a Secret volume: a new timestamped directory,
    /// then an atomic swap of the `..data` symlink, and per-key symlinks.
    pub fn write_keys(&mut self, keys: &BTreeMap<String, Vec<u8>>) {
        use std::os::unix::fs::symlink;
        self.generation += 1;
        let root = self.dir.join("keys");
        let data = format!("..{}", self.generation);
        std::fs::create_dir_all(root.join(&data)).unwrap();
        for (k, v) in keys {
            std::fs::write(root.join(&data).join(k), v).unwrap();
        }
        let tmp = root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
        for k in keys.keys() {
            let link = root.join(k);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{k}"), &link).unwrap();
            }
        }
        for e in std::fs::read_dir(&root).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !keys.contains_key(&name) {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        if self.generation > 1 {
            let _ = std::fs::remove_dir_all(root.join(format!("..{}", self.generation - 1)));
        }
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("http://{}{path}", self.public)).await.unwrap().json().await.unwrap()
    }

    /// `client_credentials` (RFC 6749 §4.4) with `client_secret_basic`.
    pub async fn client_credentials(&self, id: &str, secret: &str, resource: &str, scope: &str) -> String {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/oauth/token", self.public))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("resource", resource), ("scope", scope)])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(status.is_success(), "token request failed: {status} {body}");
        body["access_token"].as_str().unwrap().to_owned()
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
