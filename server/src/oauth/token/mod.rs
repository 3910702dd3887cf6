//! The token endpoint (RFC 6749 §3.2, §5): one file per grant type,
//! dispatched on [`GrantType`], never on a raw string.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use authplane_core::config::GrantType;
use sea_orm::ConnectionTrait;
use serde::Serialize;

use super::client_auth::{self, Presented};
use super::clients;
use super::error::{Error, Kind};
use super::form::Form;
use super::jwt::{self, AccessClaims};
use crate::oauth::Deps;
use crate::store::audit::{self, AuditEvent};
use crate::store::oauth as rows;

/// Ids that tie audit rows and logs to the HTTP request.
#[derive(Debug, Clone, Default)]
pub struct RequestIds {
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// RFC 9449 §5: `DPoP` for a key-bound access token.
pub(crate) fn token_type(jkt: Option<&str>) -> &'static str {
    if jkt.is_some() { "DPoP" } else { "Bearer" }
}

/// What the handler logs about a request, success or failure.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub grant_type: Option<GrantType>,
    pub client_id: Option<String>,
    pub resource: Option<String>,
    /// The user the grant belongs to, once known.
    pub user_id: Option<String>,
    /// The DPoP proof's key, once the proof passed.
    pub dpop_jkt: Option<String>,
    /// A fresh `DPoP-Nonce` to send with the answer.
    pub dpop_nonce: Option<String>,
}

/// A grant's result and what it learned on the way (the canonical resource,
/// the user), which the log line and the failure audit row name even when
/// the grant failed.
pub struct GrantResult {
    pub result: Result<TokenResponse, Error>,
    pub resource: Option<String>,
    pub user_id: Option<String>,
}

impl GrantResult {
    /// Refused before anything was learned.
    pub(crate) fn failed(e: Error) -> Self {
        GrantResult { result: Err(e), resource: None, user_id: None }
    }
}

fn grant_type(s: Option<&str>) -> Result<GrantType, Error> {
    match s {
        Some("authorization_code") => Ok(GrantType::AuthorizationCode),
        Some("refresh_token") => Ok(GrantType::RefreshToken),
        Some("client_credentials") => Ok(GrantType::ClientCredentials),
        Some(other) => Err(Error::new(Kind::UnsupportedGrantType, format!("grant_type {other} is not supported"))),
        None => Err(Error::new(Kind::InvalidRequest, "grant_type is required")),
    }
}

/// Finds and authenticates the client behind `presented`, with failed
/// attempts throttled per (client id, address), client id and address.
pub(crate) async fn authenticate(
    deps: &Deps,
    presented: &Presented,
    addr: Option<std::net::IpAddr>,
    now: i64,
) -> Result<clients::Client, Error> {
    let cfg = deps.config.load();
    let throttle = cfg.limits.failure_throttle;
    let now_ms = now.saturating_mul(1000);
    let subject = crate::limits::Subject::Client;
    if throttle && let Some(ms) = deps.throttle.blocked(subject, &presented.client_id, addr, now_ms) {
        return Err(Error::new(
            Kind::ClientThrottled,
            "too many failed client authentications for this client; retry after the Retry-After seconds",
        )
        .retry_after((ms as u64).div_ceil(1000)));
    }
    let found = clients::find_from(deps, &presented.client_id, now, addr).await?;
    let result = match found {
        Some(c) => client_auth::verify(&c.spec, presented).map(|()| c),
        None => Err(Error::new(Kind::InvalidClient, "client authentication failed")),
    };
    if throttle {
        match &result {
            Err(e) if e.kind == Kind::InvalidClient => {
                let schedule = crate::limits::Schedule::from_config(&cfg.limits);
                deps.throttle.failed(subject, &presented.client_id, addr, now_ms, &schedule);
            }
            Ok(c) if c.spec.token_endpoint_auth_method.is_confidential() => {
                deps.throttle.succeeded(subject, &presented.client_id, addr)
            }
            _ => {}
        }
    }
    result
}

/// A token request as the handler read it.
pub struct TokenRequest<'a> {
    pub form: Form,
    /// The `Authorization` header (client_secret_basic).
    pub authorization: Option<&'a str>,
    /// Every `DPoP` header value (more than one is refused).
    pub dpop: &'a [&'a str],
    /// The client's address, for the failure throttle and metadata fetches.
    pub addr: Option<std::net::IpAddr>,
}

/// The token endpoint as a service: authenticates the client, checks a DPoP
/// proof, runs the grant, and records a refused request's audit row. Returns
/// the answer and what the handler logs and counts about it.
pub async fn exchange(
    deps: &Deps,
    request: TokenRequest<'_>,
    ids: &RequestIds,
    now: i64,
) -> (Result<TokenResponse, Error>, Outcome) {
    let mut outcome = Outcome::default();
    let result = authenticate_and_grant(deps, request, ids, now, &mut outcome).await;
    if let Err(e) = &result {
        // A refused DPoP proof gets its own event type so it can be queried.
        let event_type = if e.dpop.is_some() { "dpop_proof_rejected" } else { "token_failed" };
        audit_refusal(deps, ids, &outcome, e, event_type, || {
            let grant_type = outcome.grant_type.map(|g| g.as_str());
            serde_json::json!({"error": e.name(), "code": e.kind.code(), "grant_type": grant_type, "dpop_reason": e.dpop.map(|r| r.label()), "dpop_jkt": outcome.dpop_jkt})
        })
        .await;
    }
    (result, outcome)
}

/// One audit row for a refused token request that was the client's doing (a
/// 4xx), with the request's trace id. Best effort: the answer does not wait
/// on a failed write.
async fn audit_refusal(
    deps: &Deps,
    ids: &RequestIds,
    outcome: &Outcome,
    e: &Error,
    event_type: &'static str,
    detail: impl FnOnce() -> serde_json::Value,
) {
    if e.kind.status() >= 500 {
        return;
    }
    let detail = detail();
    let _ = deps
        .audit
        .record(
            deps.clock.now_ms(),
            AuditEvent {
                event_type,
                outcome: "failure",
                user_id: outcome.user_id.clone(),
                client_id: outcome.client_id.clone(),
                resource: outcome.resource.clone(),
                request_id: ids.request_id.clone(),
                trace_id: ids.trace_id.clone(),
                detail,
            },
        )
        .await;
}

/// RFC 8693 token exchange for a user's upstream token (the broker):
/// authenticates the client (confidential only) and hands over to
/// [`super::broker::exchange`]. A refusal gets its `token_failed` audit row
/// as on the other grants.
#[tracing::instrument(name = "oauth.token_exchange", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn exchange_upstream(
    deps: &Deps,
    request: TokenRequest<'_>,
    ids: &RequestIds,
    now: i64,
) -> (Result<super::broker::ExchangeResponse, Error>, Outcome) {
    let mut outcome = Outcome::default();
    let mut seen = super::broker::Exchanged::default();
    let result = async {
        let TokenRequest { form, authorization, addr, .. } = request;
        let presented = client_auth::presented(authorization, form.get("client_id"), form.get("client_secret"))?;
        outcome.client_id = Some(presented.client_id.clone());
        let client = authenticate(deps, &presented, addr, now).await?;
        if client.spec.broker_upstreams.is_empty() || !client.spec.token_endpoint_auth_method.is_confidential() {
            return Err(Error::new(
                Kind::UnauthorizedClient,
                "client may not use token exchange: it brokers no upstream (broker_upstreams)",
            ));
        }
        super::broker::exchange(deps, &client.spec, &form, ids, now, &mut seen).await
    }
    .await;
    outcome.user_id = seen.user_id;
    outcome.resource = seen.upstream.map(|u| format!("upstream:{u}"));
    if let Err(e) = &result {
        audit_refusal(
            deps,
            ids,
            &outcome,
            e,
            "token_failed",
            || serde_json::json!({"error": e.name(), "code": e.kind.code(), "grant_type": super::broker::GRANT_TYPE}),
        )
        .await;
    }
    (result, outcome)
}

#[tracing::instrument(name = "oauth.token", level = "debug", skip_all, fields(authplane.layer = "service", grant_type = tracing::field::Empty, client_id = tracing::field::Empty, resource = tracing::field::Empty))]
async fn authenticate_and_grant(
    deps: &Deps,
    request: TokenRequest<'_>,
    ids: &RequestIds,
    now: i64,
    outcome: &mut Outcome,
) -> Result<TokenResponse, Error> {
    let TokenRequest { form, authorization, dpop: dpop_headers, addr } = request;
    let span = tracing::Span::current();
    let grant = grant_type(form.get("grant_type"))?;
    outcome.grant_type = Some(grant);
    span.record("grant_type", grant.as_str());
    let presented: Presented = client_auth::presented(authorization, form.get("client_id"), form.get("client_secret"))?;
    outcome.client_id = Some(presented.client_id.clone());
    span.record("client_id", presented.client_id.as_str());
    let client = authenticate(deps, &presented, addr, now).await?;
    if !client.spec.grant_types.contains(&grant) {
        return Err(Error::new(Kind::UnauthorizedClient, format!("client may not use the {} grant", grant.as_str())));
    }
    // What the request asked for, for the log line and audit row of a
    // refused proof (a grant replaces it with the canonical resource).
    outcome.resource = form.resource.first().cloned();
    // RFC 9449 §5: a proof on any grant; checked (and its jti spent) once
    // the client is known, so strangers cannot fill the replay store.
    let proof = super::dpop::check_token_request(deps, dpop_headers, now).await?;
    if let Some(p) = &proof {
        outcome.dpop_jkt = Some(p.jkt.clone());
        outcome.dpop_nonce.clone_from(&p.next_nonce);
    }
    let jkt = proof.as_ref().map(|p| p.jkt.as_str());
    if jkt.is_none() && client.spec.dpop_bound_access_tokens {
        return Err(super::dpop::required("the client is registered with dpop_bound_access_tokens"));
    }
    let GrantResult { result, resource, user_id } = match grant {
        GrantType::AuthorizationCode => authorization_code::exchange(deps, &client.spec, &form, jkt, ids, now).await,
        GrantType::RefreshToken => refresh_token::exchange(deps, &client.spec, &form, jkt, ids, now).await,
        GrantType::ClientCredentials => client_credentials::exchange(deps, &client.spec, &form, jkt, ids, now).await,
    };
    if resource.is_some() {
        outcome.resource = resource;
    }
    outcome.user_id = user_id;
    if let Some(r) = &outcome.resource {
        span.record("resource", r.as_str());
    }
    result
}

/// Who and what an access token is for.
pub(crate) struct Subject<'a> {
    pub sub: &'a str,
    pub client_id: &'a str,
    pub aud: &'a [String],
    pub scope: &'a str,
    /// The token family, for user grants.
    pub family: Option<&'a str>,
    /// The DPoP key the token is bound to (`cnf.jkt`).
    pub jkt: Option<&'a str>,
}

/// Signs an access token and, for user grants, records its `jti` in the
/// family so that revoking the family revokes it too.
pub(crate) async fn issue_access<C: ConnectionTrait>(
    deps: &Deps,
    conn: &C,
    who: Subject<'_>,
    now: i64,
) -> Result<(String, i64), Error> {
    let Subject { sub, client_id, aud, scope, family, jkt } = who;
    if jkt.is_none() {
        let index = deps.resources.get();
        if let Some(r) =
            index.resources.iter().find(|r| r.dpop_required && aud.iter().any(|a| a == r.resource.as_str()))
        {
            return Err(super::dpop::required(&format!("resource {} has dpop_required", r.resource)));
        }
    }
    let cfg = deps.config.load();
    let ttl = cfg.oauth.access_token_ttl.as_secs() as i64;
    let claims = AccessClaims {
        iss: cfg.server.issuer.clone(),
        sub: sub.to_owned(),
        aud: aud.to_vec(),
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        iat: now,
        exp: now + ttl,
        jti: deps.ids.id(""),
        cnf: jkt.map(|j| jwt::Confirmation { jkt: j.to_owned() }),
    };
    let token = jwt::mint(&deps.keys, &claims, now)?;
    if let Some(f) = family {
        rows::insert_access(conn, claims.jti.clone(), Some(f.to_owned()), client_id.to_owned(), claims.exp).await?;
    }
    Ok((token, ttl))
}

/// The end of every grant: the access token, the audit row (`event_type`
/// with `detail`) and, for user grants, in `txn` with the commit; for
/// `client_credentials` (no `txn`) through the group-committed audit sink.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish(
    deps: &Deps,
    txn: Option<sea_orm::DatabaseTransaction>,
    who: Subject<'_>,
    event_type: &'static str,
    detail: serde_json::Value,
    refresh_token: Option<String>,
    ids: &RequestIds,
    now: i64,
) -> Result<TokenResponse, Error> {
    let (sub, client_id, aud, scope, jkt) = (who.sub, who.client_id, who.aud, who.scope, who.jkt);
    let event = AuditEvent {
        event_type,
        outcome: "success",
        user_id: who.family.map(|_| sub.to_owned()),
        client_id: Some(client_id.to_owned()),
        resource: aud.first().cloned(),
        request_id: ids.request_id.clone(),
        trace_id: ids.trace_id.clone(),
        detail,
    };
    let (access_token, expires_in) = match txn {
        Some(txn) => {
            let issued = issue_access(deps, &txn, who, now).await?;
            audit::record(&txn, deps.clock.now_ms(), event).await?;
            txn.commit().await?;
            issued
        }
        None => {
            let issued = issue_access(deps, &deps.db, who, now).await?;
            deps.audit.record(deps.clock.now_ms(), event).await?;
            issued
        }
    };
    Ok(TokenResponse { access_token, token_type: token_type(jkt), expires_in, scope: scope.to_owned(), refresh_token })
}

/// Revokes a family after a replayed code or a reused refresh token, with
/// the audit row, in one transaction.
pub(crate) async fn revoke_family_for(
    deps: &Deps,
    family_id: &str,
    client_id: &str,
    user_id: &str,
    why: &'static str,
    ids: &RequestIds,
    now: i64,
) -> Result<(), Error> {
    use sea_orm::TransactionTrait;
    let txn = deps.db.begin().await?;
    let was_live = rows::revoke_family(&txn, family_id, now).await?;
    audit::record(
        &txn,
        deps.clock.now_ms(),
        AuditEvent {
            event_type: "token_revoked",
            outcome: "success",
            user_id: Some(user_id.to_owned()),
            client_id: Some(client_id.to_owned()),
            request_id: ids.request_id.clone(),
            trace_id: ids.trace_id.clone(),
            detail: serde_json::json!({"reason": why, "scope": "family", "was_live": was_live}),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    tracing::warn!(client_id, user_id, reason = why, "token family revoked");
    Ok(())
}

/// RFC 8707 §2.2 on the token endpoint: requested resources must be a subset
/// of what was granted; none requested = all of them.
pub(crate) fn narrow_resources(requested: &[String], granted: &[String]) -> Result<Vec<String>, Error> {
    if requested.is_empty() {
        return Ok(granted.to_vec());
    }
    let mut out = Vec::new();
    for r in requested {
        let canon = authplane_core::ResourceUri::parse(r)
            .map_err(|e| Error::new(Kind::InvalidTarget, format!("resource: {e}")))?
            .to_string();
        if !granted.contains(&canon) {
            return Err(Error::new(Kind::InvalidTarget, format!("resource {canon} was not granted")));
        }
        if !out.contains(&canon) {
            out.push(canon);
        }
    }
    Ok(out)
}

/// Requested scopes must be a subset of the granted ones (RFC 6749 §6).
pub(crate) fn narrow_scope(requested: Option<&str>, granted: &str) -> Result<String, Error> {
    let Some(req) = requested else { return Ok(granted.to_owned()) };
    let g: Vec<&str> = granted.split(' ').collect();
    let mut out: Vec<&str> = Vec::new();
    for s in authplane_core::scope::split(req) {
        if s == super::scopes::OFFLINE_ACCESS {
            continue;
        }
        if !g.contains(&s) {
            return Err(Error::new(Kind::InvalidScope, format!("scope {s} was not granted")));
        }
        out.push(s);
    }
    if out.is_empty() {
        return Err(Error::new(Kind::InvalidScope, "scope is empty"));
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests;
