//! `authserver doctor`: the debugging checklist (docs/debugging-checklist.md),
//! walked from the outside against a running deployment. Each step reports
//! what it saw (the evidence), a verdict in the page's own words, and the fix.
//! It never prints a token or a secret in full.

use std::time::Duration;

use authplane_core::ResourceUri;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

/// What to check.
#[derive(Debug, Clone)]
pub struct Target {
    pub issuer: String,
    pub admin_url: Option<String>,
    /// The protected resource (the MCP server's URI as registered).
    pub resource: Option<String>,
    /// The MCP endpoint to call (defaults to the resource).
    pub mcp_url: Option<String>,
    pub token: Option<String>,
    pub admin_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Not checked (an input is missing) or informational.
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: u8,
    pub title: &'static str,
    pub verdict: Verdict,
    pub evidence: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub steps: Vec<Step>,
}

const TITLES: [&str; 10] = [
    "Is AuthPlane reachable?",
    "Does discovery work?",
    "Do scopes advertise correctly?",
    "Is your token signed by the expected key?",
    "Does the token's aud match your resource?",
    "Is your MCP server's SDK reading the token?",
    "Are metrics telling you a story?",
    "Correlate a specific failing request end-to-end",
    "Reproduce with MCP Inspector",
    "Check the audit log",
];

/// Clock-skew tolerance, as everywhere in AuthPlane.
const SKEW: i64 = 30;

struct Run {
    http: reqwest::Client,
    steps: Vec<Step>,
    /// The trace id of the last failing answer, for step 8.
    failing_trace: Option<String>,
}

impl Run {
    fn add(&mut self, step: u8, verdict: Verdict, evidence: impl Into<String>, fix: Option<&str>) {
        let title = TITLES[usize::from(step - 1)];
        self.steps.push(Step { step, title, verdict, evidence: evidence.into(), fix: fix.map(str::to_owned) });
    }

    async fn get(
        &mut self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<(u16, reqwest::header::HeaderMap, String), String> {
        let mut req = self.http.get(url);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let res = req.send().await.map_err(|e| one_line(&e))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        if status >= 400 {
            self.note_trace(&headers);
        }
        let body = res.text().await.unwrap_or_default();
        Ok((status, headers, body))
    }

    fn note_trace(&mut self, h: &reqwest::header::HeaderMap) {
        if let Some(tp) = h.get("traceparent").and_then(|v| v.to_str().ok())
            && let Some(id) = tp.split('-').nth(1)
        {
            self.failing_trace = Some(id.to_owned());
        }
    }
}

fn one_line(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// At most 120 characters of an answer, on one line.
fn clip(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > 120 { format!("{}…", flat.chars().take(120).collect::<String>()) } else { flat }
}

/// A token as it may be shown: its first characters and its length.
pub fn redact(token: &str) -> String {
    format!("{}…({} chars)", token.chars().take(10).collect::<String>(), token.len())
}

fn jwt_part(token: &str, i: usize) -> Option<Value> {
    let part = token.split('.').nth(i)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&raw).ok()
}

fn same_resource(a: &str, b: &str) -> bool {
    match (ResourceUri::parse(a), ResourceUri::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Where RFC 8414 metadata lives for `issuer` (path-inserted for an issuer with a path).
fn metadata_url(issuer: &str) -> String {
    match url::Url::parse(issuer) {
        Ok(u) if u.path() != "/" && !u.path().is_empty() => {
            format!("{}/.well-known/oauth-authorization-server{}", u.origin().ascii_serialization(), u.path())
        }
        _ => format!("{issuer}/.well-known/oauth-authorization-server"),
    }
}

/// RFC 9728 locations of a resource's PRM: path-suffixed first, then the root form.
fn prm_urls(resource: &str) -> Vec<String> {
    let Ok(u) = url::Url::parse(resource) else { return vec![] };
    let origin = u.origin().ascii_serialization();
    let mut out = Vec::new();
    let path = u.path().trim_end_matches('/');
    if !path.is_empty() {
        out.push(format!("{origin}/.well-known/oauth-protected-resource{path}"));
    }
    out.push(format!("{origin}/.well-known/oauth-protected-resource"));
    out
}

pub async fn run(t: &Target, now: i64) -> Report {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let mut r = Run { http, steps: Vec::new(), failing_trace: None };
    let issuer = t.issuer.trim_end_matches('/').to_owned();

    // Step 1: health.
    match r.get(&format!("{issuer}/health"), None).await {
        Err(e) => r.add(
            1,
            Verdict::Fail,
            format!("GET {issuer}/health: {e}"),
            Some("AuthPlane isn't running or not at this URL. Check docker ps / systemctl status authserver / the pod status, and the port (public 9000)."),
        ),
        Ok((200, _, body)) if body.contains("\"db\":\"ok\"") => r.add(1, Verdict::Pass, clip(&body), None),
        Ok((503, _, body)) => r.add(
            1,
            Verdict::Fail,
            clip(&body),
            Some("\"status\":\"degraded\",\"db\":\"error\" → DB unreachable. For Postgres check the DSN + network reachability; for SQLite check the file exists and is writable by the AuthPlane user."),
        ),
        Ok((404, _, _)) => {
            let admin = r.get(&format!("{issuer}/healthz"), None).await.is_ok_and(|(s, _, _)| s == 200);
            let fix = if admin {
                "This is the admin listener. Discovery is on port 9000 (public), not 9001: pass the public URL as --issuer."
            } else {
                "404 → wrong URL: pass AuthPlane's public base URL (its issuer) as --issuer."
            };
            r.add(1, Verdict::Fail, format!("GET {issuer}/health answered 404"), Some(fix));
        }
        Ok((s, _, body)) => r.add(1, Verdict::Fail, format!("HTTP {s}: {}", clip(&body)), Some("See the log line with this request's trace_id (step 8).")),
    }

    // Step 2: discovery, JWKS, PRM.
    let mut metadata = Value::Null;
    let murl = metadata_url(&issuer);
    match r.get(&murl, None).await {
        Ok((200, _, body)) => match serde_json::from_str::<Value>(&body) {
            Ok(v) if v["issuer"] == issuer.as_str() => {
                r.add(2, Verdict::Pass, format!("issuer {} matches", v["issuer"]), None);
                metadata = v;
            }
            Ok(v) => {
                r.add(
                    2,
                    Verdict::Fail,
                    format!("issuer {} ≠ {issuer:?}", v["issuer"]),
                    Some("issuer doesn't match → wrong AUTHPLANE_SERVER_ISSUER at boot; every downstream check (JWT iss validation) will fail. Set it to the URL clients use."),
                );
                metadata = v;
            }
            Err(_) => r.add(
                2,
                Verdict::Fail,
                format!("{murl}: not JSON: {}", clip(&body)),
                Some("Discovery is on port 9000 (public), not 9001."),
            ),
        },
        Ok((404, _, _)) => r.add(
            2,
            Verdict::Fail,
            format!("GET {murl} answered 404"),
            Some("404 → wrong URL. Discovery is on port 9000 (public), not 9001."),
        ),
        Ok((s, _, body)) => r.add(
            2,
            Verdict::Fail,
            format!("GET {murl}: HTTP {s} {}", clip(&body)),
            Some("Check the issuer URL and the server's log (step 8)."),
        ),
        Err(e) => r.add(
            2,
            Verdict::Fail,
            format!("GET {murl}: {e}"),
            Some("AuthPlane is not reachable at --issuer (step 1)."),
        ),
    }
    let mut jwks_kids: Option<Vec<String>> = None;
    if !metadata.is_null() {
        let jwks_uri = metadata["jwks_uri"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        let fetched = match r.get(&jwks_uri, None).await {
            Ok(ok) => Ok(ok),
            // The advertised URI may be unreachable from here (a wrong issuer): try the one given.
            Err(_) => r.get(&format!("{issuer}/.well-known/jwks.json"), None).await,
        };
        match fetched {
            Ok((200, _, body)) => {
                let kids: Vec<String> = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| {
                        v["keys"]
                            .as_array()
                            .map(|k| k.iter().filter_map(|k| k["kid"].as_str().map(str::to_owned)).collect())
                    })
                    .unwrap_or_default();
                if kids.is_empty() {
                    r.add(
                        2,
                        Verdict::Fail,
                        "JWKS has 0 keys",
                        Some("0 keys → key store misconfig. Check signing.key_store and the key path/DB backing it."),
                    );
                } else {
                    r.add(2, Verdict::Pass, format!("JWKS has {} key(s): {}", kids.len(), kids.join(", ")), None);
                }
                jwks_kids = Some(kids);
            }
            Ok((s, _, _)) => r.add(
                2,
                Verdict::Fail,
                format!("GET {jwks_uri}: HTTP {s}"),
                Some("Check signing.key_store and the key path."),
            ),
            Err(e) => r.add(
                2,
                Verdict::Fail,
                format!("GET {jwks_uri}: {e}"),
                Some("jwks_uri is not reachable: check AUTHPLANE_SERVER_ISSUER."),
            ),
        }
    }
    let resource = t.resource.clone().or_else(|| t.mcp_url.clone());
    let mut prm = Value::Null;
    if let Some(res) = &resource {
        let mut found = None;
        let mut tried = Vec::new();
        for u in prm_urls(res) {
            match r.get(&u, None).await {
                Ok((200, _, body)) => {
                    found = serde_json::from_str::<Value>(&body).ok();
                    tried.push(format!("{u} → 200"));
                    break;
                }
                Ok((s, _, _)) => tried.push(format!("{u} → {s}")),
                Err(e) => tried.push(format!("{u} → {e}")),
            }
        }
        match found {
            None => r.add(
                2,
                Verdict::Fail,
                format!("PRM not found: {}", tried.join("; ")),
                Some(
                    "404 → SDK didn't mount the PRM handler (authplane_sdk prm_router / PrmService) on the MCP server.",
                ),
            ),
            Some(v) => {
                let servers: Vec<String> = v["authorization_servers"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(|s| s.trim_end_matches('/').to_owned())).collect())
                    .unwrap_or_default();
                let prm_resource = v["resource"].as_str().unwrap_or_default().to_owned();
                if servers.is_empty() || !servers.contains(&issuer) {
                    r.add(
                        2,
                        Verdict::Fail,
                        format!("PRM authorization_servers {servers:?} lacks {issuer:?}"),
                        Some("authorization_servers empty or elsewhere → wrong issuer passed to your SDK."),
                    );
                } else if !same_resource(&prm_resource, res) {
                    r.add(
                        2,
                        Verdict::Fail,
                        format!("PRM resource {prm_resource:?} ≠ {res:?}"),
                        Some("The SDK's resource must be the URI registered with AuthPlane and used by clients."),
                    );
                } else {
                    r.add(
                        2,
                        Verdict::Pass,
                        format!("PRM at {} names {issuer}", tried.last().cloned().unwrap_or_default()),
                        None,
                    );
                }
                prm = v;
            }
        }
    } else {
        r.add(2, Verdict::Skip, "PRM not checked: pass --resource or --mcp-url", None);
    }

    // Step 3: scopes.
    if metadata.is_null() {
        r.add(3, Verdict::Skip, "no discovery document", None);
    } else {
        let scopes: Vec<String> = metadata["scopes_supported"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if scopes.is_empty() {
            r.add(
                3,
                Verdict::Fail,
                "scopes_supported is empty",
                Some("Empty = no resources registered, or scopes not declared on any resource. Check: authserver admin resource list."),
            );
        } else {
            let missing: Vec<String> = prm["scopes_supported"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str())
                        .filter(|s| !scopes.iter().any(|x| x == s))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if missing.is_empty() {
                r.add(3, Verdict::Pass, format!("scopes_supported {scopes:?}"), None);
            } else {
                r.add(
                    3,
                    Verdict::Fail,
                    format!("the PRM advertises {missing:?}, which AuthPlane does not"),
                    Some("Declare those scopes on the resource (authserver admin resource create … --scope …)."),
                );
            }
        }
    }

    // Steps 4 and 5: the token.
    let mut subject = None;
    match t.token.as_deref() {
        None => {
            r.add(4, Verdict::Skip, "no token: pass --token (or --token - to read it from stdin)", None);
            r.add(5, Verdict::Skip, "no token", None);
        }
        Some(tok) => {
            let shown = redact(tok);
            match (jwt_part(tok, 0), jwt_part(tok, 1)) {
                (Some(h), Some(c)) => {
                    let kid = h["kid"].as_str().unwrap_or_default().to_owned();
                    let header_ok = h["alg"] == "ES256" && h["typ"] == "at+jwt";
                    match &jwks_kids {
                        _ if !header_ok => r.add(4, Verdict::Fail, format!("{shown}: header {h}"), Some("AuthPlane signs ES256 tokens with typ at+jwt (RFC 9068): this token comes from somewhere else.")),
                        Some(kids) if kids.contains(&kid) => r.add(4, Verdict::Pass, format!("{shown}: alg ES256, typ at+jwt, kid {kid} is in JWKS"), None),
                        Some(kids) => r.add(
                            4,
                            Verdict::Fail,
                            format!("{shown}: kid {kid:?} is not in JWKS {kids:?}"),
                            Some("kid not in the JWKS → signed by a retired key or another server; an SDK with a stale JWKS refreshes within 5 min. Get a new token."),
                        ),
                        None => r.add(4, Verdict::Skip, format!("{shown}: kid {kid}; JWKS not fetched (step 2)"), None),
                    }
                    subject = c["sub"].as_str().map(str::to_owned);
                    let mut problems = Vec::new();
                    let mut fixes = Vec::new();
                    if c["iss"] != issuer.as_str() {
                        problems.push(format!("iss {} ≠ {issuer:?}", c["iss"]));
                        fixes.push("iss doesn't match AuthPlane's issuer → wrong AuthPlane URL in the SDK's config, or a token from another server.");
                    }
                    let aud: Vec<String> = match &c["aud"] {
                        Value::String(s) => vec![s.clone()],
                        Value::Array(a) => a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect(),
                        _ => vec![],
                    };
                    if let Some(res) = &resource
                        && !aud.iter().any(|a| same_resource(a, res))
                    {
                        problems.push(format!("aud {aud:?} lacks {res:?}"));
                        fixes.push("aud doesn't contain your resource URI → RFC 8707 mismatch: the client didn't send resource=<your-uri> on /oauth/authorize. The fix is on the client (or your PRM advertisement) — AUTHPLANE_OAUTH_REQUIRE_SCOPE only affects scope defaulting, not audience enforcement, and toggling it will not repair an audience mismatch.");
                    }
                    let exp = c["exp"].as_i64().unwrap_or(0);
                    if c["exp"].as_i64().is_none() {
                        problems.push("no exp claim".to_owned());
                        fixes.push("AuthPlane's tokens always carry exp: this token comes from somewhere else.");
                    } else if exp + SKEW < now {
                        problems.push(format!("expired {} s ago", now - exp));
                        fixes.push("exp is past (30 s tolerance): get a new token (refresh), or check the clocks.");
                    }
                    if let Some(iat) = c["iat"].as_i64()
                        && iat > now + SKEW
                    {
                        problems.push(format!("issued {} s in the future", iat - now));
                        fixes.push("iat is ahead of this machine's clock by more than 30 s: clock skew. Sync the clocks (NTP).");
                    }
                    let summary = format!(
                        "iss {}, aud {aud:?}, sub {}, scope {}, exp in {} s",
                        c["iss"],
                        c["sub"],
                        c["scope"],
                        exp - now
                    );
                    if problems.is_empty() {
                        r.add(5, Verdict::Pass, summary, None);
                    } else {
                        let fix = fixes.join(" ");
                        r.add(5, Verdict::Fail, format!("{}; {summary}", problems.join("; ")), Some(&fix));
                    }
                }
                _ => {
                    r.add(
                        4,
                        Verdict::Fail,
                        format!("{shown}: not a JWT"),
                        Some("Pass the access token itself (three base64url parts)."),
                    );
                    r.add(5, Verdict::Skip, "not a JWT", None);
                }
            }
        }
    }

    // Step 6: the MCP server's answer.
    match t.mcp_url.as_deref() {
        None => r.add(6, Verdict::Skip, "pass --mcp-url to call the MCP server", None),
        Some(mcp) => {
            let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "authserver-doctor", "version": crate::build_info::VERSION}}});
            let http = r.http.clone();
            let call = |bearer: Option<&str>| {
                let mut req = http.post(mcp).header("accept", "application/json, text/event-stream").json(&init);
                if let Some(b) = bearer {
                    req = req.bearer_auth(b);
                }
                req.send()
            };
            match call(None).await {
                Err(e) => r.add(
                    6,
                    Verdict::Fail,
                    format!("POST {mcp}: {}", one_line(&e)),
                    Some("The MCP server is not reachable at --mcp-url."),
                ),
                Ok(res) => {
                    let status = res.status().as_u16();
                    let challenge = res
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if status == 401 && challenge.starts_with("Bearer") && challenge.contains("resource_metadata=") {
                        let mut evidence = format!("no token → 401, WWW-Authenticate: {}", clip(&challenge));
                        let mut verdict = Verdict::Pass;
                        let mut fix = None;
                        if let Some(tok) = t.token.as_deref() {
                            match call(Some(tok)).await {
                                Ok(res) if res.status().as_u16() < 400 => {
                                    evidence.push_str(&format!("; with the token → {}", res.status().as_u16()))
                                }
                                Ok(res) => {
                                    let s = res.status().as_u16();
                                    let c = res
                                        .headers()
                                        .get("www-authenticate")
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or_default()
                                        .to_owned();
                                    evidence.push_str(&format!("; with the token → {s} {}", clip(&c)));
                                    verdict = Verdict::Fail;
                                    fix = Some(
                                        "The SDK refused the token: follow the error in WWW-Authenticate (and steps 4–5), or the SDK's log line.",
                                    );
                                }
                                Err(e) => evidence.push_str(&format!("; with the token → {}", one_line(&e))),
                            }
                        }
                        r.add(6, verdict, evidence, fix);
                    } else {
                        r.add(
                            6,
                            Verdict::Fail,
                            format!("no token → HTTP {status}, WWW-Authenticate {:?}", clip(&challenge)),
                            Some("No challenge → SDK isn't wired into the request path. Check middleware ordering: the bearer layer must run BEFORE your tool handlers."),
                        );
                    }
                }
            }
        }
    }

    // Step 7: metrics.
    match t.admin_url.as_deref() {
        None => r.add(7, Verdict::Skip, "pass --admin-url (port 9001) to read /metrics", None),
        Some(admin) => match r.get(&format!("{}/metrics", admin.trim_end_matches('/')), None).await {
            Ok((200, _, text)) => {
                let mut issued = 0.0;
                let mut denials: Vec<(String, f64)> = Vec::new();
                for line in text.lines() {
                    if let Some(rest) = line.strip_prefix("authserver_tokens_issued_total") {
                        issued += rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                    }
                    if let Some(rest) = line.strip_prefix("authserver_auth_denied_total{reason=\"")
                        && let Some((reason, tail)) = rest.split_once('"')
                        && let Some(n) = tail.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())
                        && n > 0.0
                    {
                        denials.push((reason.to_owned(), n));
                    }
                }
                denials.sort_by(|a, b| b.1.total_cmp(&a.1));
                let top: Vec<String> = denials.iter().take(3).map(|(r, n)| format!("{r}={n}")).collect();
                r.add(
                    7,
                    Verdict::Pass,
                    format!(
                        "tokens issued {issued}; top denial reasons: {}",
                        if top.is_empty() { "none".to_owned() } else { top.join(", ") }
                    ),
                    None,
                );
            }
            Ok((s, _, _)) => r.add(
                7,
                Verdict::Fail,
                format!("GET {admin}/metrics: HTTP {s}"),
                Some("Metrics are on the admin port 9001."),
            ),
            Err(e) => r.add(
                7,
                Verdict::Fail,
                format!("GET {admin}/metrics: {e}"),
                Some("The admin listener (9001) is not reachable from here."),
            ),
        },
    }

    // Step 8: what to grep.
    match r.failing_trace.clone() {
        Some(id) => r.add(8, Verdict::Skip, format!("kubectl logs -l app=authplane --tail=1000 | grep trace_id={id}"), None),
        None => r.add(8, Verdict::Skip, "no failing answer from AuthPlane to correlate; for a client's failure, take trace_id from its log line and run: kubectl logs -l app=authplane --tail=1000 | grep trace_id=<id>", None),
    }

    // Step 9: Inspector.
    let target = t.mcp_url.clone().or(resource.clone()).unwrap_or_else(|| "https://mcp.example.com/mcp".into());
    r.add(9, Verdict::Skip, format!("npx @modelcontextprotocol/inspector {target}"), None);

    // Step 10: audit.
    match (t.admin_url.as_deref(), t.admin_key.as_deref(), subject.as_deref()) {
        (Some(admin), Some(key), Some(sub)) => {
            let url = format!("{}/admin/audit?user_id={}&limit=20", admin.trim_end_matches('/'), urlencode(sub));
            match r.get(&url, Some(key)).await {
                Ok((200, _, body)) => {
                    let events: Vec<String> = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| {
                            v["events"].as_array().map(|a| {
                                a.iter()
                                    .map(|e| {
                                        format!(
                                            "{} {}",
                                            e["type"].as_str().unwrap_or("?"),
                                            e["outcome"].as_str().unwrap_or("")
                                        )
                                    })
                                    .collect()
                            })
                        })
                        .unwrap_or_default();
                    r.add(
                        10,
                        Verdict::Pass,
                        format!("{} event(s) for {sub}: {}", events.len(), events.join(", ")),
                        None,
                    );
                }
                Ok((401, _, _)) => r.add(
                    10,
                    Verdict::Fail,
                    "the admin API refused the key",
                    Some("Set AUTHPLANE_ADMIN_API_KEY to the server's admin.api_key."),
                ),
                Ok((s, _, _)) => r.add(
                    10,
                    Verdict::Fail,
                    format!("GET /admin/audit: HTTP {s}"),
                    Some("Is the admin API on (admin.api_key set)?"),
                ),
                Err(e) => r.add(
                    10,
                    Verdict::Fail,
                    format!("GET /admin/audit: {e}"),
                    Some("The admin listener (9001) is not reachable from here."),
                ),
            }
        }
        _ => r.add(10, Verdict::Skip, "needs --admin-url, AUTHPLANE_ADMIN_API_KEY and a token (for its sub)", None),
    }

    let ok = r.steps.iter().all(|s| s.verdict != Verdict::Fail);
    Report { ok, steps: r.steps }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The report for people: one line per finding, the fix under a failure.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for s in &report.steps {
        let mark = match s.verdict {
            Verdict::Pass => "✓",
            Verdict::Fail => "✗",
            Verdict::Skip => "·",
        };
        out.push_str(&format!("{mark} step {} — {}: {}\n", s.step, s.title, s.evidence));
        if let Some(f) = &s.fix {
            out.push_str(&format!("    fix: {f}\n"));
        }
    }
    let mut failed: Vec<String> =
        report.steps.iter().filter(|s| s.verdict == Verdict::Fail).map(|s| s.step.to_string()).collect();
    if failed.is_empty() {
        out.push_str("no problem found\n");
    } else {
        failed.dedup();
        out.push_str(&format!("failed: step {}\n", failed.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_redaction() {
        assert_eq!(
            metadata_url("https://as.example.com"),
            "https://as.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            metadata_url("https://as.example.com/tenant"),
            "https://as.example.com/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(
            prm_urls("https://mcp.example.com/mcp"),
            vec![
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp".to_owned(),
                "https://mcp.example.com/.well-known/oauth-protected-resource".to_owned()
            ]
        );
        let r = redact("eyJhbGciOiJFUzI1NiJ9.payload.signature");
        assert!(r.starts_with("eyJhbGciOi…") && !r.contains("payload"));
        assert!(same_resource("HTTP://LOCALHOST:8080/mcp/", "http://localhost:8080/mcp"));
    }
}
