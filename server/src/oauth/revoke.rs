//! Revocation (RFC 7009) and introspection (RFC 7662).

use sea_orm::TransactionTrait;
use serde::Serialize;

use super::error::Error;
use super::jwt;
use super::token::RequestIds;
use crate::app::AppState;
use crate::random::sha256_hex;
use crate::store::audit::{self, AuditEvent};
use crate::store::oauth as rows;

/// Revokes a refresh token (its whole family) or an access token (by `jti`)
/// of `client_id`. Unknown tokens succeed silently (RFC 7009 §2.2).
#[tracing::instrument(name = "oauth.revoke", level = "debug", skip_all, fields(authplane.layer = "service", client_id = %client_id))]
pub async fn revoke(
    state: &AppState,
    client_id: &str,
    token: &str,
    hint: Option<&str>,
    ids: &RequestIds,
    now: i64,
) -> Result<(), Error> {
    let as_refresh = || async {
        let Some(row) = rows::get_refresh(&state.db, &sha256_hex(token.as_bytes())).await? else {
            return Ok::<bool, Error>(false);
        };
        let Some(family) = rows::get_family(&state.db, &row.family_id).await? else { return Ok(false) };
        if family.client_id != client_id {
            return Err(not_yours());
        }
        let txn = state.db.begin().await?;
        rows::revoke_family(&txn, &family.id, now).await?;
        audit::record(&txn, crate::clock::now_ms(), event(&family.user_id, client_id, ids, "refresh_token")).await?;
        txn.commit().await?;
        Ok(true)
    };
    let as_access = || async {
        let Some(claims) = jwt::verify_own(&state.keys, token, now) else { return Ok::<bool, Error>(false) };
        if claims.client_id != client_id {
            return Err(not_yours());
        }
        let txn = state.db.begin().await?;
        rows::revoke_access(&txn, &claims.jti, client_id, claims.exp, now).await?;
        audit::record(&txn, crate::clock::now_ms(), event(&claims.sub, client_id, ids, "access_token")).await?;
        txn.commit().await?;
        Ok(true)
    };
    // A JWT-shaped token (or the hint) is tried as an access token first.
    let access_first = hint == Some("access_token") || token.contains('.');
    let mut done = access_first && as_access().await?;
    if !done {
        done = as_refresh().await?;
    }
    if !done && !access_first {
        done = as_access().await?;
    }
    if !done {
        tracing::debug!(client_id, "revocation of an unknown token ignored");
    }
    Ok(())
}

/// RFC 7009 §2.1: a token issued to another client is refused, not revoked.
fn not_yours() -> Error {
    Error::new(super::error::Kind::UnauthorizedClient, "the token was not issued to this client")
}

fn event(user: &str, client_id: &str, ids: &RequestIds, kind: &str) -> AuditEvent {
    AuditEvent {
        event_type: "token_revoked",
        outcome: "success",
        user_id: Some(user.to_owned()),
        client_id: Some(client_id.to_owned()),
        request_id: ids.request_id.clone(),
        trace_id: ids.trace_id.clone(),
        detail: serde_json::json!({"reason": "client_request", "token_type": kind}),
        ..Default::default()
    }
}

#[derive(Debug, Serialize, Default)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// RFC 9449 §6.2: the key a DPoP-bound access token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<jwt::Confirmation>,
}

/// RFC 7662 §2.2: `{"active": false}` for anything not currently valid.
#[tracing::instrument(name = "oauth.introspect", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn introspect(state: &AppState, token: &str, now: i64) -> Result<Introspection, Error> {
    const SKEW: i64 = 30;
    if let Some(c) = jwt::verify_own(&state.keys, token, now) {
        let cfg = state.config.load();
        if c.iss != cfg.server.issuer || c.exp + SKEW <= now {
            return Ok(Introspection::default());
        }
        if let Some(row) = rows::get_access(&state.db, &c.jti).await? {
            let family_revoked = match &row.family_id {
                Some(f) => rows::get_family(&state.db, f).await?.is_none_or(|f| f.revoked_at.is_some()),
                None => false,
            };
            if row.revoked_at.is_some() || family_revoked {
                return Ok(Introspection::default());
            }
        }
        return Ok(Introspection {
            active: true,
            scope: Some(c.scope),
            client_id: Some(c.client_id),
            sub: Some(c.sub),
            aud: Some(c.aud),
            iss: Some(c.iss),
            exp: Some(c.exp),
            iat: Some(c.iat),
            jti: Some(c.jti),
            token_type: Some(if c.cnf.is_some() { "DPoP" } else { "Bearer" }),
            cnf: c.cnf,
        });
    }
    if let Some(row) = rows::get_refresh(&state.db, &sha256_hex(token.as_bytes())).await?
        && row.rotated_at.is_none()
        && let Some(f) = rows::get_family(&state.db, &row.family_id).await?
        && f.revoked_at.is_none()
        && f.expires_at > now
    {
        return Ok(Introspection {
            active: true,
            scope: Some(f.scope),
            client_id: Some(f.client_id),
            sub: Some(f.user_id),
            aud: serde_json::from_str(&f.resources).ok(),
            iss: Some(state.config.load().server.issuer.clone()),
            exp: Some(f.expires_at),
            iat: Some(row.created_at),
            token_type: Some("refresh_token"),
            ..Default::default()
        });
    }
    Ok(Introspection::default())
}
