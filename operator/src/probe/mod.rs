//! Diagnostics the operator runs from outside the servers: it fetches the
//! documents MCP clients read (an AuthServer's discovery, an MCP server's
//! PRM) and reports in status whether they agree with the objects.
//!
//! A [`Prober`] per controller holds the last document fetched for each
//! object. Reconciles never wait for the network: they register the URL
//! ([`Prober::want`]) and read the last result; a background loop fetches
//! due URLs with bounded concurrency, a timeout and a body-size cap, and
//! triggers a reconcile of the object only when what it fetched differs from
//! the previous fetch. A settled cluster therefore re-fetches every
//! `interval` and writes nothing. The verdicts are pure functions in
//! [`verdict`].

pub mod verdict;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::Stream;
use tokio::sync::{Notify, Semaphore, mpsc};

/// Default time between two fetches of the same URL.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// One fetch, connect to last body byte.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Larger documents are reported as invalid (a PRM or discovery document is
/// a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Fetches in flight at once, across every object of every kind.
pub const CONCURRENCY: usize = 8;

/// The members of a fetched JSON document that the verdicts read; anything
/// else in the document is dropped (it may be large, and is none of our
/// business).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Doc {
    pub resource: Option<String>,
    pub issuer: Option<String>,
    pub authorization_servers: Option<Vec<String>>,
    pub scopes_supported: Option<Vec<String>>,
}

/// What one fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A 2xx JSON object; `url` is the one that answered.
    Doc { url: String, doc: Doc },
    /// 404 or 410 at every URL tried.
    NotFound { url: String, status: u16 },
    /// Any other status (a redirect is not followed).
    Status { url: String, status: u16 },
    /// No HTTP answer: a fixed phrase (`timed out`, `connection refused`,
    /// `DNS lookup failed`, …) so that the condition message stays the same
    /// from one fetch to the next.
    Unreachable { url: String, why: &'static str },
    /// An answer that is not a JSON object of the expected shape.
    Invalid { url: String, why: String },
}

/// Bounds shared by every prober: the HTTP client, the concurrency cap and
/// the interval.
pub struct Probes {
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    pub interval: Duration,
}

impl Probes {
    /// The operator's bounds: [`TIMEOUT`], [`CONCURRENCY`] and `interval`.
    pub fn new(interval: Duration) -> Arc<Probes> {
        Probes::with_bounds(interval, TIMEOUT, CONCURRENCY)
    }

    pub fn with_bounds(interval: Duration, timeout: Duration, concurrency: usize) -> Arc<Probes> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            // The operator reports what the URL itself answers; clients
            // following a redirect is their business.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("authplane-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Arc::new(Probes { http, permits: Arc::new(Semaphore::new(concurrency)), interval })
    }

    /// Fetches the first of `urls` that does not answer 404/410.
    pub async fn fetch(&self, urls: &[String]) -> Fetched {
        let mut last = Fetched::Invalid { url: String::new(), why: "no URL to fetch".into() };
        for url in urls {
            last = self.fetch_one(url).await;
            if !matches!(last, Fetched::NotFound { .. }) {
                break;
            }
        }
        last
    }

    async fn fetch_one(&self, url: &str) -> Fetched {
        let url_s = url.to_owned();
        let resp = match self.http.get(url).header("accept", "application/json").send().await {
            Ok(r) => r,
            Err(e) => {
                let why = unreachable_phrase(&e);
                tracing::debug!(url, why, detail = %error_chain(&e), "diagnostic fetch failed");
                return Fetched::Unreachable { url: url_s, why };
            }
        };
        let status = resp.status().as_u16();
        if status == 404 || status == 410 {
            return Fetched::NotFound { url: url_s, status };
        }
        if !resp.status().is_success() {
            return Fetched::Status { url: url_s, status };
        }
        match read_capped(resp, MAX_BODY_BYTES).await {
            Ok(Some(body)) => match parse_doc(&body) {
                Ok(doc) => Fetched::Doc { url: url_s, doc },
                Err(why) => Fetched::Invalid { url: url_s, why },
            },
            Ok(None) => Fetched::Invalid { url: url_s, why: format!("the body is larger than {MAX_BODY_BYTES} bytes") },
            Err(e) => Fetched::Unreachable { url: url_s, why: unreachable_phrase(&e) },
        }
    }
}

/// The body, or `None` once it passes `cap` bytes (the rest is not read).
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The members the verdicts use, each checked for its JSON type.
pub fn parse_doc(body: &[u8]) -> Result<Doc, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let string = |k: &str| -> Result<Option<String>, String> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{k}` is not a string")),
        }
    };
    let strings = |k: &str| -> Result<Option<Vec<String>>, String> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| format!("`{k}` holds a non-string")))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("`{k}` is not an array")),
        }
    };
    Ok(Doc {
        resource: string("resource")?,
        issuer: string("issuer")?,
        authorization_servers: strings("authorization_servers")?,
        scopes_supported: strings("scopes_supported")?,
    })
}

/// A fixed phrase for a failed request (the full error goes to the debug log).
fn unreachable_phrase(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        return "timed out";
    }
    let chain = error_chain(e).to_ascii_lowercase();
    let io_kind = {
        let mut src: Option<&dyn std::error::Error> = Some(e);
        let mut kind = None;
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                kind = Some(io.kind());
            }
            src = s.source();
        }
        kind
    };
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset",
        Some(std::io::ErrorKind::TimedOut) => "timed out",
        _ if chain.contains("dns") || chain.contains("resolve") || chain.contains("lookup") => "DNS lookup failed",
        _ if chain.contains("certificate") || chain.contains("tls") => "TLS handshake failed",
        _ if e.is_connect() => "cannot connect",
        _ => "no HTTP answer",
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

struct Entry {
    urls: Vec<String>,
    fetched: Option<Fetched>,
    next_at: Instant,
    in_flight: bool,
}

/// The last fetch per object of one kind; see the module docs.
pub struct Prober<K: Clone + Eq + Hash> {
    probes: Arc<Probes>,
    entries: Mutex<HashMap<K, Entry>>,
    wake: Notify,
    trigger: mpsc::UnboundedSender<K>,
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Prober<K> {
    /// The prober and the stream of objects whose fetched document changed
    /// (for `Controller::reconcile_on`).
    pub fn new(probes: Arc<Probes>) -> (Arc<Prober<K>>, impl Stream<Item = K> + Send + use<K>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let p = Arc::new(Prober { probes, entries: Mutex::new(HashMap::new()), wake: Notify::new(), trigger: tx });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) });
        (p, stream)
    }

    /// Registers `urls` for `key` and returns the last fetch of exactly
    /// those URLs, if one finished; `None` means "being fetched".
    pub fn want(&self, key: K, urls: Vec<String>) -> Option<Fetched> {
        let Ok(mut m) = self.entries.lock() else { return None };
        match m.get_mut(&key) {
            Some(e) if e.urls == urls => e.fetched.clone(),
            Some(e) => {
                *e = Entry { urls, fetched: None, next_at: Instant::now(), in_flight: false };
                self.wake.notify_one();
                None
            }
            None => {
                m.insert(key, Entry { urls, fetched: None, next_at: Instant::now(), in_flight: false });
                self.wake.notify_one();
                None
            }
        }
    }

    /// Stops fetching for `key`.
    pub fn forget(&self, key: &K) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(key);
        }
    }

    /// Objects registered now.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fetches due URLs until the trigger stream is dropped (the controller
    /// stopped). `alive` drops entries of objects that no longer exist.
    pub async fn run(self: Arc<Self>, alive: impl Fn(&K) -> bool + Send + 'static) {
        loop {
            if self.trigger.is_closed() {
                return;
            }
            let now = Instant::now();
            let mut due = Vec::new();
            if let Ok(mut m) = self.entries.lock() {
                m.retain(|k, _| alive(k));
                // Longest overdue first: when more is due than the cap
                // allows, every object still gets its turn (the interval
                // stretches) instead of the same few going again.
                let mut ready: Vec<(Instant, K)> = m
                    .iter()
                    .filter(|(_, e)| !e.in_flight && e.next_at <= now)
                    .map(|(k, e)| (e.next_at, k.clone()))
                    .collect();
                ready.sort_by_key(|(at, _)| *at);
                for (_, k) in ready {
                    let Ok(permit) = self.probes.permits.clone().try_acquire_owned() else { break };
                    if let Some(e) = m.get_mut(&k) {
                        e.in_flight = true;
                        due.push((k, e.urls.clone(), permit));
                    }
                }
            }
            for (key, urls, permit) in due {
                let me = self.clone();
                tokio::spawn(async move {
                    let fetched = me.probes.fetch(&urls).await;
                    drop(permit);
                    me.done(key, &urls, fetched);
                });
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn done(&self, key: K, urls: &[String], fetched: Fetched) {
        let changed = {
            let Ok(mut m) = self.entries.lock() else { return };
            let Some(e) = m.get_mut(&key).filter(|e| e.urls == urls) else { return };
            e.in_flight = false;
            e.next_at = Instant::now() + self.probes.interval;
            let changed = e.fetched.as_ref() != Some(&fetched);
            e.fetched = Some(fetched);
            changed
        };
        // A free permit may let a waiting entry go now rather than next tick.
        self.wake.notify_one();
        if changed {
            let _ = self.trigger.send(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback HTTP/1.1 server: `answer(path)` gives the raw response
    /// (`None` = never answer); counts requests and the most in flight.
    struct TestServer {
        addr: std::net::SocketAddr,
        requests: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }

    impl TestServer {
        async fn start(delay: Duration, answer: fn(&str, usize) -> Option<Vec<u8>>) -> TestServer {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(AtomicUsize::new(0));
            let (peak, now) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let (r, p) = (requests.clone(), peak.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else { return };
                    let (r, p, now) = (r.clone(), p.clone(), now.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        let n = sock.read(&mut buf).await.unwrap_or(0);
                        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                        let i = r.fetch_add(1, Ordering::SeqCst);
                        let inflight = now.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(inflight, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        match answer(&path, i) {
                            Some(resp) => {
                                let _ = sock.write_all(&resp).await;
                            }
                            None => tokio::time::sleep(Duration::from_secs(60)).await,
                        }
                        now.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
            TestServer { addr, requests, peak }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }
    }

    fn response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn routes(path: &str, i: usize) -> Option<Vec<u8>> {
        match path {
            "/doc" => Some(response("200 OK", br#"{"issuer":"https://a"}"#)),
            // A document that changes on every other request.
            "/flip" => Some(response("200 OK", format!(r#"{{"issuer":"https://{}"}}"#, i / 2 % 2).as_bytes())),
            "/big" => Some(response("200 OK", &vec![b' '; MAX_BODY_BYTES + 1])),
            // No content-length: the cap holds on a streamed body too.
            "/stream" => {
                let mut r = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
                r.extend(std::iter::repeat_n(b' ', MAX_BODY_BYTES * 2));
                Some(r)
            }
            "/redirect" => {
                Some(b"HTTP/1.1 302 Found\r\nlocation: /doc\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec())
            }
            "/hang" => None,
            _ => Some(response("404 Not Found", b"")),
        }
    }

    #[test]
    fn documents_keep_only_typed_members() {
        let d = parse_doc(
            br#"{"resource":"https://m/mcp","authorization_servers":["https://a"],"scopes_supported":["x"],"other":[1]}"#,
        )
        .unwrap();
        assert_eq!(d.resource.as_deref(), Some("https://m/mcp"));
        assert_eq!(d.authorization_servers, Some(vec!["https://a".to_owned()]));
        assert_eq!(d.scopes_supported, Some(vec!["x".to_owned()]));
        assert!(parse_doc(b"[]").unwrap_err().contains("object"));
        assert!(parse_doc(b"<html>").unwrap_err().contains("not JSON"));
        assert!(parse_doc(br#"{"resource":1}"#).unwrap_err().contains("`resource` is not a string"));
        assert!(parse_doc(br#"{"authorization_servers":"https://a"}"#).unwrap_err().contains("not an array"));
        assert!(parse_doc(br#"{"scopes_supported":[1]}"#).unwrap_err().contains("non-string"));
    }

    #[tokio::test]
    async fn fetches_are_bounded_in_size_time_and_redirects() {
        let srv = TestServer::start(Duration::ZERO, routes).await;
        let p = Probes::with_bounds(Duration::from_secs(60), Duration::from_millis(500), 2);
        let big = p.fetch(&[srv.url("/big")]).await;
        assert!(matches!(&big, Fetched::Invalid { why, .. } if why.contains("larger than")), "{big:?}");
        let stream = p.fetch(&[srv.url("/stream")]).await;
        assert!(matches!(&stream, Fetched::Invalid { why, .. } if why.contains("larger than")), "{stream:?}");
        let t = Instant::now();
        let hang = p.fetch(&[srv.url("/hang")]).await;
        assert_eq!(hang, Fetched::Unreachable { url: srv.url("/hang"), why: "timed out" });
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        let redirect = p.fetch(&[srv.url("/redirect")]).await;
        assert_eq!(redirect, Fetched::Status { url: srv.url("/redirect"), status: 302 });
        // 404 falls through to the next URL; the one that answered is named.
        let doc = p.fetch(&[srv.url("/missing"), srv.url("/doc")]).await;
        assert!(
            matches!(&doc, Fetched::Doc { url, doc } if *url == srv.url("/doc") && doc.issuer.as_deref() == Some("https://a")),
            "{doc:?}"
        );
        let nf = p.fetch(&[srv.url("/missing")]).await;
        assert_eq!(nf, Fetched::NotFound { url: srv.url("/missing"), status: 404 });
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/doc", l.local_addr().unwrap())
        };
        assert!(matches!(p.fetch(&[closed]).await, Fetched::Unreachable { why: "connection refused", .. }));
    }

    #[tokio::test]
    async fn at_most_the_cap_fetch_at_once_and_a_reconcile_is_triggered_once_per_change() {
        let srv = TestServer::start(Duration::from_millis(150), routes).await;
        let probes = Probes::with_bounds(Duration::from_millis(300), Duration::from_secs(2), 3);
        let (prober, changed) = Prober::<String>::new(probes);
        let mut changed = std::pin::pin!(changed);
        tokio::spawn(prober.clone().run(|_| true));
        for i in 0..12 {
            assert_eq!(prober.want(format!("obj-{i}"), vec![srv.url("/doc")]), None);
        }
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 12 {
            let k = tokio::time::timeout(Duration::from_secs(10), changed.next()).await.unwrap().unwrap();
            seen.insert(k);
        }
        assert!(srv.peak.load(Ordering::SeqCst) <= 3, "{} fetches at once", srv.peak.load(Ordering::SeqCst));
        assert!(prober.want("obj-0".into(), vec![srv.url("/doc")]).is_some());
        // Several more rounds of the same document: fetched again, no trigger.
        let before = srv.requests.load(Ordering::SeqCst);
        let quiet = tokio::time::timeout(Duration::from_millis(1500), changed.next()).await;
        assert!(quiet.is_err(), "a trigger without a change: {quiet:?}");
        assert!(srv.requests.load(Ordering::SeqCst) >= before + 12, "no periodic re-fetch");
        // A forgotten or dead object is no longer fetched.
        for i in 0..12 {
            prober.forget(&format!("obj-{i}"));
        }
        assert!(prober.is_empty());
    }

    #[tokio::test]
    async fn a_changed_document_triggers_again_and_a_new_url_starts_over() {
        let srv = TestServer::start(Duration::ZERO, routes).await;
        let (prober, changed) =
            Prober::<String>::new(Probes::with_bounds(Duration::from_millis(200), Duration::from_secs(2), 2));
        let mut changed = std::pin::pin!(changed);
        tokio::spawn(prober.clone().run(|_| true));
        prober.want("a".into(), vec![srv.url("/flip")]);
        for _ in 0..3 {
            let k = tokio::time::timeout(Duration::from_secs(5), changed.next()).await.unwrap().unwrap();
            assert_eq!(k, "a");
        }
        assert_eq!(prober.want("a".into(), vec![srv.url("/doc")]), None, "a new URL has no result yet");
    }
}
