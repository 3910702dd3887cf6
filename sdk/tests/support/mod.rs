//! Test helpers: start the real `authserver` on loopback with a fresh
//! database and key directory, mint tokens with `jose` (npm), read the AS's
//! metrics. Tests call one method per thing they do (STYLE: spawn_app).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authplane_core::keyfile::SigningKeyFile;
use serde_json::{Value, json};

/// The resource registered in the test AS (as in config/dev.yaml).
pub const RESOURCE: &str = "http://localhost:8080/mcp";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn authserver_bin() -> PathBuf {
    if let Ok(p) = std::env::var("AUTHSERVER_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| workspace_root().join("target"), PathBuf::from);
    let bin = target.join("debug").join("authserver");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p authplane-server` first (sdk/tests/run.sh does), or set AUTHSERVER_BIN",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

/// A running `authserver`, killed on drop.
pub struct AuthServer {
    pub issuer: String,
    pub admin: String,
    pub config: PathBuf,
    pub key_dir: PathBuf,
    pub logs: Arc<Mutex<Vec<String>>>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    pub fn start() -> AuthServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let key_dir = dir.path().join("keys");
        let config = dir.path().join("authserver.yaml");
        let yaml = format!(
            "server:\n  issuer: {issuer}\n  listen: 127.0.0.1:{port}\n\
             admin:\n  listen: 127.0.0.1:0\n\
             database:\n  url: sqlite://{db}?mode=rwc\n\
             signing:\n  key_store: file\n  key_dir: {keys}\n\
             log:\n  level: info\n  format: logfmt\n\
             resources:\n  - resource: {RESOURCE}\n    name: Example MCP server\n    \
             scopes: [tools/read, tools/write]\n    default_scopes: [tools/read]\n",
            db = dir.path().join("a.db").display(),
            keys = key_dir.display(),
        );
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(authserver_bin())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("msg=\"authserver started\"") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let started = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("authserver did not start; its output:\n{}", logs.lock().unwrap().join("\n")));
        let admin = field(&started, "admin").unwrap();
        AuthServer { issuer, admin, config, key_dir, logs, child: Some(child), _dir: dir }
    }

    /// The key files in the AS's key directory, oldest first.
    pub fn keys(&self) -> Vec<SigningKeyFile> {
        let mut keys: Vec<SigningKeyFile> = std::fs::read_dir(&self.key_dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
            .collect();
        keys.sort_by_key(|k| (k.created_at, k.kid.clone()));
        keys
    }

    /// `authserver keys rotate --config <same config>`; returns the new key.
    pub fn rotate(&self) -> SigningKeyFile {
        let before: Vec<String> = self.keys().into_iter().map(|k| k.kid).collect();
        let out =
            Command::new(authserver_bin()).args(["keys", "rotate", "--config"]).arg(&self.config).output().unwrap();
        assert!(out.status.success(), "keys rotate failed: {}", String::from_utf8_lossy(&out.stderr));
        self.keys().into_iter().find(|k| !before.contains(&k.kid)).expect("rotate wrote a new key file")
    }

    /// GET a path on the public listener (blocking, HTTP/1.0).
    pub fn get_public(&self, path: &str) -> (u16, String) {
        http_get(self.issuer.trim_start_matches("http://"), path)
    }

    /// How many JWKS requests the AS has answered, from its own metrics.
    pub fn jwks_requests(&self) -> u64 {
        let (status, body) = http_get(&self.admin, "/metrics");
        assert_eq!(status, 200);
        body.lines()
            .filter(|l| {
                l.starts_with("authplane_http_requests_total{") && l.contains("route=\"/.well-known/jwks.json\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Waits until the AS's JWKS lists `kid` (it re-reads its key directory
    /// every 2 s). Returns how many JWKS requests the wait made.
    pub fn wait_for_kid_in_jwks(&self, kid: &str) -> u64 {
        for n in 1..=100 {
            let (_, body) = self.get_public("/.well-known/jwks.json");
            if body.contains(kid) {
                return n;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("kid {kid} never appeared in the AS's JWKS");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn field(line: &str, name: &str) -> Option<String> {
    line.split(' ').find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

fn http_get(authority: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Good RFC 9068 claims for `issuer` and [`RESOURCE`].
pub fn claims(issuer: &str, scope: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer, "sub": "user-42", "aud": [RESOURCE], "client_id": "dev-client", "scope": scope,
        "iat": now, "exp": now + 300, "jti": format!("jti-{now}-{}", rand_suffix()),
    })
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One token for [`mint`].
pub fn token(name: &str, sign: &str, header: Value, claims: Value) -> Value {
    json!({"name": name, "sign": sign, "header": header, "claims": claims})
}

/// Mints tokens with `jose` through `sdk/tests/js/mint.mjs`.
pub fn mint(key: Option<&SigningKeyFile>, tokens: &[Value]) -> HashMap<String, String> {
    let js = workspace_root().join("sdk/tests/js");
    install_npm_packages(&js);
    let key = key.map(|k| json!({"kid": k.kid, "private_key_pem": k.private_key_pem.expose()}));
    let input = json!({"key": key, "tokens": tokens});
    let mut child = Command::new("node")
        .arg(js.join("mint.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node is needed to mint tokens with jose");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mint.mjs failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `npm ci` once per test process when the pinned packages are missing
/// (sdk/tests/run.sh normally installs them first).
fn install_npm_packages(js: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if js.join("node_modules/jose").exists() && js.join("node_modules/@modelcontextprotocol/sdk").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(js)
            .status()
            .expect("npm is needed to install jose");
        assert!(status.success(), "npm ci in {} failed", js.display());
    });
}

/// A `tracing` subscriber for the current thread that records logfmt lines.
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, Arc<Mutex<Vec<u8>>>) {
    use tracing_subscriber::prelude::*;
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let w = Buf(buf.clone());
    let sub = tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new("authplane_sdk=debug")).with(
        tracing_subscriber::fmt::layer().event_format(authplane_sdk::logfmt::Logfmt).with_writer(move || w.clone()),
    );
    (tracing::subscriber::set_default(sub), buf)
}

pub fn logs_text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}
