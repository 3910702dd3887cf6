//! `grant_type=refresh_token` (RFC 6749 §6, OAuth 2.1 §4.3.1): rotation on
//! every use; a spent token presented again revokes the whole family
//! (RFC 9700 §4.14.2). The family keeps its absolute expiry.

use authplane_core::config::ClientConfig;
use sea_orm::TransactionTrait;

use super::{
    GrantResult, RequestIds, Subject, TokenResponse, finish, narrow_resources, narrow_scope, revoke_family_for,
};
use crate::oauth::Deps;
use crate::oauth::error::{Error, Kind};
use crate::oauth::form::Form;
use crate::random::{secret_token, sha256_hex};
use crate::store::entities::refresh_token::Model as RefreshRow;
use crate::store::json_column;
use crate::store::oauth::{self as rows, FamilyRow};

pub async fn exchange(
    deps: &Deps,
    client: &ClientConfig,
    form: &Form,
    jkt: Option<&str>,
    ids: &RequestIds,
    now: i64,
) -> GrantResult {
    // One transaction from the first read to the commit: one connection
    // acquired per refresh instead of one per statement group (each acquire
    // and release is a round trip to SQLite's worker thread or to Postgres).
    // It is rolled back (dropped) on every refusal.
    let txn = match deps.db.begin().await {
        Ok(t) => t,
        Err(e) => return GrantResult::failed(e.into()),
    };
    let (token, row, family, granted_resources) = match find(&txn, form).await {
        Ok(found) => found,
        Err(e) => return GrantResult::failed(e),
    };
    GrantResult {
        resource: granted_resources.first().cloned(),
        user_id: Some(family.user_id.clone()),
        result: rotate(deps, txn, client, form, token, row, &family, granted_resources, jkt, ids, now).await,
    }
}

fn invalid() -> Error {
    Error::new(Kind::InvalidGrant, "unknown, expired or revoked refresh token")
}

/// The presented token, its row, its family and the family's resources.
async fn find<'f, C: sea_orm::ConnectionTrait>(
    conn: &C,
    form: &'f Form,
) -> Result<(&'f str, RefreshRow, FamilyRow, Vec<String>), Error> {
    let token =
        form.get("refresh_token").ok_or_else(|| Error::new(Kind::InvalidRequest, "refresh_token is required"))?;
    let row = rows::get_refresh(conn, &sha256_hex(token.as_bytes())).await?.ok_or_else(invalid)?;
    let family = rows::get_family(conn, &row.family_id).await?.ok_or_else(invalid)?;
    let granted_resources = json_column("token_families.resources", &family.resources)?;
    Ok((token, row, family, granted_resources))
}

#[allow(clippy::too_many_arguments)]
async fn rotate(
    deps: &Deps,
    txn: sea_orm::DatabaseTransaction,
    client: &ClientConfig,
    form: &Form,
    token: &str,
    row: RefreshRow,
    family: &FamilyRow,
    granted_resources: Vec<String>,
    jkt: Option<&str>,
    ids: &RequestIds,
    now: i64,
) -> Result<TokenResponse, Error> {
    let digest = row.token_sha256.clone();
    if family.client_id != client.client_id {
        return Err(Error::new(Kind::InvalidGrant, "refresh token was issued to another client"));
    }
    if family.revoked_at.is_some() {
        return Err(invalid());
    }
    // RFC 9449 §5: a bound refresh token is useless without its key. Checked
    // before reuse detection, so someone holding only a stolen (spent) token
    // cannot get the victim's family revoked either.
    if let Some(bound) = &family.dpop_jkt
        && jkt != Some(bound.as_str())
    {
        return Err(crate::oauth::dpop::key_mismatch("the refresh token"));
    }
    if let Some(rotated_at) = row.rotated_at {
        // reused() writes through the pool: give the connection back first.
        drop(txn);
        return reused(deps, family, row.successor.as_deref(), token, rotated_at, form, jkt, ids, now).await;
    }
    if family.expires_at <= now {
        return Err(invalid());
    }
    let scope = narrow_scope(form.get("scope"), &family.scope)?;
    let aud = narrow_resources(&form.resource, &granted_resources)?;

    let next = secret_token();
    if !rows::rotate_refresh(&txn, &digest, &seal(token, &next), now).await? {
        // Another request (or replica) rotated it first: read what it kept.
        drop(txn);
        let row = rows::get_refresh(&deps.db, &digest).await?.ok_or_else(invalid)?;
        let rotated_at = row.rotated_at.unwrap_or(now);
        return reused(deps, family, row.successor.as_deref(), token, rotated_at, form, jkt, ids, now).await;
    }
    rows::insert_refresh(&txn, sha256_hex(next.as_bytes()), family.id.clone(), now).await?;
    complete(deps, txn, family, aud, scope, next, jkt, ids, now, false).await
}

/// A spent refresh token presented again. Within `oauth.refresh_reuse_interval`
/// of its rotation, and while its successor is unspent, the answer is that
/// same successor with a new access token: MCP clients run several sessions
/// on one stored token and race on refresh. Otherwise it is reuse (RFC 9700
/// §4.14.2): the family is revoked.
#[allow(clippy::too_many_arguments)]
async fn reused(
    deps: &Deps,
    family: &FamilyRow,
    sealed: Option<&str>,
    token: &str,
    rotated_at: i64,
    form: &Form,
    jkt: Option<&str>,
    ids: &RequestIds,
    now: i64,
) -> Result<TokenResponse, Error> {
    let interval = deps.config.load().oauth.refresh_reuse_interval.as_secs() as i64;
    let successor = if interval > 0 && now - rotated_at <= interval && family.expires_at > now {
        match sealed.and_then(|s| open(token, s)) {
            Some(next) => match rows::get_refresh(&deps.db, &sha256_hex(next.as_bytes())).await? {
                Some(r) if r.rotated_at.is_none() => Some(next),
                _ => None,
            },
            None => None,
        }
    } else {
        None
    };
    let Some(next) = successor else {
        revoke_family_for(deps, &family.id, &family.client_id, &family.user_id, "refresh_reuse", ids, now).await?;
        return Err(Error::new(
            Kind::RefreshReuse,
            "refresh token was already used; every token of this grant is revoked",
        ));
    };
    let granted_resources: Vec<String> = json_column("token_families.resources", &family.resources)?;
    let scope = narrow_scope(form.get("scope"), &family.scope)?;
    let aud = narrow_resources(&form.resource, &granted_resources)?;
    tracing::info!(client_id = %family.client_id, "spent refresh token presented within oauth.refresh_reuse_interval; same successor returned");
    let txn = deps.db.begin().await?;
    complete(deps, txn, family, aud, scope, next, jkt, ids, now, true).await
}

/// The grant's tail, in `txn`: the access token that goes with refresh token
/// `next`, the `token_refreshed` audit row, the commit.
#[allow(clippy::too_many_arguments)]
async fn complete(
    deps: &Deps,
    txn: sea_orm::DatabaseTransaction,
    family: &FamilyRow,
    aud: Vec<String>,
    scope: String,
    next: String,
    jkt: Option<&str>,
    ids: &RequestIds,
    now: i64,
    within_reuse_interval: bool,
) -> Result<TokenResponse, Error> {
    let mut detail = serde_json::json!({"grant_type": "refresh_token", "scope": scope, "aud": aud, "dpop_jkt": jkt});
    if within_reuse_interval {
        detail["within_reuse_interval"] = serde_json::Value::Bool(true);
    }
    let who = Subject {
        sub: &family.user_id,
        client_id: &family.client_id,
        aud: &aud,
        scope: &scope,
        family: Some(&family.id),
        jkt,
    };
    finish(deps, Some(txn), who, "token_refreshed", detail, Some(next), ids, now).await
}

/// The AES-256-GCM key that seals a token's successor: derived from the
/// token itself (256 random bits), which is stored only as a digest, so the
/// database alone cannot open it.
fn successor_key(token: &str) -> Option<aws_lc_rs::aead::LessSafeKey> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"authplane/refresh-successor/v1\0");
    ctx.update(token.as_bytes());
    let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, ctx.finish().as_ref()).ok()?;
    Some(aws_lc_rs::aead::LessSafeKey::new(key))
}

fn seal(token: &str, successor: &str) -> String {
    use base64::Engine;
    let nonce = crate::random::bytes::<12>();
    let mut buf = successor.as_bytes().to_vec();
    let sealed = successor_key(token).and_then(|k| {
        k.seal_in_place_append_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
            aws_lc_rs::aead::Aad::empty(),
            &mut buf,
        )
        .ok()
    });
    if sealed.is_none() {
        // Nothing sealed: a reuse then revokes, as without the interval.
        return String::new();
    }
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
}

fn open(token: &str, sealed: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if raw.len() < 12 + 16 {
        return None;
    }
    let (nonce, rest) = raw.split_at(12);
    let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = rest.to_vec();
    let plain = successor_key(token)?.open_in_place(nonce, aws_lc_rs::aead::Aad::empty(), &mut buf).ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_opens_only_with_the_token_it_was_sealed_under() {
        let t = secret_token();
        let next = secret_token();
        let sealed = seal(&t, &next);
        assert!(!sealed.contains(&next));
        assert_eq!(open(&t, &sealed).as_deref(), Some(next.as_str()));
        assert_eq!(open(&secret_token(), &sealed), None, "another token cannot open it");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(open(&t, &String::from_utf8(tampered).unwrap()), None, "tampering is detected");
        assert_eq!(open(&t, ""), None);
        assert_ne!(seal(&t, &next), sealed, "a fresh nonce each time");
    }
}
