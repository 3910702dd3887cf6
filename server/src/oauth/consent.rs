//! After sign-in: which scopes still need the user's consent, and issuing the
//! authorization code (RFC 6749 §4.1.2) — the consent just given, the code
//! and the spent authorization request in one transaction.

use sea_orm::TransactionTrait;

use super::Deps;
use super::authorize::Validated;
use super::error::Error;
use super::token::RequestIds;
use crate::random::{secret_token, sha256_hex};
use crate::store::audit::{self, AuditEvent};
use crate::store::oauth::{self as rows, CodeRow};

/// Per requested resource, the requested scopes of that resource the user
/// has not consented to yet (empty: nothing to ask).
pub async fn missing(deps: &Deps, user_id: &str, v: &Validated) -> Result<Vec<(String, Vec<String>)>, Error> {
    let index = deps.resources.get();
    let mut out = Vec::new();
    for r in &v.resources {
        let have = rows::consented_scopes(&deps.db, user_id, &v.client_id, r).await?.unwrap_or_default();
        let known = index.resources.iter().find(|x| x.resource.as_str() == r).map(|x| x.scopes.as_slice());
        let new: Vec<String> =
            v.scopes.iter().filter(|s| known.is_some_and(|k| k.contains(s)) && !have.contains(s)).cloned().collect();
        out.push((r.clone(), new));
    }
    Ok(out)
}

/// Records consent (when `granted_now`), stores a single-use code for `v`
/// and deletes the authorization request `request_row_id` (none when the
/// code is issued straight from `/oauth/authorize`), in one transaction.
/// Returns the code (only its digest is stored).
pub async fn issue_code(
    deps: &Deps,
    request_row_id: Option<&str>,
    v: &Validated,
    user_id: &str,
    granted_now: bool,
    ids: &RequestIds,
    now: i64,
) -> Result<String, Error> {
    let code_ttl = deps.config.load().oauth.authorization_code_ttl.as_secs() as i64;
    let code = secret_token();
    let txn = deps.db.begin().await?;
    if granted_now {
        for r in &v.resources {
            let mut scopes = rows::consented_scopes(&txn, user_id, &v.client_id, r).await?.unwrap_or_default();
            for s in &v.scopes {
                if !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
            rows::save_consent(&txn, user_id, &v.client_id, r, &scopes, now).await?;
            audit::record(
                &txn,
                deps.clock.now_ms(),
                AuditEvent {
                    event_type: "consent_granted",
                    outcome: "success",
                    user_id: Some(user_id.to_owned()),
                    client_id: Some(v.client_id.clone()),
                    resource: Some(r.clone()),
                    request_id: ids.request_id.clone(),
                    trace_id: ids.trace_id.clone(),
                    detail: serde_json::json!({"scopes": v.scopes}),
                },
            )
            .await?;
        }
    }
    rows::insert_code(
        &txn,
        CodeRow {
            code_sha256: sha256_hex(code.as_bytes()),
            client_id: v.client_id.clone(),
            user_id: user_id.to_owned(),
            redirect_uri: v.redirect_uri.clone(),
            code_challenge: v.code_challenge.clone(),
            resources: serde_json::to_string(&v.resources).unwrap_or_default(),
            scope: v.scopes.join(" "),
            offline_access: v.offline_access,
            family_id: deps.ids.id("fam_"),
            created_at: now,
            expires_at: now + code_ttl,
            consumed_at: None,
            dpop_jkt: v.dpop_jkt.clone(),
        },
    )
    .await?;
    if let Some(id) = request_row_id {
        rows::delete_auth_request(&txn, id).await?;
    }
    txn.commit().await?;
    Ok(code)
}
