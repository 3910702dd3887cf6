//! `grant_type=refresh_token` (RFC 6749 §6, OAuth 2.1 §4.3.1): rotation on
//! every use; a spent token presented again revokes the whole family
//! (RFC 9700 §4.14.2). The family keeps its absolute expiry.

use authplane_core::config::ClientConfig;
use sea_orm::TransactionTrait;

use super::{
    Outcome, RequestIds, Subject, TokenResponse, issue_access, narrow_resources, narrow_scope, revoke_family_for,
};
use crate::app::AppState;
use crate::oauth::error::{Error, Kind};
use crate::oauth::form::Form;
use crate::random::{secret_token, sha256_hex};
use crate::store::audit::{self, AuditEvent};
use crate::store::oauth as rows;

pub async fn exchange(
    state: &AppState,
    client: &ClientConfig,
    form: &Form,
    ids: &RequestIds,
    now: i64,
    outcome: &mut Outcome,
) -> Result<TokenResponse, Error> {
    let token =
        form.get("refresh_token").ok_or_else(|| Error::new(Kind::InvalidRequest, "refresh_token is required"))?;
    let digest = sha256_hex(token.as_bytes());
    let invalid = || Error::new(Kind::InvalidGrant, "unknown, expired or revoked refresh token");
    let row = rows::get_refresh(&state.db, &digest).await?.ok_or_else(invalid)?;
    let family = rows::get_family(&state.db, &row.family_id).await?.ok_or_else(invalid)?;
    let granted_resources: Vec<String> = serde_json::from_str(&family.resources).unwrap_or_default();
    outcome.resource = granted_resources.first().cloned();
    outcome.user_id = Some(family.user_id.clone());
    if family.client_id != client.client_id {
        return Err(Error::new(Kind::InvalidGrant, "refresh token was issued to another client"));
    }
    if family.revoked_at.is_some() {
        return Err(invalid());
    }
    if row.rotated_at.is_some() {
        revoke_family_for(state, &family.id, &family.client_id, &family.user_id, "refresh_reuse", ids, now).await?;
        return Err(Error::new(
            Kind::RefreshReuse,
            "refresh token was already used; every token of this grant is revoked",
        ));
    }
    if family.expires_at <= now {
        return Err(invalid());
    }
    let scope = narrow_scope(form.get("scope"), &family.scope)?;
    let aud = narrow_resources(&form.resource, &granted_resources)?;

    let txn = state.db.begin().await?;
    if !rows::rotate_refresh(&txn, &digest, now).await? {
        drop(txn);
        revoke_family_for(state, &family.id, &family.client_id, &family.user_id, "refresh_reuse", ids, now).await?;
        return Err(Error::new(
            Kind::RefreshReuse,
            "refresh token was already used; every token of this grant is revoked",
        ));
    }
    let next = secret_token();
    rows::insert_refresh(&txn, sha256_hex(next.as_bytes()), family.id.clone(), now).await?;
    let (access_token, expires_in) = issue_access(
        state,
        &txn,
        Subject {
            sub: &family.user_id,
            client_id: &family.client_id,
            aud: &aud,
            scope: &scope,
            family: Some(&family.id),
        },
        now,
    )
    .await?;
    audit::record(
        &txn,
        crate::clock::now_ms(),
        AuditEvent {
            event_type: "token_refreshed",
            outcome: "success",
            user_id: Some(family.user_id.clone()),
            client_id: Some(family.client_id.clone()),
            resource: aud.first().cloned(),
            request_id: ids.request_id.clone(),
            trace_id: ids.trace_id.clone(),
            detail: serde_json::json!({"grant_type": "refresh_token", "scope": scope, "aud": aud}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(TokenResponse { access_token, token_type: "Bearer", expires_in, scope, refresh_token: Some(next) })
}
