//! Resources, clients and users: CRUD and the sync of the config file's
//! entries (source `config`) into the database.

use std::collections::HashSet;

use authplane_core::config::{ClientConfig, Config, GrantType, ResourceConfig, TokenEndpointAuthMethod, UserConfig};
use authplane_core::redirect::RedirectUri;
use authplane_core::{ResourceUri, Secret};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};
use serde::Serialize;

use super::entities::{client, resource, user};
use super::{StoreError, conflict_or};

/// Who owns a row: the config file (changed only there), the admin API,
/// dynamic client registration, or (users) sign-in through an identity
/// provider, stored as `upstream:<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Admin,
    Dcr,
    Upstream,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Admin => "admin",
            Source::Dcr => "dcr",
            Source::Upstream => "upstream",
        }
    }

    fn parse(s: &str) -> Source {
        match s {
            "config" => Source::Config,
            "dcr" => Source::Dcr,
            s if s.starts_with("upstream:") => Source::Upstream,
            _ => Source::Admin,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredResource {
    #[serde(flatten)]
    pub spec: ResourceConfig,
    pub source: Source,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredClient {
    #[serde(flatten)]
    pub spec: ClientConfig,
    pub source: Source,
    pub created_at: i64,
    /// `web` or `native` (RFC 7591 / OIDC Registration).
    pub application_type: String,
    /// Registered metadata beyond the typed fields (client_uri, logo_uri, …).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

/// Registration details that only DCR clients carry.
#[derive(Debug, Clone)]
pub struct ClientExtras {
    pub application_type: String,
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct StoredUser {
    pub id: String,
    pub username: String,
    pub password_hash: Secret<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub source: Source,
    /// The identity provider of a user it signed in (`Source::Upstream`).
    pub upstream: Option<String>,
    pub created_at: i64,
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn corrupt(table: &str, id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table} row {id:?} cannot be read: {e}"))
}

fn resource_from(m: resource::Model) -> Result<StoredResource, StoreError> {
    let r = ResourceUri::parse(&m.resource).map_err(|e| corrupt("resources", &m.resource, e))?;
    let scopes: Vec<String> = serde_json::from_str(&m.scopes).map_err(|e| corrupt("resources", &m.resource, e))?;
    let default_scopes: Option<Vec<String>> = match &m.default_scopes {
        Some(s) => Some(serde_json::from_str(s).map_err(|e| corrupt("resources", &m.resource, e))?),
        None => None,
    };
    Ok(StoredResource {
        spec: ResourceConfig { resource: r, name: m.name, scopes, default_scopes, dpop_required: m.dpop_required },
        source: Source::parse(&m.source),
        created_at: m.created_at,
    })
}

fn resource_model(r: &ResourceConfig, source: Source, now: i64) -> resource::ActiveModel {
    resource::ActiveModel {
        resource: Set(r.resource.to_string()),
        name: Set(r.name.clone()),
        scopes: Set(to_json(&r.scopes)),
        default_scopes: Set(r.default_scopes.as_ref().map(to_json)),
        dpop_required: Set(r.dpop_required),
        source: Set(source.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

fn client_from(m: client::Model) -> Result<StoredClient, StoreError> {
    let id = m.client_id.clone();
    let c = |e: serde_json::Error| corrupt("clients", &id, e);
    let method: TokenEndpointAuthMethod =
        serde_json::from_value(serde_json::Value::String(m.token_endpoint_auth_method.clone())).map_err(c)?;
    let redirect_uris: Vec<RedirectUri> = serde_json::from_str::<Vec<String>>(&m.redirect_uris)
        .map_err(c)?
        .into_iter()
        .map(RedirectUri::stored)
        .collect();
    let grant_types: Vec<GrantType> = serde_json::from_str(&m.grant_types).map_err(c)?;
    let allowed_resources: Vec<ResourceUri> = serde_json::from_str(&m.allowed_resources).map_err(c)?;
    let allowed_scopes: Vec<String> = serde_json::from_str(&m.allowed_scopes).map_err(c)?;
    Ok(StoredClient {
        spec: ClientConfig {
            client_id: m.client_id,
            client_name: m.client_name,
            token_endpoint_auth_method: method,
            client_secret_sha256: m.client_secret_sha256,
            redirect_uris,
            grant_types,
            allowed_resources,
            allowed_scopes,
            dpop_bound_access_tokens: m.dpop_bound_access_tokens,
            broker_upstreams: serde_json::from_str(&m.broker_upstreams).map_err(c)?,
        },
        source: Source::parse(&m.source),
        created_at: m.created_at,
        application_type: m.application_type,
        metadata: match serde_json::from_str::<serde_json::Value>(&m.metadata) {
            Ok(serde_json::Value::Object(o)) if o.is_empty() => serde_json::Value::Null,
            Ok(v) => v,
            Err(_) => serde_json::Value::Null,
        },
    })
}

fn client_model(c: &ClientConfig, source: Source, now: i64) -> client::ActiveModel {
    client_model_with(c, source, now, None)
}

fn client_model_with(c: &ClientConfig, source: Source, now: i64, extras: Option<&ClientExtras>) -> client::ActiveModel {
    client::ActiveModel {
        client_id: Set(c.client_id.clone()),
        client_name: Set(c.client_name.clone()),
        token_endpoint_auth_method: Set(c.token_endpoint_auth_method.as_str().to_owned()),
        client_secret_sha256: Set(c.client_secret_sha256.clone()),
        redirect_uris: Set(to_json(&c.redirect_uris)),
        grant_types: Set(to_json(&c.grant_types)),
        allowed_resources: Set(to_json(&c.allowed_resources)),
        allowed_scopes: Set(to_json(&c.allowed_scopes)),
        source: Set(source.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
        application_type: Set(extras.map_or_else(|| "web".to_owned(), |e| e.application_type.clone())),
        metadata: Set(extras.map_or_else(|| "{}".to_owned(), |e| e.metadata.to_string())),
        dpop_bound_access_tokens: Set(c.dpop_bound_access_tokens),
        broker_upstreams: Set(to_json(&c.broker_upstreams)),
    }
}

fn user_from(m: user::Model) -> StoredUser {
    StoredUser {
        id: m.id,
        username: m.username,
        password_hash: Secret::new(m.password_hash),
        email: m.email,
        name: m.name,
        upstream: m.source.strip_prefix("upstream:").map(str::to_owned),
        source: Source::parse(&m.source),
        created_at: m.created_at,
    }
}

fn user_model(u: &UserConfig, source: Source, now: i64) -> user::ActiveModel {
    user::ActiveModel {
        id: Set(u.subject().to_owned()),
        username: Set(u.username.clone()),
        password_hash: Set(u.password_hash.expose().clone()),
        email: Set(u.email.clone()),
        name: Set(u.name.clone()),
        source: Set(source.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

// ---- resources ----

pub async fn list_resources<C: ConnectionTrait>(db: &C) -> Result<Vec<StoredResource>, StoreError> {
    resource::Entity::find()
        .order_by_asc(resource::Column::Resource)
        .all(db)
        .await?
        .into_iter()
        .map(resource_from)
        .collect()
}

pub async fn get_resource<C: ConnectionTrait>(db: &C, uri: &ResourceUri) -> Result<Option<StoredResource>, StoreError> {
    resource::Entity::find_by_id(uri.to_string()).one(db).await?.map(resource_from).transpose()
}

pub async fn insert_resource<C: ConnectionTrait>(
    db: &C,
    r: &ResourceConfig,
    source: Source,
    now: i64,
) -> Result<(), StoreError> {
    resource::Entity::insert(resource_model(r, source, now))
        .exec_without_returning(db)
        .await
        .map_err(|e| conflict_or(e, format!("resource {}", r.resource)))?;
    Ok(())
}

pub async fn delete_resource<C: ConnectionTrait>(db: &C, uri: &ResourceUri) -> Result<bool, StoreError> {
    Ok(resource::Entity::delete_by_id(uri.to_string()).exec(db).await?.rows_affected > 0)
}

// ---- clients ----

pub async fn list_clients<C: ConnectionTrait>(db: &C) -> Result<Vec<StoredClient>, StoreError> {
    client::Entity::find().order_by_asc(client::Column::ClientId).all(db).await?.into_iter().map(client_from).collect()
}

/// One page of clients in `client_id` order, after `after` (a keyset cursor).
pub async fn list_clients_page<C: ConnectionTrait>(
    db: &C,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<StoredClient>, StoreError> {
    use sea_orm::QuerySelect;
    let mut q = client::Entity::find().order_by_asc(client::Column::ClientId).limit(limit);
    if let Some(a) = after {
        q = q.filter(client::Column::ClientId.gt(a));
    }
    q.all(db).await?.into_iter().map(client_from).collect()
}

/// How many clients came from `source`.
pub async fn count_clients<C: ConnectionTrait>(db: &C, source: Source) -> Result<u64, StoreError> {
    use sea_orm::PaginatorTrait;
    Ok(client::Entity::find().filter(client::Column::Source.eq(source.as_str())).count(db).await?)
}

/// Deletes dynamically registered clients that were registered before
/// `now - unused_for` and have no token family started since then nor one
/// still alive: clients nobody uses, whose tokens are all gone.
pub async fn purge_unused_dcr<C: ConnectionTrait>(db: &C, now: i64, unused_for: i64) -> Result<u64, StoreError> {
    use super::entities::token_family;
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
    let cutoff = now - unused_for;
    let in_use = Query::select()
        .expr(Expr::val(1))
        .from(token_family::Entity)
        .and_where(
            Expr::col((token_family::Entity, token_family::Column::ClientId))
                .equals((Alias::new("clients"), client::Column::ClientId)),
        )
        .cond_where(
            sea_orm::Condition::any().add(token_family::Column::CreatedAt.gte(cutoff)).add(
                sea_orm::Condition::all()
                    .add(token_family::Column::RevokedAt.is_null())
                    .add(token_family::Column::ExpiresAt.gt(now)),
            ),
        )
        .to_owned();
    let res = client::Entity::delete_many()
        .filter(client::Column::Source.eq(Source::Dcr.as_str()))
        .filter(client::Column::CreatedAt.lt(cutoff))
        .filter(Expr::exists(in_use).not())
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

pub async fn get_client<C: ConnectionTrait>(db: &C, client_id: &str) -> Result<Option<StoredClient>, StoreError> {
    client::Entity::find_by_id(client_id.to_owned()).one(db).await?.map(client_from).transpose()
}

pub async fn insert_client<C: ConnectionTrait>(
    db: &C,
    c: &ClientConfig,
    source: Source,
    now: i64,
    extras: Option<&ClientExtras>,
) -> Result<(), StoreError> {
    client::Entity::insert(client_model_with(c, source, now, extras))
        .exec_without_returning(db)
        .await
        .map_err(|e| conflict_or(e, format!("client {}", c.client_id)))?;
    Ok(())
}

pub async fn delete_client<C: ConnectionTrait>(db: &C, client_id: &str) -> Result<bool, StoreError> {
    Ok(client::Entity::delete_by_id(client_id.to_owned()).exec(db).await?.rows_affected > 0)
}

// ---- users ----

pub async fn list_users<C: ConnectionTrait>(db: &C) -> Result<Vec<StoredUser>, StoreError> {
    Ok(user::Entity::find().order_by_asc(user::Column::Username).all(db).await?.into_iter().map(user_from).collect())
}

/// Whether anyone can sign in with a password (users from the config file
/// or the admin API; users from an identity provider have none).
pub async fn has_local_users<C: ConnectionTrait>(db: &C) -> Result<bool, StoreError> {
    Ok(user::Entity::find().filter(user::Column::Source.is_in(["config", "admin"])).one(db).await?.is_some())
}

/// By id, or else by username.
pub async fn find_user<C: ConnectionTrait>(db: &C, id_or_username: &str) -> Result<Option<StoredUser>, StoreError> {
    if let Some(u) = user::Entity::find_by_id(id_or_username.to_owned()).one(db).await? {
        return Ok(Some(user_from(u)));
    }
    Ok(user::Entity::find().filter(user::Column::Username.eq(id_or_username)).one(db).await?.map(user_from))
}

pub async fn insert_user<C: ConnectionTrait>(
    db: &C,
    u: &UserConfig,
    source: Source,
    now: i64,
) -> Result<(), StoreError> {
    user::Entity::insert(user_model(u, source, now))
        .exec_without_returning(db)
        .await
        .map_err(|e| conflict_or(e, format!("user {}", u.username)))?;
    Ok(())
}

/// A user an identity provider vouched for: created on first sign-in
/// (`source` = `upstream:<id>`, no password), its email and name refreshed
/// on each. An existing row of another source with this id is never taken
/// over (config validation keeps `<upstream>:` ids for these users).
pub async fn upsert_upstream_user<C: ConnectionTrait>(
    db: &C,
    upstream: &str,
    id: &str,
    username: &str,
    email: Option<String>,
    name: Option<String>,
    now: i64,
) -> Result<(), StoreError> {
    let source = format!("upstream:{upstream}");
    match user::Entity::find_by_id(id.to_owned()).one(db).await? {
        Some(existing) if existing.source != source => {
            Err(StoreError::Conflict(format!("user {id} (not from upstream {upstream})")))
        }
        Some(existing) => {
            if existing.email != email || existing.name != name {
                user::Entity::update(user::ActiveModel {
                    id: Set(id.to_owned()),
                    email: Set(email),
                    name: Set(name),
                    updated_at: Set(now),
                    ..Default::default()
                })
                .exec(db)
                .await?;
            }
            Ok(())
        }
        None => {
            user::Entity::insert(user::ActiveModel {
                id: Set(id.to_owned()),
                username: Set(username.to_owned()),
                password_hash: Set(String::new()),
                email: Set(email),
                name: Set(name),
                source: Set(source),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(db)
            .await
            .map_err(|e| conflict_or(e, format!("user {username}")))?;
            Ok(())
        }
    }
}

pub async fn delete_user<C: ConnectionTrait>(db: &C, id: &str) -> Result<bool, StoreError> {
    Ok(user::Entity::delete_by_id(id.to_owned()).exec(db).await?.rows_affected > 0)
}

/// What a config sync changed, for the log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub upserted: usize,
    pub removed: usize,
}

/// Makes the `config`-sourced rows equal to the config file, in one
/// transaction: entries are inserted or overwritten (a config entry takes over
/// an admin-created row with the same id), and config rows that left the file
/// are deleted. Rows created through the admin API or DCR are left alone.
pub async fn sync_config(db: &super::Db, cfg: &Config, now: i64) -> Result<SyncReport, StoreError> {
    let txn = db.begin().await?;
    // Replicas re-read a changed config file within seconds of each other:
    // one at a time, or two inserts of one new entry collide.
    super::pg::lock_for_transaction(&txn, super::pg::CONFIG_SYNC_LOCK_KEY).await?;
    let mut report = SyncReport::default();

    let want: HashSet<String> = cfg.resources.iter().map(|r| r.resource.to_string()).collect();
    for r in &cfg.resources {
        let existing = resource::Entity::find_by_id(r.resource.to_string()).one(&txn).await?;
        let mut m = resource_model(r, Source::Config, now);
        if let Some(e) = existing {
            if resource_from(e.clone()).is_ok_and(|s| s.spec == *r && s.source == Source::Config) {
                continue;
            }
            m.created_at = Set(e.created_at);
            resource::Entity::update(m).exec(&txn).await?;
        } else {
            resource::Entity::insert(m).exec_without_returning(&txn).await?;
        }
        report.upserted += 1;
    }
    let stale = resource::Entity::find().filter(resource::Column::Source.eq("config")).all(&txn).await?;
    for s in stale.into_iter().filter(|s| !want.contains(&s.resource)) {
        resource::Entity::delete_by_id(s.resource).exec(&txn).await?;
        report.removed += 1;
    }

    let want: HashSet<&str> = cfg.clients.iter().map(|c| c.client_id.as_str()).collect();
    for c in &cfg.clients {
        let existing = client::Entity::find_by_id(c.client_id.clone()).one(&txn).await?;
        let mut m = client_model(c, Source::Config, now);
        if let Some(e) = existing {
            if client_from(e.clone()).is_ok_and(|s| s.spec == *c && s.source == Source::Config) {
                continue;
            }
            m.created_at = Set(e.created_at);
            client::Entity::update(m).exec(&txn).await?;
        } else {
            client::Entity::insert(m).exec_without_returning(&txn).await?;
        }
        report.upserted += 1;
    }
    let stale = client::Entity::find().filter(client::Column::Source.eq("config")).all(&txn).await?;
    for s in stale.into_iter().filter(|s| !want.contains(s.client_id.as_str())) {
        client::Entity::delete_by_id(s.client_id).exec(&txn).await?;
        report.removed += 1;
    }

    let want: HashSet<&str> = cfg.users.iter().map(|u| u.subject()).collect();
    for u in &cfg.users {
        let existing = user::Entity::find_by_id(u.subject().to_owned()).one(&txn).await?;
        let mut m = user_model(u, Source::Config, now);
        if let Some(e) = existing {
            let same = e.username == u.username
                && e.password_hash == *u.password_hash.expose()
                && e.email == u.email
                && e.name == u.name
                && e.source == "config";
            if same {
                continue;
            }
            m.created_at = Set(e.created_at);
            user::Entity::update(m).exec(&txn).await?;
        } else {
            // A different row may hold the username; config wins.
            user::Entity::delete_many().filter(user::Column::Username.eq(u.username.clone())).exec(&txn).await?;
            user::Entity::insert(m).exec_without_returning(&txn).await?;
        }
        report.upserted += 1;
    }
    let stale = user::Entity::find().filter(user::Column::Source.eq("config")).all(&txn).await?;
    for s in stale.into_iter().filter(|s| !want.contains(s.id.as_str())) {
        user::Entity::delete_by_id(s.id).exec(&txn).await?;
        report.removed += 1;
    }

    txn.commit().await?;
    Ok(report)
}
