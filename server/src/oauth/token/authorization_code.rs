//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6): single
//! use; a replayed code revokes what it issued (RFC 6749 §4.1.2).

use authplane_core::config::{ClientConfig, GrantType};
use sea_orm::TransactionTrait;

use super::{GrantResult, RequestIds, Subject, TokenResponse, finish, narrow_resources, revoke_family_for};
use crate::oauth::Deps;
use crate::oauth::error::{Error, Kind};
use crate::oauth::form::Form;
use crate::oauth::pkce;
use crate::random::{secret_token, sha256_hex};
use crate::store::json_column;
use crate::store::oauth::{self as rows, CodeRow, FamilyRow};

pub async fn exchange(
    deps: &Deps,
    client: &ClientConfig,
    form: &Form,
    jkt: Option<&str>,
    ids: &RequestIds,
    now: i64,
) -> GrantResult {
    // One transaction from the read to the commit (one connection acquired,
    // as for refresh); rolled back (dropped) on every refusal.
    let txn = match deps.db.begin().await {
        Ok(t) => t,
        Err(e) => return GrantResult::failed(e.into()),
    };
    let (row, resources, verifier) = match find(&txn, form).await {
        Ok(found) => found,
        Err(e) => return GrantResult::failed(e),
    };
    GrantResult {
        resource: resources.first().cloned(),
        user_id: Some(row.user_id.clone()),
        result: redeem(deps, txn, client, form, row, resources, verifier, jkt, ids, now).await,
    }
}

/// The code's row, its resources and the request's PKCE verifier.
async fn find<'f, C: sea_orm::ConnectionTrait>(
    conn: &C,
    form: &'f Form,
) -> Result<(CodeRow, Vec<String>, &'f str), Error> {
    let code = form.get("code").ok_or_else(|| Error::new(Kind::InvalidRequest, "code is required"))?;
    let verifier =
        form.get("code_verifier").ok_or_else(|| Error::new(Kind::InvalidPkce, "code_verifier is required (PKCE)"))?;
    let Some(row) = rows::get_code(conn, &sha256_hex(code.as_bytes())).await? else {
        return Err(Error::new(Kind::InvalidGrant, "unknown, expired or already used authorization code"));
    };
    let resources = json_column("authorization_codes.resources", &row.resources)?;
    Ok((row, resources, verifier))
}

#[allow(clippy::too_many_arguments)]
async fn redeem(
    deps: &Deps,
    txn: sea_orm::DatabaseTransaction,
    client: &ClientConfig,
    form: &Form,
    row: CodeRow,
    resources: Vec<String>,
    verifier: &str,
    jkt: Option<&str>,
    ids: &RequestIds,
    now: i64,
) -> Result<TokenResponse, Error> {
    let digest = row.code_sha256.clone();
    if row.client_id != client.client_id {
        return Err(Error::new(Kind::InvalidGrant, "authorization code was issued to another client"));
    }
    if row.consumed_at.is_some() {
        // revoke_family_for() writes through the pool: give the connection back first.
        drop(txn);
        revoke_family_for(deps, &row.family_id, &row.client_id, &row.user_id, "code_replay", ids, now).await?;
        return Err(Error::new(
            Kind::CodeReplay,
            "authorization code was already used; the tokens it issued are revoked",
        ));
    }
    if row.expires_at <= now {
        return Err(Error::new(Kind::InvalidGrant, "authorization code expired"));
    }
    // RFC 9449 §10: a code requested with dpop_jkt needs a proof by that key.
    // Checked before the code is spent, so the right client can still use it.
    if let Some(bound) = &row.dpop_jkt
        && jkt != Some(bound.as_str())
    {
        return Err(crate::oauth::dpop::key_mismatch("the authorization code (dpop_jkt)"));
    }
    if let Some(uri) = form.get("redirect_uri")
        && uri != row.redirect_uri
    {
        return Err(Error::new(Kind::RedirectUriChanged, "redirect_uri differs from the authorization request"));
    }
    if !pkce::verify_s256(verifier, &row.code_challenge) {
        return Err(Error::new(Kind::InvalidPkce, "code_verifier does not match the code_challenge"));
    }
    let aud = narrow_resources(&form.resource, &resources)?;

    let cfg = deps.config.load();
    let refresh_allowed = client.grant_types.contains(&GrantType::RefreshToken);
    if !rows::consume_code(&txn, &digest, now).await? {
        // Lost a race with a concurrent exchange of the same code.
        drop(txn);
        revoke_family_for(deps, &row.family_id, &row.client_id, &row.user_id, "code_replay", ids, now).await?;
        return Err(Error::new(
            Kind::CodeReplay,
            "authorization code was already used; the tokens it issued are revoked",
        ));
    }
    rows::insert_family(
        &txn,
        FamilyRow {
            id: row.family_id.clone(),
            client_id: row.client_id.clone(),
            user_id: row.user_id.clone(),
            resources: row.resources.clone(),
            scope: row.scope.clone(),
            created_at: now,
            expires_at: now + cfg.oauth.refresh_token_ttl.as_secs() as i64,
            revoked_at: None,
            // RFC 9449 §5: a public client's refresh tokens are bound to its
            // DPoP key (a confidential client authenticates instead).
            dpop_jkt: jkt.filter(|_| !client.token_endpoint_auth_method.is_confidential()).map(str::to_owned),
        },
    )
    .await?;
    let refresh_token = if refresh_allowed {
        let t = secret_token();
        rows::insert_refresh(&txn, sha256_hex(t.as_bytes()), row.family_id.clone(), now).await?;
        Some(t)
    } else {
        None
    };
    let detail = serde_json::json!({"grant_type": "authorization_code", "scope": row.scope, "aud": aud, "refresh_token": refresh_token.is_some(), "dpop_jkt": jkt});
    let who = Subject {
        sub: &row.user_id,
        client_id: &row.client_id,
        aud: &aud,
        scope: &row.scope,
        family: Some(&row.family_id),
        jkt,
    };
    finish(deps, Some(txn), who, "token_issued", detail, refresh_token, ids, now).await
}
