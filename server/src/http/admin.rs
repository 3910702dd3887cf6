//! The admin listener (:9001): `/metrics`, `/healthz`, and the admin REST API
//! behind `Authorization: Bearer $AUTHPLANE_ADMIN_API_KEY`.

use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use authplane_core::config::{
    ClientConfig, GrantType, ResourceConfig, TokenEndpointAuthMethod, UserConfig, validate_client, validate_resource,
    validate_user,
};
use authplane_core::redirect::RedirectUri;
use authplane_core::{ResourceUri, Secret};
use futures_util::future::{Either, ready};
use sea_orm::TransactionTrait;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, json_error, query_error};
use super::observe::RequestContext;
use crate::oauth::broker;
use crate::state::AppState;
use crate::store::audit::{self, AuditEvent};
use crate::store::entries::{self as rows, Source, StoredUser};
use crate::{clock, password, random};

const MAX_BODY: usize = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(MAX_BODY).error_handler(json_error))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(healthz))
        .service(
            web::scope("/admin")
                .wrap_fn(require_admin_key)
                .route("/resources", web::get().to(list_resources))
                .route("/resources", web::post().to(create_resource))
                .route("/resources/one", web::get().to(get_resource))
                .route("/resources/one", web::delete().to(delete_resource))
                .route("/clients", web::get().to(list_clients))
                .route("/clients", web::post().to(create_client))
                .route("/clients/{client_id}", web::get().to(get_client))
                .route("/clients/{client_id}", web::delete().to(delete_client))
                .route("/users", web::get().to(list_users))
                .route("/users", web::post().to(create_user))
                .route("/users/{user}", web::get().to(get_user))
                .route("/users/{user}", web::delete().to(delete_user))
                .route("/users/{user}/upstreams/{upstream}", web::delete().to(delete_user_upstream))
                .route("/upstreams", web::get().to(list_upstreams))
                .route("/audit", web::get().to(audit_events))
                .route("/keys", web::get().to(list_keys))
                .route("/keys/rotate", web::post().to(rotate_keys)),
        )
        .default_service(web::to(|req: HttpRequest| async move {
            Err::<HttpResponse, _>(ApiError::not_found(format!("no such endpoint: {}", req.path())))
        }));
}

/// Checks the bearer key in constant time before any admin handler runs.
fn require_admin_key<S>(
    req: ServiceRequest,
    srv: &S,
) -> Either<S::Future, futures_util::future::Ready<Result<ServiceResponse, actix_web::Error>>>
where
    S: Service<ServiceRequest, Response = ServiceResponse, Error = actix_web::Error>,
{
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Either::Right(ready(Ok(req.error_response(ApiError::internal()))));
    };
    let key = state.admin_key.load();
    let Some(key) = key.as_ref() else {
        let e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin_api_disabled",
            "the admin API is off: set admin.api_key or AUTHPLANE_ADMIN_API_KEY on the server",
        );
        return Either::Right(ready(Ok(req.error_response(e))));
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .unwrap_or("");
    if presented.is_empty() || !random::secure_eq(presented.as_bytes(), key.expose().as_bytes()) {
        tracing::warn!(error = "ErrAdminUnauthorized", path = %req.path(), "admin API request refused");
        return Either::Right(ready(Ok(req.error_response(ApiError::unauthorized()))));
    }
    Either::Left(srv.call(req))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Some((open, idle, max)) = crate::store::pool_stats(&state.deps.db) {
        state.metrics.set_pool(open, idle, max);
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}

/// Liveness: the process serves requests. Readiness with the DB is `/health`.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

fn ctx(req: &HttpRequest) -> (Option<String>, Option<String>) {
    let ext = req.extensions();
    let c = ext.get::<RequestContext>();
    (c.map(|c| c.request_id.clone()), c.map(|c| c.trace_id.clone()))
}

fn admin_event(req: &HttpRequest, event_type: &'static str, detail: serde_json::Value) -> AuditEvent {
    let (request_id, trace_id) = ctx(req);
    AuditEvent { event_type, outcome: "success", request_id, trace_id, detail, ..Default::default() }
}

fn owned_by_config(kind: &str, id: &str) -> ApiError {
    ApiError::conflict(format!("{kind} {id} is defined in the config file; change it there"))
}

// ---- resources ----

#[derive(Deserialize)]
struct ResourceQuery {
    resource: String,
}

fn parse_resource(q: &ResourceQuery) -> Result<ResourceUri, ApiError> {
    ResourceUri::parse(&q.resource).map_err(|e| ApiError::bad_request(format!("resource: {e}")))
}

async fn list_resources(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(rows::list_resources(&state.deps.db).await?))
}

async fn get_resource(state: web::Data<AppState>, q: web::Query<ResourceQuery>) -> Result<HttpResponse, ApiError> {
    let uri = parse_resource(&q)?;
    match rows::get_resource(&state.deps.db, &uri).await? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(ApiError::not_found(format!("resource {uri} not found"))),
    }
}

async fn create_resource(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<ResourceConfig>,
) -> Result<HttpResponse, ApiError> {
    let r = body.into_inner();
    validate_resource("resource", &r)?;
    let now = clock::now();
    let txn = state.deps.db.begin().await?;
    rows::insert_resource(&txn, &r, Source::Admin, now).await?;
    audit::record(
        &txn,
        clock::now_ms(),
        AuditEvent {
            resource: Some(r.resource.to_string()),
            ..admin_event(&req, "resource_created", serde_json::json!({"scopes": r.scopes}))
        },
    )
    .await?;
    txn.commit().await?;
    state.deps.resources.refresh(&state.deps.db).await?;
    tracing::info!(resource = %r.resource, "resource created");
    let stored = rows::get_resource(&state.deps.db, &r.resource).await?;
    Ok(HttpResponse::Created().json(stored))
}

async fn delete_resource(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<ResourceQuery>,
) -> Result<HttpResponse, ApiError> {
    let uri = parse_resource(&q)?;
    let Some(existing) = rows::get_resource(&state.deps.db, &uri).await? else {
        return Err(ApiError::not_found(format!("resource {uri} not found")));
    };
    if existing.source == Source::Config {
        return Err(owned_by_config("resource", uri.as_str()));
    }
    let txn = state.deps.db.begin().await?;
    rows::delete_resource(&txn, &uri).await?;
    audit::record(
        &txn,
        clock::now_ms(),
        AuditEvent {
            resource: Some(uri.to_string()),
            ..admin_event(&req, "resource_deleted", serde_json::Value::Null)
        },
    )
    .await?;
    txn.commit().await?;
    state.deps.resources.refresh(&state.deps.db).await?;
    tracing::info!(resource = %uri, "resource deleted");
    Ok(HttpResponse::NoContent().finish())
}

// ---- clients ----

/// `POST /admin/clients`. The server generates the id (unless given) and,
/// for a confidential client, the secret, which is returned once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateClient {
    client_id: Option<String>,
    client_name: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: TokenEndpointAuthMethod,
    #[serde(default)]
    redirect_uris: Vec<String>,
    grant_types: Option<Vec<GrantType>>,
    #[serde(default)]
    allowed_resources: Vec<String>,
    #[serde(default)]
    allowed_scopes: Vec<String>,
    #[serde(default)]
    dpop_bound_access_tokens: bool,
}

#[derive(Serialize)]
struct CreatedClient {
    #[serde(flatten)]
    client: crate::store::entries::StoredClient,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<u64>,
    cursor: Option<String>,
}

const CLIENTS_MAX_LIMIT: u64 = 1000;

/// `GET /admin/clients?limit=&cursor=`: clients in `client_id` order, a page
/// at a time; `next_cursor` (the last id of the page) is null on the last one.
async fn list_clients(state: web::Data<AppState>, q: web::Query<PageQuery>) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > CLIENTS_MAX_LIMIT {
        return Err(ApiError::bad_request(format!("limit: must be between 1 and {CLIENTS_MAX_LIMIT}")));
    }
    let page = rows::list_clients_page(&state.deps.db, q.cursor.as_deref(), limit).await?;
    let next_cursor = (page.len() as u64 == limit).then(|| page.last().map(|c| c.spec.client_id.clone())).flatten();
    Ok(HttpResponse::Ok().json(serde_json::json!({"clients": page, "next_cursor": next_cursor})))
}

async fn get_client(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    match rows::get_client(&state.deps.db, &id).await? {
        Some(c) => Ok(HttpResponse::Ok().json(c)),
        None => Err(ApiError::not_found(format!("client {id} not found"))),
    }
}

async fn create_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<CreateClient>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let redirect_uris = b
        .redirect_uris
        .iter()
        .map(|u| RedirectUri::parse(u).map_err(|e| ApiError::bad_request(format!("client.redirect_uris: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let allowed_resources = b
        .allowed_resources
        .iter()
        .map(|u| ResourceUri::parse(u).map_err(|e| ApiError::bad_request(format!("client.allowed_resources: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let secret = b.token_endpoint_auth_method.is_confidential().then(random::secret_token);
    let client = ClientConfig {
        client_id: b.client_id.unwrap_or_else(|| random::id("c_")),
        client_name: b.client_name,
        token_endpoint_auth_method: b.token_endpoint_auth_method,
        client_secret_sha256: secret.as_ref().map(|s| random::sha256_hex(s.as_bytes())),
        redirect_uris,
        grant_types: b.grant_types.unwrap_or_else(|| vec![GrantType::AuthorizationCode, GrantType::RefreshToken]),
        allowed_resources,
        allowed_scopes: b.allowed_scopes,
        dpop_bound_access_tokens: b.dpop_bound_access_tokens,
        broker_upstreams: vec![],
    };
    let known = state.deps.resources.get();
    validate_client("client", &client, |r| known.resources.iter().any(|k| &k.resource == r))?;
    let now = clock::now();
    let txn = state.deps.db.begin().await?;
    rows::insert_client(&txn, &client, Source::Admin, now, None).await?;
    audit::record(&txn, clock::now_ms(), AuditEvent {
        client_id: Some(client.client_id.clone()),
        ..admin_event(&req, "client_registered", serde_json::json!({"via": "admin", "token_endpoint_auth_method": client.token_endpoint_auth_method.as_str()}))
    })
    .await
    ?;
    txn.commit().await?;
    tracing::info!(client_id = %client.client_id, "client created");
    let stored = rows::get_client(&state.deps.db, &client.client_id).await?.ok_or_else(ApiError::internal)?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedClient { client: stored, client_secret: secret }))
}

async fn delete_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some(existing) = rows::get_client(&state.deps.db, &id).await? else {
        return Err(ApiError::not_found(format!("client {id} not found")));
    };
    if existing.source == Source::Config {
        return Err(owned_by_config("client", &id));
    }
    let txn = state.deps.db.begin().await?;
    rows::delete_client(&txn, &id).await?;
    audit::record(
        &txn,
        clock::now_ms(),
        AuditEvent { client_id: Some(id.to_string()), ..admin_event(&req, "client_deleted", serde_json::Value::Null) },
    )
    .await?;
    txn.commit().await?;
    state.deps.clients.invalidate(&id);
    tracing::info!(client_id = %id, "client deleted");
    Ok(HttpResponse::NoContent().finish())
}

// ---- users ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    password: Secret<String>,
    id: Option<String>,
    email: Option<String>,
    name: Option<String>,
}

#[derive(Serialize)]
struct UserView {
    id: String,
    username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    source: Source,
    /// The identity provider that created the user (`source: upstream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<String>,
    /// The user's stored upstream grants (the token broker), never the tokens.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    upstream_grants: Vec<GrantView>,
    created_at: i64,
}

#[derive(Serialize)]
struct GrantView {
    upstream: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_refresh_outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_refresh_at: Option<i64>,
    updated_at: i64,
}

impl From<&crate::store::entities::upstream_grant::Model> for GrantView {
    fn from(g: &crate::store::entities::upstream_grant::Model) -> Self {
        GrantView {
            upstream: g.upstream_id.clone(),
            status: g.status.clone(),
            expires_at: g.expires_at,
            last_refresh_outcome: g.last_refresh_outcome.clone(),
            last_refresh_at: g.last_refresh_at,
            updated_at: g.updated_at,
        }
    }
}

impl From<StoredUser> for UserView {
    fn from(u: StoredUser) -> Self {
        UserView {
            id: u.id,
            username: u.username,
            email: u.email,
            name: u.name,
            source: u.source,
            upstream: u.upstream,
            upstream_grants: vec![],
            created_at: u.created_at,
        }
    }
}

async fn list_users(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let grants = broker::grants_of(&state.deps.db, None).await?;
    let users: Vec<UserView> = rows::list_users(&state.deps.db)
        .await?
        .into_iter()
        .map(|u| {
            let mut v = UserView::from(u);
            v.upstream_grants = grants.iter().filter(|g| g.user_id == v.id).map(GrantView::from).collect();
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(users))
}

async fn get_user(state: web::Data<AppState>, user: web::Path<String>) -> Result<HttpResponse, ApiError> {
    match rows::find_user(&state.deps.db, &user).await? {
        Some(u) => {
            let grants = broker::grants_of(&state.deps.db, Some(&u.id)).await?;
            let mut v = UserView::from(u);
            v.upstream_grants = grants.iter().map(GrantView::from).collect();
            Ok(HttpResponse::Ok().json(v))
        }
        None => Err(ApiError::not_found(format!("user {user} not found"))),
    }
}

/// `DELETE /admin/users/{user}/upstreams/{upstream}`: forgets the user's
/// stored grant of that upstream (its tokens are deleted; the next exchange
/// tells the MCP server the user must sign in through the upstream again).
async fn delete_user_upstream(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, upstream) = path.into_inner();
    let Some(existing) = rows::find_user(&state.deps.db, &user).await? else {
        return Err(ApiError::not_found(format!("user {user} not found")));
    };
    let ids = super::request::ids(&req);
    if !broker::delete_grant(&state.deps.db, &existing.id, &upstream, &ids, clock::now_ms()).await? {
        return Err(ApiError::not_found(format!("user {user} has no stored {upstream} grant")));
    }
    tracing::info!(user_id = %existing.id, upstream = %upstream, "upstream grant deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /admin/upstreams`: each identity provider, how many grants it has
/// stored by status, and the latest refresh outcome.
async fn list_upstreams(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cfg = state.deps.config.load_full();
    let grants = broker::grants_of(&state.deps.db, None).await?;
    let out: Vec<serde_json::Value> = cfg
        .upstreams
        .iter()
        .map(|u| {
            let mine: Vec<_> = grants.iter().filter(|g| g.upstream_id == u.id).collect();
            let count = |s: &str| mine.iter().filter(|g| g.status == s).count();
            let last = mine.iter().filter(|g| g.last_refresh_at.is_some()).max_by_key(|g| g.last_refresh_at);
            serde_json::json!({
                "id": u.id,
                "display_name": u.label(),
                "kind": if u.is_oidc() { "oidc" } else { "oauth2" },
                "issuer": u.issuer,
                "store_tokens": u.store_tokens,
                "active_grants": count("active"),
                "revoked_grants": count("revoked"),
                "last_refresh_outcome": last.and_then(|g| g.last_refresh_outcome.clone()),
                "last_refresh_at": last.and_then(|g| g.last_refresh_at).map(|t| clock::rfc3339_ms(t * 1000)),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

async fn create_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    if b.password.expose().chars().count() < 8 {
        return Err(ApiError::bad_request("user.password: shorter than 8 characters"));
    }
    if b.password.expose().len() > 1024 {
        return Err(ApiError::bad_request("user.password: longer than 1024 bytes"));
    }
    // argon2 is deliberately slow: keep it off the async workers.
    let pw = b.password.clone();
    let hash = web::block(move || password::hash(pw.expose()))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|_| ApiError::internal())?;
    let user = UserConfig {
        username: b.username,
        id: Some(b.id.unwrap_or_else(|| random::id("u_"))),
        password_hash: Secret::new(hash),
        email: b.email,
        name: b.name,
    };
    validate_user("user", &user)?;
    let txn = state.deps.db.begin().await?;
    rows::insert_user(&txn, &user, Source::Admin, clock::now()).await?;
    audit::record(
        &txn,
        clock::now_ms(),
        AuditEvent {
            user_id: Some(user.subject().to_owned()),
            ..admin_event(&req, "user_created", serde_json::json!({"username": user.username}))
        },
    )
    .await?;
    txn.commit().await?;
    tracing::info!(user_id = %user.subject(), "user created");
    let stored = rows::find_user(&state.deps.db, user.subject()).await?.ok_or_else(ApiError::internal)?;
    Ok(HttpResponse::Created().json(UserView::from(stored)))
}

async fn delete_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some(existing) = rows::find_user(&state.deps.db, &user).await? else {
        return Err(ApiError::not_found(format!("user {user} not found")));
    };
    if existing.source == Source::Config {
        return Err(owned_by_config("user", &existing.username));
    }
    let txn = state.deps.db.begin().await?;
    // Its stored upstream grants (secrets) go with it, each with its row.
    let ids = super::request::ids(&req);
    for g in broker::grants_of(&txn, Some(&existing.id)).await? {
        broker::delete_grant(&txn, &existing.id, &g.upstream_id, &ids, clock::now_ms()).await?;
    }
    rows::delete_user(&txn, &existing.id).await?;
    audit::record(
        &txn,
        clock::now_ms(),
        AuditEvent { user_id: Some(existing.id.clone()), ..admin_event(&req, "user_deleted", serde_json::Value::Null) },
    )
    .await?;
    txn.commit().await?;
    tracing::info!(user_id = %existing.id, "user deleted");
    Ok(HttpResponse::NoContent().finish())
}

// ---- keys ----

async fn list_keys(state: web::Data<AppState>) -> HttpResponse {
    let now = clock::now();
    HttpResponse::Ok().json(serde_json::json!({
        "store": state.deps.keys.describe_store(),
        "next_rotation_at": state.deps.keys.next_rotation(now),
        "keys": state.deps.keys.list(now),
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    #[serde(default)]
    immediate: bool,
}

async fn rotate_keys(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Option<web::Json<RotateRequest>>,
) -> Result<HttpResponse, ApiError> {
    let immediate = body.map(|b| b.immediate).unwrap_or(false);
    let now = clock::now();
    let info = state.deps.keys.rotate(now, immediate).await.map_err(|e| match e {
        crate::keys::KeysError::Store(crate::keys::KeyStoreError::ReadOnly(_)) => ApiError::conflict(e.to_string()),
        other => {
            tracing::error!(error = "ErrKeyRotation", detail = %other, "key rotation failed");
            ApiError::unavailable("key rotation failed; see the server log")
        }
    })?;
    let _ = audit::record(
        &state.deps.db,
        clock::now_ms(),
        admin_event(
            &req,
            "key_rotated",
            serde_json::json!({"kid": info.kid, "immediate": immediate, "active_from": info.active_from}),
        ),
    )
    .await;
    tracing::info!(kid = %info.kid, immediate, active_from = %clock::rfc3339(info.active_from), "signing key rotated: new key published");
    Ok(HttpResponse::Created().json(info))
}

// ---- audit ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    since: Option<String>,
    until: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
}

const AUDIT_MAX_LIMIT: u64 = 1000;

/// `GET /admin/audit`: events in the order they happened, filtered, with a
/// keyset `cursor` (the id of the last row of the previous page).
async fn audit_events(state: web::Data<AppState>, q: web::Query<AuditQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                clock::parse_rfc3339_ms(s).ok_or_else(|| {
                    ApiError::bad_request(format!("{name}: not an RFC 3339 time, e.g. 2026-07-01T00:00:00Z"))
                })
            })
            .transpose()
    };
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > AUDIT_MAX_LIMIT {
        return Err(ApiError::bad_request(format!("limit: must be between 1 and {AUDIT_MAX_LIMIT}")));
    }
    let after_id = q
        .cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| ApiError::bad_request("cursor: not a cursor returned by this API")))
        .transpose()?;
    let query = audit::Query {
        since_ms: time("since", &q.since)?,
        until_ms: time("until", &q.until)?,
        user_id: q.user_id,
        client_id: q.client_id,
        event_type: q.event_type,
        after_id,
        limit,
    };
    let rows = audit::query(&state.deps.db, &query).await?;
    let next_cursor = (rows.len() as u64 == limit).then(|| rows.last().map(|r| r.id.to_string())).flatten();
    let events: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "time": clock::rfc3339_ms(r.occurred_at_ms),
                "type": r.event_type,
                "outcome": r.outcome,
                "user_id": r.user_id,
                "client_id": r.client_id,
                "resource": r.resource,
                "request_id": r.request_id,
                "trace_id": r.trace_id,
                "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"events": events, "next_cursor": next_cursor})))
}
