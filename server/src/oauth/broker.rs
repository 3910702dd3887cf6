//! The token broker: a person's upstream tokens, kept encrypted per (user,
//! upstream) when they sign in through an upstream with `store_tokens`, and
//! handed to an MCP server through RFC 8693 token exchange
//! ([`exchange`], grant type `urn:ietf:params:oauth:grant-type:token-exchange`
//! at `/oauth/token`).
//!
//! At rest: AES-256-GCM with a random 96-bit nonce per value; the associated
//! data names the row and the field, so a value cannot be moved to another
//! user or swapped between fields. Keys come from `broker.encryption_key_file`
//! (`<key id> <base64>` lines, the first encrypts) and carry ids, so a key can
//! rotate while old rows still open.
//!
//! Refresh is single-flight: one task per (user, upstream) in this process
//! (a mutex per key), and across replicas a lease in the row
//! (`refreshing_until`, taken with a conditional UPDATE). Every attempt is
//! counted in `authplane_upstream_token_refresh_total{outcome}` and every
//! change of the stored grant is a `broker_grant_updated` audit row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authplane_core::config::{Config, KeyStoreKind, UpstreamConfig};
use authplane_core::{Secret, brokerkeys};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::Deps;
use super::error::{Error, Kind};
use super::upstream::{Failure, Tokens};
use crate::metrics::OutcomeLabels;
use crate::store::StoreError;
use crate::store::audit::{self, AuditEvent};
use crate::store::entities::{token_family, upstream_grant};
use prometheus_client::metrics::gauge::Gauge;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// How long one replica may hold the refresh lease of a grant.
const LEASE: i64 = 30;
/// How long a request waits for another replica's refresh.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- keys

/// The broker's encryption keys. No `Debug`: they are secrets.
pub struct Keyring {
    current: String,
    keys: HashMap<String, LessSafeKey>,
}

impl Keyring {
    /// Parses `<key id> <base64 of 32 bytes>` lines (blank lines and `#`
    /// comments skipped); the first key encrypts.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let mut current = None;
        let mut keys = HashMap::new();
        for (n, line) in brokerkeys::key_lines(text) {
            let (kid, b64) =
                brokerkeys::split(line).ok_or_else(|| format!("line {n}: expected `<key id> <base64 key>`"))?;
            let raw = STANDARD.decode(b64).map_err(|_| format!("line {n}: key {kid:?} is not base64"))?;
            let key =
                UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| format!("line {n}: key {kid:?} is not 32 bytes"))?;
            if keys.insert(kid.to_owned(), LessSafeKey::new(key)).is_some() {
                return Err(format!("line {n}: key id {kid:?} appears twice"));
            }
            current.get_or_insert_with(|| kid.to_owned());
        }
        let current = current.ok_or("no key in the file")?;
        Ok(Keyring { current, keys })
    }

    /// The keyring for `cfg`, or `None` when no upstream keeps tokens. Without
    /// `broker.encryption_key_file`, `<signing.key_dir>/broker.keys` is created
    /// (0600) with one fresh key the first time.
    pub fn load(cfg: &Config) -> Result<Option<Keyring>, String> {
        if !cfg.upstreams.iter().any(|u| u.store_tokens) {
            return Ok(None);
        }
        let path = match &cfg.broker.encryption_key_file {
            Some(f) => std::path::PathBuf::from(f),
            None if cfg.signing.key_store == KeyStoreKind::File => {
                let p = std::path::Path::new(&cfg.signing.key_dir).join(brokerkeys::FILE_NAME);
                if !p.exists() {
                    create_key_file(&p)?;
                    tracing::info!(path = %p.display(), "broker encryption key created");
                }
                p
            }
            None => return Err("broker.encryption_key_file: required with signing.key_store db".into()),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("broker.encryption_key_file = {:?}: cannot read: {e}", path.display()))?;
        Keyring::parse(&text).map(Some).map_err(|e| format!("broker.encryption_key_file = {:?}: {e}", path.display()))
    }

    /// `base64url(nonce || ciphertext)` of `plain`, bound to `aad`.
    fn seal(&self, aad: &str, plain: &str) -> Result<String, Error> {
        let key = &self.keys[&self.current];
        let nonce_bytes = crate::random::bytes::<NONCE_LEN>();
        let mut buf = plain.as_bytes().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| Error::new(Kind::ServerError, "cannot encrypt the upstream token"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    fn open(&self, kid: &str, aad: &str, sealed: &str) -> Option<Secret<String>> {
        let key = self.keys.get(kid)?;
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let mut buf = ct.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = key.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf).ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Secret::new)
    }
}

fn create_key_file(path: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text =
        brokerkeys::file(&brokerkeys::made_id(crate::clock::now()), &STANDARD.encode(crate::random::bytes::<32>()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn aad(user_id: &str, upstream: &str, field: &str) -> String {
    format!("authplane-broker\n{user_id}\n{upstream}\n{field}")
}

// ---------------------------------------------------------------- state

/// (user id, upstream id).
type GrantKey = (String, String);

/// The keyring, the in-process single-flight locks, and the refresh counter.
#[derive(Default)]
pub struct Broker {
    keys: arc_swap::ArcSwapOption<Keyring>,
    inflight: Mutex<HashMap<GrantKey, Arc<tokio::sync::Mutex<()>>>>,
    /// `authplane_upstream_token_refresh_total{outcome}` (the registry's copy).
    pub refreshes: Family<OutcomeLabels, Counter>,
    /// `authplane_broker_grants_old_key`: rows not under the current key,
    /// set by [`reseal`].
    pub old_key: Gauge,
}

impl Broker {
    pub fn new(refreshes: Family<OutcomeLabels, Counter>, old_key: Gauge, keys: Option<Keyring>) -> Broker {
        Broker { keys: arc_swap::ArcSwapOption::from_pointee(keys), inflight: Mutex::default(), refreshes, old_key }
    }

    fn count(&self, outcome: &'static str) {
        self.refreshes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn set_keys(&self, keys: Option<Keyring>) {
        self.keys.store(keys.map(Arc::new));
    }

    fn keys(&self) -> Result<Arc<Keyring>, Error> {
        self.keys.load_full().ok_or_else(|| Error::new(Kind::ServerError, "the token broker has no encryption key"))
    }

    fn lock_for(&self, user: &str, upstream: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        // Drop locks nobody holds, so the map stays as small as the refreshes in flight.
        map.retain(|_, m| Arc::strong_count(m) > 1);
        map.entry((user.to_owned(), upstream.to_owned())).or_default().clone()
    }
}

// ---------------------------------------------------------------- storage

fn audit_grant(
    user_id: &str,
    upstream: &str,
    action: &str,
    client_id: Option<&str>,
    ids: &super::token::RequestIds,
) -> AuditEvent {
    AuditEvent {
        event_type: "broker_grant_updated",
        outcome: if action == "revoked" { "failure" } else { "success" },
        user_id: Some(user_id.to_owned()),
        client_id: client_id.map(str::to_owned),
        request_id: ids.request_id.clone(),
        trace_id: ids.trace_id.clone(),
        detail: serde_json::json!({"upstream": upstream, "action": action}),
        ..Default::default()
    }
}

/// Keeps the tokens of a sign-in (`action` `obtained`): the grant row is
/// replaced (a refresh token the provider did not send again is kept), with
/// its audit row, in one transaction.
pub async fn store_grant(
    deps: &Deps,
    user_id: &str,
    u: &UpstreamConfig,
    tokens: &Tokens,
    ids: &super::token::RequestIds,
    now: i64,
) -> Result<(), Error> {
    let keys = deps.broker.keys()?;
    let access = keys.seal(&aad(user_id, &u.id, "access"), tokens.access_token.expose())?;
    let refresh = match &tokens.refresh_token {
        Some(r) => Some(keys.seal(&aad(user_id, &u.id, "refresh"), r.expose())?),
        None => None,
    };
    let txn = deps.db.begin().await?;
    let existing = upstream_grant::Entity::find_by_id((user_id.to_owned(), u.id.clone())).one(&txn).await?;
    // A refresh token kept from before must have been sealed with a key
    // still in the ring; re-seal it with the current one.
    let refresh = match (refresh, &existing) {
        (Some(r), _) => Some(r),
        (None, Some(e)) => {
            match e.refresh_token_enc.as_deref().and_then(|r| keys.open(&e.key_id, &aad(user_id, &u.id, "refresh"), r))
            {
                Some(r) => Some(keys.seal(&aad(user_id, &u.id, "refresh"), r.expose())?),
                None => None,
            }
        }
        (None, None) => None,
    };
    let model = upstream_grant::ActiveModel {
        user_id: Set(user_id.to_owned()),
        upstream_id: Set(u.id.clone()),
        status: Set("active".into()),
        key_id: Set(keys.current.clone()),
        access_token_enc: Set(access),
        refresh_token_enc: Set(refresh),
        expires_at: Set(tokens.expires_in.map(|s| now + s)),
        scope: Set(tokens.scope.clone()),
        refreshing_until: Set(None),
        last_refresh_outcome: Set(existing.as_ref().and_then(|e| e.last_refresh_outcome.clone())),
        last_refresh_at: Set(existing.as_ref().and_then(|e| e.last_refresh_at)),
        created_at: Set(existing.as_ref().map_or(now, |e| e.created_at)),
        updated_at: Set(now),
    };
    if existing.is_some() {
        upstream_grant::Entity::update(model).exec(&txn).await?;
    } else {
        upstream_grant::Entity::insert(model).exec_without_returning(&txn).await?;
    }
    audit::record(&txn, deps.clock.now_ms(), audit_grant(user_id, &u.id, "obtained", None, ids)).await?;
    txn.commit().await?;
    Ok(())
}

/// Re-encrypts up to `limit` grants sealed with a key other than the
/// current one (after a new key was put on top of the key file), so that the
/// old key can be removed once none is left; returns how many. A row that
/// changed meanwhile (a refresh) is skipped: it is sealed with the current key
/// already. Rows whose key is gone from the file are left alone (and counted
/// in the log): they cannot be read until it is back.
pub async fn reseal(deps: &Deps, limit: u64) -> Result<u64, Error> {
    use sea_orm::{PaginatorTrait, QuerySelect};
    let Some(keys) = deps.broker.keys.load_full() else { return Ok(0) };
    let rows = upstream_grant::Entity::find()
        .filter(upstream_grant::Column::KeyId.ne(keys.current.as_str()))
        .limit(limit)
        .all(&deps.db)
        .await?;
    let (mut done, mut unreadable) = (0, 0);
    for row in rows {
        let (user, upstream) = (row.user_id.as_str(), row.upstream_id.as_str());
        let Some(access) = keys.open(&row.key_id, &aad(user, upstream, "access"), &row.access_token_enc) else {
            unreadable += 1;
            continue;
        };
        let refresh = match row.refresh_token_enc.as_deref() {
            Some(r) => match keys.open(&row.key_id, &aad(user, upstream, "refresh"), r) {
                Some(r) => Some(keys.seal(&aad(user, upstream, "refresh"), r.expose())?),
                None => {
                    unreadable += 1;
                    continue;
                }
            },
            None => None,
        };
        let n = upstream_grant::Entity::update_many()
            .col_expr(upstream_grant::Column::KeyId, Expr::value(keys.current.clone()))
            .col_expr(
                upstream_grant::Column::AccessTokenEnc,
                Expr::value(keys.seal(&aad(user, upstream, "access"), access.expose())?),
            )
            .col_expr(upstream_grant::Column::RefreshTokenEnc, Expr::value(refresh))
            .filter(upstream_grant::Column::UserId.eq(user))
            .filter(upstream_grant::Column::UpstreamId.eq(upstream))
            .filter(upstream_grant::Column::UpdatedAt.eq(row.updated_at))
            .filter(upstream_grant::Column::KeyId.eq(row.key_id.as_str()))
            .exec(&deps.db)
            .await?
            .rows_affected;
        done += n;
    }
    if unreadable > 0 {
        tracing::warn!(
            grants = unreadable,
            "stored upstream grants sealed with a key no longer in broker.encryption_key_file"
        );
    }
    // Rows left under older keys: at 0, every older key can leave the file.
    let left = upstream_grant::Entity::find()
        .filter(upstream_grant::Column::KeyId.ne(keys.current.as_str()))
        .count(&deps.db)
        .await?;
    deps.broker.old_key.set(i64::try_from(left).unwrap_or(i64::MAX));
    Ok(done)
}

/// Deletes a user's stored grant (`action` `deleted`); false when none.
pub async fn delete_grant<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    upstream: &str,
    ids: &super::token::RequestIds,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n =
        upstream_grant::Entity::delete_by_id((user_id.to_owned(), upstream.to_owned())).exec(db).await?.rows_affected;
    if n > 0 {
        audit::record(db, now_ms, audit_grant(user_id, upstream, "deleted", None, ids)).await?;
    }
    Ok(n > 0)
}

pub async fn grants_of<C: ConnectionTrait>(
    db: &C,
    user_id: Option<&str>,
) -> Result<Vec<upstream_grant::Model>, StoreError> {
    let mut q = upstream_grant::Entity::find();
    if let Some(u) = user_id {
        q = q.filter(upstream_grant::Column::UserId.eq(u));
    }
    Ok(q.all(db).await?)
}

/// Takes the refresh lease of `row` for [`LEASE`] seconds: a conditional
/// update that succeeds for one caller only, across every replica sharing the
/// database — the row must be unchanged since it was read (`updated_at`) and
/// no live lease held.
pub async fn take_lease<C: ConnectionTrait>(db: &C, row: &upstream_grant::Model, now: i64) -> Result<bool, StoreError> {
    Ok(upstream_grant::Entity::update_many()
        .col_expr(upstream_grant::Column::RefreshingUntil, Expr::value(now + LEASE))
        .filter(upstream_grant::Column::UserId.eq(row.user_id.as_str()))
        .filter(upstream_grant::Column::UpstreamId.eq(row.upstream_id.as_str()))
        .filter(upstream_grant::Column::UpdatedAt.eq(row.updated_at))
        .filter(
            sea_orm::Condition::any()
                .add(upstream_grant::Column::RefreshingUntil.is_null())
                .add(upstream_grant::Column::RefreshingUntil.lt(now)),
        )
        .exec(db)
        .await?
        .rows_affected
        == 1)
}

// ---------------------------------------------------------------- exchange

/// What a successful exchange answers (RFC 8693 §2.2.1).
#[derive(Debug, serde::Serialize)]
pub struct ExchangeResponse {
    pub access_token: String,
    pub issued_token_type: &'static str,
    pub token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// What the handler logs about an exchange.
#[derive(Debug, Default)]
pub struct Exchanged {
    pub user_id: Option<String>,
    pub upstream: Option<String>,
}

/// RFC 8693 token exchange for a user's upstream token. The client (already
/// authenticated, confidential) names the upstream in `audience`; the
/// `subject_token` is an AuthPlane access token that is active and was
/// issued for one of the client's own resources (`allowed_resources`).
pub async fn exchange(
    deps: &Deps,
    client: &authplane_core::config::ClientConfig,
    form: &super::form::Form,
    ids: &super::token::RequestIds,
    now: i64,
    out: &mut Exchanged,
) -> Result<ExchangeResponse, Error> {
    let bad = |m: String| Error::new(Kind::InvalidRequest, m);
    let subject =
        form.get("subject_token").filter(|s| !s.is_empty()).ok_or_else(|| bad("subject_token is required".into()))?;
    match form.get("subject_token_type") {
        Some(ACCESS_TOKEN_TYPE) => {}
        Some(t) => return Err(bad(format!("subject_token_type {t} is not supported; use {ACCESS_TOKEN_TYPE}"))),
        None => return Err(bad("subject_token_type is required".into())),
    }
    if let Some(t) = form.get("requested_token_type")
        && t != ACCESS_TOKEN_TYPE
    {
        return Err(bad(format!("requested_token_type {t} is not supported; use {ACCESS_TOKEN_TYPE}")));
    }
    let upstream = form
        .get("audience")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::new(Kind::InvalidTarget, "audience is required: the id of the upstream whose token you want")
        })?
        .to_owned();
    out.upstream = Some(upstream.clone());
    if !client.broker_upstreams.contains(&upstream) {
        return Err(Error::new(
            Kind::InvalidTarget,
            format!("client {} may not obtain tokens of upstream {upstream:?} (broker_upstreams)", client.client_id),
        ));
    }
    let cfg = deps.config.load_full();
    let Some(u) = cfg.upstreams.iter().find(|u| u.id == upstream && u.store_tokens) else {
        return Err(Error::new(Kind::InvalidTarget, format!("upstream {upstream:?} does not keep tokens")));
    };
    let seen = super::revoke::introspect(deps, subject, now).await?;
    if !seen.active {
        return Err(Error::new(Kind::InvalidGrant, "subject_token is not an active access token of this server"));
    }
    let user_id = seen.sub.unwrap_or_default();
    out.user_id = Some(user_id.clone());
    let mcp_client = seen.client_id.unwrap_or_default();
    let aud = seen.aud.unwrap_or_default();
    if !aud.iter().any(|a| client.allowed_resources.iter().any(|r| r.as_str() == a)) {
        return Err(Error::new(
            Kind::InvalidGrant,
            "subject_token was not issued for this client's resource: a server can only exchange tokens meant for itself",
        ));
    }
    let keys = deps.broker.keys()?;
    let lock = deps.broker.lock_for(&user_id, &upstream);
    let _held = lock.lock().await;
    let started = std::time::Instant::now();
    loop {
        let row = upstream_grant::Entity::find_by_id((user_id.clone(), upstream.clone())).one(&deps.db).await?;
        let Some(row) = row else {
            return Err(Error::new(
                Kind::InvalidGrant,
                format!("no stored {upstream} grant for this user: they must sign in through {} first", u.label()),
            ));
        };
        if row.status == "revoked" {
            return Err(Error::new(
                Kind::InvalidGrant,
                format!("the user's {upstream} grant was revoked at the provider: they must sign in again"),
            ));
        }
        let fresh = row.expires_at.is_none_or(|exp| exp - cfg.broker.refresh_before.as_secs() as i64 > now);
        if fresh {
            let token = keys.open(&row.key_id, &aad(&user_id, &upstream, "access"), &row.access_token_enc).ok_or_else(
                || {
                    Error::new(
                        Kind::ServerError,
                        "the stored upstream token cannot be decrypted (key removed from broker.encryption_key_file?)",
                    )
                },
            )?;
            return Ok(ExchangeResponse {
                access_token: token.expose().clone(),
                issued_token_type: ACCESS_TOKEN_TYPE,
                token_type: "Bearer",
                expires_in: row.expires_at.map(|e| (e - now).max(0)),
                scope: row.scope,
            });
        }
        // Stale: take the lease, or wait for the replica that holds it.
        let taken = take_lease(&deps.db, &row, now).await?;
        if !taken {
            if started.elapsed() > WAIT {
                return Err(Error::new(
                    Kind::TemporarilyUnavailable,
                    "another replica is refreshing this upstream token; retry",
                )
                .retry_after(1));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        refresh(deps, u, &row, &keys, &mcp_client, ids, now).await?;
    }
}

/// Refreshes a stale grant whose lease this task holds; on success the row
/// is fresh and the caller's loop reads it.
async fn refresh(
    deps: &Deps,
    u: &UpstreamConfig,
    row: &upstream_grant::Model,
    keys: &Keyring,
    mcp_client: &str,
    ids: &super::token::RequestIds,
    now: i64,
) -> Result<(), Error> {
    let (user_id, upstream) = (row.user_id.as_str(), row.upstream_id.as_str());
    let record = |outcome: &'static str| deps.broker.count(outcome);
    let refresh_token =
        row.refresh_token_enc.as_deref().and_then(|r| keys.open(&row.key_id, &aad(user_id, upstream, "refresh"), r));
    let result = match &refresh_token {
        None => Err(Failure::TokenRefused("invalid_grant: no refresh token is stored".into())),
        Some(rt) => match deps.upstream.endpoints(u).await {
            Ok(e) => deps.upstream.refresh(u, &e, rt.expose()).await,
            Err(f) => Err(f),
        },
    };
    let update = |status: &str, outcome: &str| upstream_grant::ActiveModel {
        user_id: Set(user_id.to_owned()),
        upstream_id: Set(upstream.to_owned()),
        status: Set(status.to_owned()),
        refreshing_until: Set(None),
        last_refresh_outcome: Set(Some(outcome.to_owned())),
        last_refresh_at: Set(Some(now)),
        updated_at: Set(now),
        ..Default::default()
    };
    match result {
        Ok(tokens) => {
            let mut m = update("active", "success");
            m.key_id = Set(keys.current.clone());
            m.access_token_enc = Set(keys.seal(&aad(user_id, upstream, "access"), tokens.access_token.expose())?);
            let rt = tokens.refresh_token.as_ref().or(refresh_token.as_ref());
            m.refresh_token_enc = Set(match rt {
                Some(r) => Some(keys.seal(&aad(user_id, upstream, "refresh"), r.expose())?),
                None => None,
            });
            m.expires_at = Set(tokens.expires_in.map(|s| now + s));
            if tokens.scope.is_some() {
                m.scope = Set(tokens.scope.clone());
            }
            let txn = deps.db.begin().await?;
            upstream_grant::Entity::update(m).exec(&txn).await?;
            audit::record(
                &txn,
                deps.clock.now_ms(),
                audit_grant(user_id, upstream, "refreshed", Some(mcp_client), ids),
            )
            .await?;
            txn.commit().await?;
            record("success");
            tracing::info!(user_id, upstream, "upstream token refreshed");
            Ok(())
        }
        Err(Failure::TokenRefused(d)) if d.starts_with("invalid_grant") => {
            // The person revoked access at the provider (or the refresh token
            // expired): the grant is dead, and so are this client's AuthPlane
            // refresh tokens for the person, so the MCP client sends them
            // through sign-in again.
            let txn = deps.db.begin().await?;
            upstream_grant::Entity::update(update("revoked", "revoked")).exec(&txn).await?;
            let families = token_family::Entity::update_many()
                .col_expr(token_family::Column::RevokedAt, Expr::value(now))
                .filter(token_family::Column::UserId.eq(user_id))
                .filter(token_family::Column::ClientId.eq(mcp_client))
                .filter(token_family::Column::RevokedAt.is_null())
                .exec(&txn)
                .await?
                .rows_affected;
            let mut ev = audit_grant(user_id, upstream, "revoked", Some(mcp_client), ids);
            ev.detail = serde_json::json!({"upstream": upstream, "action": "revoked", "families_revoked": families});
            audit::record(&txn, deps.clock.now_ms(), ev).await?;
            txn.commit().await?;
            record("revoked");
            tracing::warn!(user_id, upstream, families_revoked = families, detail = %d, "upstream grant revoked by the provider");
            Err(Error::new(
                Kind::InvalidGrant,
                format!(
                    "the user's {upstream} grant was revoked at the provider: they must sign in again (their sessions of client {mcp_client} were ended)"
                ),
            ))
        }
        Err(f) => {
            // Provider down or misbehaving: keep everything, release the lease.
            upstream_grant::Entity::update(update(&row.status, "failed")).exec(&deps.db).await?;
            record("failed");
            tracing::warn!(user_id, upstream, reason = f.reason(), detail = %f.detail(), "upstream token refresh failed");
            Err(Error::new(
                Kind::TemporarilyUnavailable,
                format!("the {upstream} token could not be refreshed ({}); retry later", f.reason()),
            )
            .retry_after(5))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(lines: &str) -> Keyring {
        Keyring::parse(lines).unwrap()
    }

    #[test]
    fn sealed_tokens_open_only_with_their_key_row_and_field() {
        let k1 = STANDARD.encode([1u8; 32]);
        let k2 = STANDARD.encode([2u8; 32]);
        let old = ring(&format!("k1 {k1}\n"));
        let sealed = old.seal(&aad("corp:ann", "corp", "access"), "gho_secret").unwrap();
        assert!(!sealed.contains("gho_secret"));
        assert_ne!(
            sealed,
            old.seal(&aad("corp:ann", "corp", "access"), "gho_secret").unwrap(),
            "a fresh nonce each time"
        );
        // Rotation: k2 on top encrypts, k1 still opens old rows.
        let rotated = ring(&format!("# comment\nk2 {k2}\n\nk1 {k1}\n"));
        assert_eq!(rotated.current, "k2");
        assert_eq!(rotated.open("k1", &aad("corp:ann", "corp", "access"), &sealed).unwrap().expose(), "gho_secret");
        assert!(rotated.open("k1", &aad("corp:bob", "corp", "access"), &sealed).is_none(), "another user's row");
        assert!(rotated.open("k1", &aad("corp:ann", "corp", "refresh"), &sealed).is_none(), "another field");
        assert!(rotated.open("k2", &aad("corp:ann", "corp", "access"), &sealed).is_none(), "another key");
        assert!(ring(&format!("k2 {k2}\n")).open("k1", &aad("corp:ann", "corp", "access"), &sealed).is_none());
    }

    #[test]
    fn key_files_are_checked_line_by_line() {
        for (text, want) in [
            ("", "no key"),
            ("k1\n", "line 1: expected"),
            ("k1 !!!\n", "not base64"),
            (&format!("k1 {}\n", STANDARD.encode([0u8; 16])), "not 32 bytes"),
            (&format!("k1 {0}\nk1 {0}\n", STANDARD.encode([0u8; 32])), "line 2: key id \"k1\" appears twice"),
        ] {
            let e = Keyring::parse(text).err().unwrap();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[tokio::test]
    async fn a_new_key_on_top_reseals_every_grant_and_the_old_key_can_go() {
        use crate::oauth::testing::{Fixture, T0};
        let fx = Fixture::with("", "upstreams:\n  - { id: corp, issuer: 'https://idp.example.com', client_id: a, client_secret: s, store_tokens: true }\nbroker: { encryption_key_file: /unused }").await;
        let k1 = STANDARD.encode([1u8; 32]);
        let k2 = STANDARD.encode([2u8; 32]);
        fx.deps.broker.set_keys(Some(ring(&format!("k1 {k1}\n"))));
        let u = fx.cfg.upstreams[0].clone();
        for user in ["corp:ann", "corp:bob"] {
            let tokens = Tokens {
                access_token: Secret::new(format!("at-{user}")),
                refresh_token: Some(Secret::new(format!("rt-{user}"))),
                expires_in: Some(3600),
                id_token: None,
                scope: None,
            };
            store_grant(&fx.deps, user, &u, &tokens, &Default::default(), T0).await.unwrap();
        }
        assert_eq!(reseal(&fx.deps, 100).await.unwrap(), 0, "nothing to do under the current key");

        fx.deps.broker.set_keys(Some(ring(&format!("k2 {k2}\nk1 {k1}\n"))));
        assert_eq!(reseal(&fx.deps, 1).await.unwrap(), 1, "bounded per pass");
        assert_eq!(fx.deps.broker.old_key.get(), 1, "one row still under k1");
        assert_eq!(reseal(&fx.deps, 100).await.unwrap(), 1);
        let rows = grants_of(&fx.deps.db, None).await.unwrap();
        assert!(rows.iter().all(|r| r.key_id == "k2"), "{:?}", rows.iter().map(|r| &r.key_id).collect::<Vec<_>>());
        assert_eq!(fx.deps.broker.old_key.get(), 0, "the gauge says k1 can leave the file");
        // With k1 gone from the file, every row still opens.
        let only_k2 = ring(&format!("k2 {k2}\n"));
        for r in &rows {
            let at = only_k2.open("k2", &aad(&r.user_id, "corp", "access"), &r.access_token_enc).unwrap();
            assert_eq!(at.expose(), &format!("at-{}", r.user_id));
            let rt = only_k2
                .open("k2", &aad(&r.user_id, "corp", "refresh"), r.refresh_token_enc.as_deref().unwrap())
                .unwrap();
            assert_eq!(rt.expose(), &format!("rt-{}", r.user_id));
        }
    }
}
