//! A real [`Deps`] for unit tests of the grants: SQLite in a temporary
//! directory with every migration, the signing key in the database, the
//! config's resource and clients stored as at start-up, a fixed clock and a
//! counting id source. No HTTP and no mocks.

use arc_swap::ArcSwap;
use authplane_core::config::{ClientConfig, Config};

use super::deps::{Clock, Ids};
use super::{Deps, Kind};
use crate::keys::{KeyManager, KeyStore, Timings};
use crate::random::sha256_hex;
use crate::resource_index::ResourceIndex;
use crate::store::oauth::{self as rows, CodeRow};
use crate::store::{self, audit, dpop};

pub const ISSUER: &str = "https://as.example";
pub const RESOURCE: &str = "https://mcp.example/mcp";
/// 2026-12-01T00:00:00Z.
pub const T0: i64 = 1_796_083_200;

pub struct Fixture {
    pub deps: Deps,
    pub cfg: Config,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// `extra_oauth` is YAML for the `oauth:` section (e.g. `refresh_reuse_interval: 0s`).
    pub async fn new(extra_oauth: &str) -> Fixture {
        Fixture::with(extra_oauth, "").await
    }

    /// [`Fixture::new`] plus more top-level YAML (`limits:`, `users:`).
    pub async fn with(extra_oauth: &str, more_yaml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            r#"
server: {{ issuer: "{ISSUER}" }}
database: {{ url: "sqlite://{db}?mode=rwc" }}
signing: {{ key_store: db }}
oauth: {{ {extra_oauth} }}
resources:
  - resource: {RESOURCE}
    scopes: [tools/read, tools/write]
    default_scopes: [tools/read]
clients:
  - client_id: app
    token_endpoint_auth_method: none
    redirect_uris: [http://127.0.0.1/callback]
    grant_types: [authorization_code, refresh_token]
  - client_id: other-app
    token_endpoint_auth_method: none
    redirect_uris: [http://127.0.0.1/callback]
    grant_types: [authorization_code, refresh_token]
  - client_id: machine
    token_endpoint_auth_method: client_secret_basic
    client_secret_sha256: {secret}
    grant_types: [client_credentials]
    allowed_resources: [{RESOURCE}]
{more_yaml}
"#,
            db = dir.path().join("t.db").display(),
            secret = sha256_hex(b"machine-secret"),
        );
        let cfg = Config::load(Some(("test.yaml", &yaml)), std::iter::empty::<(String, String)>())
            .unwrap_or_else(|e| panic!("test config: {e}"))
            .config;
        let (db, _) = store::connect(&cfg.database).await.unwrap();
        store::migrate(&db).await.unwrap();
        store::entries::sync_config(&db, &cfg, T0).await.unwrap();
        let keys = KeyManager::open(KeyStore::Db { db: db.clone() }, Timings::from_config(&cfg), T0).await.unwrap();
        let resources = ResourceIndex::default();
        resources.refresh(&db).await.unwrap();
        let deps = Deps {
            config: ArcSwap::from_pointee(cfg.clone()),
            keys,
            resources,
            cimd: Default::default(),
            clients: Default::default(),
            audit: audit::Sink::spawn(db.clone()),
            throttle: Default::default(),
            cimd_rate: Default::default(),
            registration_rate: Default::default(),
            dpop_replay: dpop::ReplayStore::spawn(db.clone()),
            dpop_nonce_key: [7; 32],
            hash_gate: crate::limits::HashGate::new(1),
            password_memory: Default::default(),
            clock: Clock::fixed(T0 * 1000),
            ids: Ids::sequence(),
            upstream: Default::default(),
            broker: Default::default(),
            db,
        };
        Fixture { deps, cfg, _dir: dir }
    }

    pub fn client(&self, id: &str) -> ClientConfig {
        self.cfg.clients.iter().find(|c| c.client_id == id).cloned().unwrap()
    }

    /// Stores an authorization code as the consent step does; returns the
    /// code and its PKCE verifier.
    pub async fn code(&self, client_id: &str, scope: &str, expires_at: i64) -> (String, String) {
        use base64::Engine;
        let code = crate::random::secret_token();
        let verifier = crate::random::secret_token();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
        rows::insert_code(
            &self.deps.db,
            CodeRow {
                code_sha256: sha256_hex(code.as_bytes()),
                client_id: client_id.to_owned(),
                user_id: "user-1".to_owned(),
                redirect_uri: "http://127.0.0.1/callback".to_owned(),
                code_challenge: challenge,
                resources: serde_json::to_string(&[RESOURCE]).unwrap(),
                scope: scope.to_owned(),
                offline_access: true,
                family_id: crate::random::id("f_"),
                created_at: T0,
                expires_at,
                consumed_at: None,
                dpop_jkt: None,
            },
        )
        .await
        .unwrap();
        (code, verifier)
    }

    /// Audit rows of one type, oldest first.
    pub async fn audit(&self, event_type: &str) -> Vec<crate::store::entities::audit_event::Model> {
        use crate::store::entities::audit_event;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        audit_event::Entity::find()
            .filter(audit_event::Column::EventType.eq(event_type))
            .order_by_asc(audit_event::Column::Id)
            .all(&self.deps.db)
            .await
            .unwrap()
    }
}

/// A URL-encoded form body as the token endpoint receives it.
pub fn form(pairs: &[(&str, &str)]) -> super::form::Form {
    let body = pairs.iter().map(|(k, v)| format!("{k}={}", urlencoding(v))).collect::<Vec<_>>().join("&");
    super::form::Form::parse(body.as_bytes()).unwrap()
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The error kind of a failed call, or a panic naming what succeeded.
pub fn kind<T: std::fmt::Debug>(r: Result<T, super::Error>) -> Kind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind,
    }
}
