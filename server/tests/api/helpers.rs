//! `spawn_app()`: the real `authserver` binary on port 0 with a fresh
//! database (SQLite by default; Postgres when AUTHPLANE_TEST_POSTGRES_URL is
//! set, one new database per test) and a fresh key directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const BIN: &str = env!("CARGO_BIN_EXE_authserver");
/// argon2id of "alice-password".
pub const ALICE_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$ISpOMCRB4CZoCZHeSwUEsQ$cjCXvPfq7DAQvjKS/CtPf+wGitmlMKZUv/YlJtcC2K4";

pub fn postgres_base() -> Option<String> {
    std::env::var("AUTHPLANE_TEST_POSTGRES_URL").ok().filter(|s| !s.is_empty())
}

/// A database URL for one test: a new SQLite file in `dir`, or a new
/// Postgres database.
pub async fn fresh_database(dir: &Path) -> String {
    match postgres_base() {
        None => format!("sqlite://{}/authplane.db?mode=rwc", dir.display()),
        Some(base) => {
            let name = format!("t_{}", hex(&rand_bytes()));
            let admin = Database::connect(format!("{base}/postgres")).await.expect("connect to test postgres");
            admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.expect("create database");
            admin.close().await.ok();
            format!("{base}/{name}")
        }
    }
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The default test config: one resource, one public client, one user.
pub fn base_config(dir: &Path, db_url: &str) -> String {
    format!(
        r#"server:
  issuer: http://localhost:9000
  listen: 127.0.0.1:0
  shutdown_timeout: 5s
admin:
  listen: 127.0.0.1:0
  api_key: {ADMIN_KEY}
database:
  url: "{db_url}"
signing:
  key_store: file
  key_dir: {dir}/keys
log:
  level: debug
resources:
  - resource: http://localhost:8080/mcp
    name: Test MCP
    scopes: [tools/read, tools/write]
clients:
  - client_id: test-client
    redirect_uris: ["http://127.0.0.1/callback"]
users:
  - username: alice
    id: user-42
    password_hash: "{ALICE_HASH}"
"#,
        dir = dir.display()
    )
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub db_url: String,
    pub public: String,
    pub admin: String,
    pub http: reqwest::Client,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

#[derive(Default)]
pub struct Spawn {
    pub config: Option<String>,
    pub env: Vec<(String, String)>,
}

/// The binary with a clean AUTHPLANE_* environment plus `env`.
pub fn command(args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AUTHPLANE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|dir, db| Spawn { config: Some(base_config(dir, db)), env: vec![] }).await
}

/// The default test config with `extra` YAML sections appended.
pub async fn spawn_with_extra(extra: &str) -> TestApp {
    spawn_with(|dir, db| Spawn { config: Some(format!("{}{extra}", base_config(dir, db))), env: vec![] }).await
}

/// Starts the server with the config `f` returns for a fresh dir and DB.
pub async fn spawn_with(f: impl FnOnce(&Path, &str) -> Spawn) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_database(dir.path()).await;
    let spec = f(dir.path(), &db_url);
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, spec.config.unwrap_or_default()).unwrap();
    start(dir, config_path, db_url, &spec.env)
}

pub fn start(dir: tempfile::TempDir, config_path: PathBuf, db_url: String, env: &[(String, String)]) -> TestApp {
    match launch(dir, config_path, db_url, env).wait() {
        Ok(app) => app,
        Err(e) => panic!("{e}"),
    }
}

/// A started process that has not yet said "authserver started".
pub struct Launching {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    db_url: String,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

/// Starts the binary without waiting, so several can start at once.
pub fn launch(dir: tempfile::TempDir, config_path: PathBuf, db_url: String, env: &[(String, String)]) -> Launching {
    let mut child = command(&["--config", config_path.to_str().unwrap(), "serve"], env)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                logs.lock().unwrap().push(line);
            }
        });
    }
    Launching { dir, config_path, db_url, child, logs }
}

impl Launching {
    /// Waits for "authserver started"; `Err` (exit status and log) when the
    /// process exits first.
    pub fn wait(mut self) -> Result<TestApp, String> {
        let logs = self.logs.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let started = loop {
            if let Some(l) = logs.lock().unwrap().iter().find(|l| l.contains("authserver started")) {
                break l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "authserver exited with {status} before starting:\n{}",
                    logs.lock().unwrap().join("\n")
                ));
            }
            assert!(Instant::now() < deadline, "authserver did not start:\n{}", logs.lock().unwrap().join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        };
        let (public, admin) = if started.starts_with('{') {
            let v: Value = serde_json::from_str(&started).unwrap();
            (format!("http://{}", v["public"].as_str().unwrap()), format!("http://{}", v["admin"].as_str().unwrap()))
        } else {
            (
                format!("http://{}", field(&started, "public").unwrap()),
                format!("http://{}", field(&started, "admin").unwrap()),
            )
        };
        let Launching { dir, config_path, db_url, child, logs } = self;
        Ok(TestApp { dir, config_path, db_url, public, admin, http: reqwest::Client::new(), child, logs })
    }
}

/// The value of `key=` in a logfmt line (unquoted values only).
pub fn field(line: &str, key: &str) -> Option<String> {
    line.split(' ').find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(|v| v.trim_matches('"').to_owned()))
}

impl TestApp {
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn key_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.public)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn health(&self) -> (u16, Value) {
        self.get_json("/health").await
    }

    pub async fn metadata(&self) -> Value {
        let (s, v) = self.get_json("/.well-known/oauth-authorization-server").await;
        assert_eq!(s, 200);
        v
    }

    pub async fn jwks_kids(&self) -> Vec<String> {
        let (_, v) = self.get_json("/.well-known/jwks.json").await;
        v["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    }

    pub fn admin_req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.admin)).bearer_auth(ADMIN_KEY)
    }

    pub async fn admin_json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.admin_req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let s = res.status().as_u16();
        (s, res.json().await.unwrap_or(Value::Null))
    }

    /// The signing key's kid per `GET /admin/keys`.
    pub async fn current_kid(&self) -> String {
        let (_, v) = self.admin_json(reqwest::Method::GET, "/admin/keys", None).await;
        v["keys"].as_array().unwrap().iter().find(|k| k["phase"] == "current").unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Whether the process is still running (it did not exit or panic).
    #[allow(dead_code)] // used by the postgres test binary, which shares this file
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the CLI with this app's config.
    pub fn cli(&self, args: &[&str], env: &[(String, String)]) -> std::process::Output {
        let mut all = vec!["--config", self.config_path.to_str().unwrap()];
        all.extend_from_slice(args);
        command(&all, env).current_dir(self.dir.path()).output().unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns true, up to `secs` seconds (for background
/// reloads that run every 2 s). Not a timing assertion: it only bounds a wait.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PKCE pair from RFC 7636 Appendix B.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const REDIRECT: &str = "http://127.0.0.1/callback";
pub const RESOURCE: &str = "http://localhost:8080/mcp";

/// A browser: its own cookie jar, redirects not followed.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
}

/// What the AS answered at the end of a flow.
#[derive(Debug)]
pub enum Landing {
    /// A 303 to the client's redirect URI, with its query parsed.
    Client(String, std::collections::HashMap<String, String>),
    /// An HTML page (status, body).
    Page(u16, String),
}

impl Landing {
    pub fn code(&self) -> String {
        match self {
            Landing::Client(_, q) => q.get("code").cloned().unwrap_or_else(|| panic!("no code in {q:?}")),
            other => panic!("expected a redirect with a code, got {other:?}"),
        }
    }

    pub fn query(&self) -> &std::collections::HashMap<String, String> {
        match self {
            Landing::Client(_, q) => q,
            other => panic!("expected a redirect to the client, got {other:?}"),
        }
    }
}

pub fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle).unwrap_or_else(|| panic!("no hidden {name} in page:\n{html}")) + needle.len();
    html[start..].split('"').next().unwrap().to_owned()
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.public.clone(),
        }
    }

    /// GET or follow a URL on the AS; a 303 to the client becomes a Landing::Client.
    pub async fn visit(&self, url: &str) -> Landing {
        let url = if url.starts_with("http://localhost:9000") {
            url.replacen("http://localhost:9000", &self.base, 1)
        } else if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        };
        let res = self.http.get(&url).send().await.unwrap();
        self.land(res).await
    }

    pub async fn land(&self, res: reqwest::Response) -> Landing {
        let status = res.status().as_u16();
        if let Some(loc) = res.headers().get("location") {
            let loc = loc.to_str().unwrap().to_owned();
            if loc.starts_with('/') {
                return Box::pin(self.visit(&loc)).await;
            }
            let u = url::Url::parse(&loc).unwrap();
            let q = u.query_pairs().into_owned().collect();
            let base = format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or(""), u.path());
            return Landing::Client(base, q);
        }
        Landing::Page(status, res.text().await.unwrap())
    }

    pub async fn authorize(&self, extra: &[(&str, &str)]) -> Landing {
        let mut q: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", "test-client"),
            ("redirect_uri", REDIRECT),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "st-1"),
            ("resource", RESOURCE),
        ];
        for (k, _) in extra {
            q.retain(|(qk, _)| qk != k);
        }
        q.extend(extra.iter().filter(|(_, v)| !v.is_empty()).copied());
        let url = format!("{}/oauth/authorize?{}", self.base, serde_urlencoded(&q));
        let res = self.http.get(&url).send().await.unwrap();
        self.land(res).await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Landing {
        let res = self.http.post(format!("{}{path}", self.base)).form(form).send().await.unwrap();
        self.land(res).await
    }

    /// Fills the login page.
    pub async fn login(&self, page: &Landing, user: &str, password: &str) -> Landing {
        let Landing::Page(_, html) = page else { panic!("expected the login page, got {page:?}") };
        assert!(html.contains("name=\"password\""), "not the login page:\n{html}");
        self.post_form(
            "/ui/login",
            &[
                ("request", &hidden(html, "request")),
                ("csrf", &hidden(html, "csrf")),
                ("username", user),
                ("password", password),
            ],
        )
        .await
    }

    pub async fn decide(&self, page: &Landing, decision: &str) -> Landing {
        let Landing::Page(_, html) = page else { panic!("expected the consent page, got {page:?}") };
        assert!(html.contains("name=\"decision\""), "not the consent page:\n{html}");
        self.post_form(
            "/ui/consent",
            &[("request", &hidden(html, "request")), ("csrf", &hidden(html, "csrf")), ("decision", decision)],
        )
        .await
    }

    /// authorize → login as alice → approve.
    pub async fn code_for(&self, extra: &[(&str, &str)]) -> String {
        let login = self.authorize(extra).await;
        let consent = self.login(&login, "alice", "alice-password").await;
        let back = match &consent {
            Landing::Client(..) => consent,
            _ => self.decide(&consent, "approve").await,
        };
        back.code()
    }
}

pub fn serde_urlencoded(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

impl TestApp {
    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let res = self.http.post(format!("{}/oauth/token", self.public)).form(form).send().await.unwrap();
        let s = res.status().as_u16();
        (s, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn exchange(&self, code: &str) -> (u16, Value) {
        self.exchange_as(code, "test-client", REDIRECT, &[]).await
    }

    /// The code exchange for `client_id` and `redirect_uri`, plus `extra`
    /// form fields (a `client_secret`).
    pub async fn exchange_as(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
        ];
        form.extend_from_slice(extra);
        self.token(&form).await
    }

    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.http.get(format!("{}/metrics", self.admin)).send().await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok())).unwrap_or(0.0)
    }

    /// A confidential client created through the admin API: (id, secret).
    pub async fn confidential_client(&self, grants: &[&str]) -> (String, String) {
        let (s, v) = self
            .admin_json(reqwest::Method::POST, "/admin/clients", Some(serde_json::json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": grants, "redirect_uris": ["https://app.example.com/cb"], "allowed_resources": [RESOURCE]})))
            .await;
        assert_eq!(s, 201, "{v}");
        (v["client_id"].as_str().unwrap().to_owned(), v["client_secret"].as_str().unwrap().to_owned())
    }

    pub async fn introspect(&self, who: &(String, String), token: &str) -> Value {
        let res = self
            .http
            .post(format!("{}/oauth/introspect", self.public))
            .basic_auth(&who.0, Some(&who.1))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}

/// Decodes a JWT part without verifying (tests verify separately).
pub fn jwt_part(token: &str, i: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A stored upstream grant of `user_id` at `upstream` ("active", key `k1`,
/// placeholder ciphertext), written at `at`: the broker tests' starting row.
pub fn grant_row(
    user_id: &str,
    upstream: &str,
    refresh: bool,
    expires_at: Option<i64>,
    at: i64,
) -> authplane_server::store::entities::upstream_grant::ActiveModel {
    use sea_orm::ActiveValue::Set;
    authplane_server::store::entities::upstream_grant::ActiveModel {
        user_id: Set(user_id.into()),
        upstream_id: Set(upstream.into()),
        status: Set("active".into()),
        key_id: Set("k1".into()),
        access_token_enc: Set("sealed".into()),
        refresh_token_enc: Set(refresh.then(|| "sealed".into())),
        expires_at: Set(expires_at),
        scope: Set(None),
        refreshing_until: Set(None),
        last_refresh_outcome: Set(None),
        last_refresh_at: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
    }
}
