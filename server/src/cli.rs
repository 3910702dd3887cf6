//! The `authserver` command line. `serve`, `migrate`, `config check` and
//! `keys` act on the local config; `admin …` talks to a running server's
//! admin REST API, so it works against a remote deployment too.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(
    name = "authserver",
    about = "AuthPlane: an OAuth 2.1 authorization server for MCP servers",
    disable_version_flag = true
)]
pub struct Cli {
    /// Config file (YAML); `AUTHPLANE_<SECTION>_<KEY>` variables override it.
    #[arg(long, short = 'c', global = true, env = "AUTHPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A directory of `*.yaml` registry fragments (`resources:` and
    /// `clients:` only) that extend the config file and reload with it.
    #[arg(long, global = true, env = "AUTHPLANE_REGISTRY_DIR")]
    pub registry_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Print version, git commit and build date.
    Version,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage resources, clients and users through the admin REST API.
    Admin(AdminArgs),
    /// Inspect and rotate signing keys in the configured key store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Walk the debugging checklist against a running deployment and name
    /// the fault (docs/debugging-checklist.md, steps 1–10).
    Doctor(DoctorArgs),
    /// Helpers for operators.
    Util {
        #[command(subcommand)]
        command: UtilCommand,
    },
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// AuthPlane's issuer (its public base URL, port 9000).
    #[arg(long)]
    pub issuer: String,
    /// The admin listener (port 9001): metrics (step 7) and, with
    /// AUTHPLANE_ADMIN_API_KEY, the audit trail (step 10).
    #[arg(long)]
    pub admin_url: Option<String>,
    /// The protected resource's URI as registered (checks its PRM and the token's aud).
    #[arg(long)]
    pub resource: Option<String>,
    /// The MCP endpoint to call (step 6); also the resource when --resource is absent.
    #[arg(long)]
    pub mcp_url: Option<String>,
    /// An access token to check (steps 4, 5, 6, 10); `-` reads it from stdin.
    /// Never printed in full.
    #[arg(long)]
    pub token: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the config file and environment without starting.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List keys with their rotation phase.
    List {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Publish a new key (phase 1); it signs after `signing.publish_ahead`.
    Rotate {
        /// Sign with the new key at once (suspected compromise). Tokens
        /// verified by caches that have not refreshed JWKS will fail until they do.
        #[arg(long)]
        immediate: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UtilCommand {
    /// Print an argon2id hash for a `users[].password_hash` entry (password on stdin).
    HashPassword,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Admin listener of the server.
    #[arg(long, global = true, env = "AUTHPLANE_URL", default_value = "http://localhost:9001")]
    pub url: String,
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Protected resources (MCP servers).
    Resource {
        #[command(subcommand)]
        command: ResourceCommand,
    },
    /// OAuth clients.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Users: local, and those identity providers signed in.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Identity providers (`upstreams:`) and their stored grants.
    Upstream {
        #[command(subcommand)]
        command: UpstreamCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum UpstreamCommand {
    /// Each provider, its stored grants by status and the latest refresh outcome.
    List,
    /// Forget a user's stored grant of an upstream (its tokens are deleted).
    Unlink {
        /// User id or username.
        user: String,
        upstream: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ResourceCommand {
    List,
    Create {
        /// The resource URI, e.g. https://mcp.example.com/mcp
        resource: String,
        /// A scope the resource's tools use (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Granted when a client asks for no scope (repeatable; default: all scopes).
        #[arg(long = "default-scope")]
        default_scopes: Vec<String>,
        #[arg(long)]
        name: Option<String>,
    },
    Delete {
        resource: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    List,
    Create {
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// none (public client), client_secret_basic or client_secret_post.
        #[arg(long, default_value = "none")]
        auth_method: String,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// authorization_code, refresh_token, client_credentials (repeatable).
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        #[arg(long = "resource")]
        allowed_resources: Vec<String>,
        #[arg(long = "scope")]
        allowed_scopes: Vec<String>,
    },
    Delete {
        client_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    List,
    Create {
        username: String,
        /// Read the password from stdin (else AUTHPLANE_USER_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    Delete {
        /// User id or username.
        user: String,
    },
}

/// Runs an `admin` command; returns what to print.
pub async fn run_admin(args: AdminArgs) -> Result<String, String> {
    let key = std::env::var("AUTHPLANE_ADMIN_API_KEY")
        .map_err(|_| "set AUTHPLANE_ADMIN_API_KEY to the server's admin API key".to_owned())?;
    let api = AdminClient { base: args.url.trim_end_matches('/').to_owned(), key, http: reqwest::Client::new() };
    let out = args.output;
    match args.command {
        AdminCommand::Resource { command } => match command {
            ResourceCommand::List => {
                let v = api.get("/admin/resources", &[]).await?;
                Ok(render(
                    out,
                    &v,
                    &[
                        ("RESOURCE", "resource"),
                        ("SCOPES", "scopes"),
                        ("DEFAULT", "default_scopes"),
                        ("SOURCE", "source"),
                        ("NAME", "name"),
                    ],
                ))
            }
            ResourceCommand::Create { resource, scopes, default_scopes, name } => {
                let mut body = serde_json::json!({"resource": resource, "scopes": scopes});
                if !default_scopes.is_empty() {
                    body["default_scopes"] = serde_json::json!(default_scopes);
                }
                if let Some(n) = name {
                    body["name"] = Value::String(n);
                }
                let v = api.send(reqwest::Method::POST, "/admin/resources", &[], Some(body)).await?;
                Ok(render_one(out, &v, &format!("resource {} created", v["resource"].as_str().unwrap_or_default())))
            }
            ResourceCommand::Delete { resource } => {
                api.send(reqwest::Method::DELETE, "/admin/resources/one", &[("resource", &resource)], None).await?;
                Ok(render_one(out, &serde_json::json!({"deleted": resource}), &format!("resource {resource} deleted")))
            }
        },
        AdminCommand::Client { command } => match command {
            ClientCommand::List => {
                // Follow the keyset cursor to the last page.
                let mut all = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let mut q = vec![("limit", "1000".to_owned())];
                    if let Some(c) = &cursor {
                        q.push(("cursor", c.clone()));
                    }
                    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let page = api.get("/admin/clients", &q).await?;
                    all.extend(page["clients"].as_array().cloned().unwrap_or_default());
                    match page["next_cursor"].as_str() {
                        Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                        _ => break,
                    }
                }
                let v = Value::Array(all);
                Ok(render(
                    out,
                    &v,
                    &[
                        ("CLIENT_ID", "client_id"),
                        ("NAME", "client_name"),
                        ("AUTH", "token_endpoint_auth_method"),
                        ("GRANTS", "grant_types"),
                        ("SOURCE", "source"),
                    ],
                ))
            }
            ClientCommand::Create {
                client_id,
                name,
                auth_method,
                redirect_uris,
                grant_types,
                allowed_resources,
                allowed_scopes,
            } => {
                let mut body = serde_json::json!({
                    "token_endpoint_auth_method": auth_method,
                    "redirect_uris": redirect_uris,
                    "allowed_resources": allowed_resources,
                    "allowed_scopes": allowed_scopes,
                });
                if let Some(id) = client_id {
                    body["client_id"] = Value::String(id);
                }
                if let Some(n) = name {
                    body["client_name"] = Value::String(n);
                }
                if !grant_types.is_empty() {
                    body["grant_types"] = serde_json::json!(grant_types);
                }
                let v = api.send(reqwest::Method::POST, "/admin/clients", &[], Some(body)).await?;
                let mut text = format!("client {} created", v["client_id"].as_str().unwrap_or_default());
                if let Some(s) = v["client_secret"].as_str() {
                    text.push_str(&format!("\nclient_secret: {s}\n(shown once; only its SHA-256 digest is stored)"));
                }
                Ok(render_one(out, &v, &text))
            }
            ClientCommand::Delete { client_id } => {
                api.send(reqwest::Method::DELETE, &format!("/admin/clients/{}", urlencode(&client_id)), &[], None)
                    .await?;
                Ok(render_one(out, &serde_json::json!({"deleted": client_id}), &format!("client {client_id} deleted")))
            }
        },
        AdminCommand::Upstream { command } => match command {
            UpstreamCommand::List => {
                let v = api.get("/admin/upstreams", &[]).await?;
                Ok(render(
                    out,
                    &v,
                    &[
                        ("ID", "id"),
                        ("KIND", "kind"),
                        ("STORE_TOKENS", "store_tokens"),
                        ("ACTIVE", "active_grants"),
                        ("REVOKED", "revoked_grants"),
                        ("LAST_REFRESH", "last_refresh_outcome"),
                        ("AT", "last_refresh_at"),
                    ],
                ))
            }
            UpstreamCommand::Unlink { user, upstream } => {
                let path = format!("/admin/users/{}/upstreams/{}", urlencode(&user), urlencode(&upstream));
                api.send(reqwest::Method::DELETE, &path, &[], None).await?;
                Ok(render_one(
                    out,
                    &serde_json::json!({"deleted": {"user": user, "upstream": upstream}}),
                    &format!("{upstream} grant of {user} deleted"),
                ))
            }
        },
        AdminCommand::User { command } => match command {
            UserCommand::List => {
                let v = api.get("/admin/users", &[]).await?;
                Ok(render(
                    out,
                    &v,
                    &[
                        ("ID", "id"),
                        ("USERNAME", "username"),
                        ("EMAIL", "email"),
                        ("SOURCE", "source"),
                        ("UPSTREAM", "upstream"),
                    ],
                ))
            }
            UserCommand::Create { username, password_stdin, id, email, name } => {
                let password = if password_stdin {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
                    s.trim_end_matches(['\n', '\r']).to_owned()
                } else {
                    std::env::var("AUTHPLANE_USER_PASSWORD").map_err(|_| {
                        "give the password on stdin with --password-stdin, or in AUTHPLANE_USER_PASSWORD".to_owned()
                    })?
                };
                let body = serde_json::json!({"username": username, "password": password, "id": id, "email": email, "name": name});
                let v = api.send(reqwest::Method::POST, "/admin/users", &[], Some(body)).await?;
                Ok(render_one(
                    out,
                    &v,
                    &format!("user {} created with id {}", username, v["id"].as_str().unwrap_or_default()),
                ))
            }
            UserCommand::Delete { user } => {
                api.send(reqwest::Method::DELETE, &format!("/admin/users/{}", urlencode(&user)), &[], None).await?;
                Ok(render_one(out, &serde_json::json!({"deleted": user}), &format!("user {user} deleted")))
            }
        },
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

struct AdminClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl AdminClient {
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        self.send(reqwest::Method::GET, path, query, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.key).query(query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| format!("cannot reach the admin API at {}: {e}", self.base))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let v: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if status.is_success() {
            Ok(v)
        } else {
            let code = v["error"].as_str().unwrap_or("error");
            let desc = v["error_description"].as_str().unwrap_or(&text);
            Err(format!("{} {code}: {desc}", status.as_u16()))
        }
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A table with the given (header, field) columns, or the raw JSON.
pub fn render(out: Output, v: &Value, cols: &[(&str, &str)]) -> String {
    if out == Output::Json {
        return serde_json::to_string_pretty(v).unwrap_or_default();
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| a.iter().map(|r| cols.iter().map(|(_, f)| cell(&r[*f])).collect()).collect())
        .unwrap_or_default();
    let mut widths: Vec<usize> = cols.iter().map(|(h, _)| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut text = line(cols.iter().map(|(h, _)| (*h).to_owned()).collect());
    for r in rows {
        text.push('\n');
        text.push_str(&line(r));
    }
    text
}

fn render_one(out: Output, v: &Value, text: &str) -> String {
    if out == Output::Json { serde_json::to_string_pretty(v).unwrap_or_default() } else { text.to_owned() }
}
