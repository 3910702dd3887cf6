//! Storage of OAuth state. Every secret is stored as its SHA-256 digest; the
//! functions take digests, never the secrets themselves.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::StoreError;
use super::entities::{
    access_token, auth_request, authorization_code, consent, refresh_token, session, token_family, upstream_login,
};

pub use access_token::Model as AccessTokenRow;
pub use auth_request::Model as AuthRequestRow;
pub use authorization_code::Model as CodeRow;
pub use token_family::Model as FamilyRow;
pub use upstream_login::Model as UpstreamLoginRow;

// ---- pending authorization requests ----

pub async fn insert_auth_request<C: ConnectionTrait>(db: &C, row: AuthRequestRow) -> Result<(), StoreError> {
    auth_request::Entity::insert(auth_request::ActiveModel {
        id: Set(row.id),
        browser_sha256: Set(row.browser_sha256),
        csrf: Set(row.csrf),
        client_id: Set(row.client_id),
        params: Set(row.params),
        user_id: Set(row.user_id),
        created_at: Set(row.created_at),
        expires_at: Set(row.expires_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn get_auth_request<C: ConnectionTrait>(
    db: &C,
    id: &str,
    now: i64,
) -> Result<Option<AuthRequestRow>, StoreError> {
    Ok(auth_request::Entity::find_by_id(id.to_owned()).one(db).await?.filter(|r| r.expires_at > now))
}

pub async fn delete_auth_request<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), StoreError> {
    auth_request::Entity::delete_by_id(id.to_owned()).exec(db).await?;
    Ok(())
}

// ---- redirects to an identity provider ----

pub async fn insert_upstream_login<C: ConnectionTrait>(db: &C, row: UpstreamLoginRow) -> Result<(), StoreError> {
    upstream_login::Entity::insert(upstream_login::ActiveModel {
        state_sha256: Set(row.state_sha256),
        upstream_id: Set(row.upstream_id),
        auth_request_id: Set(row.auth_request_id),
        browser_sha256: Set(row.browser_sha256),
        nonce: Set(row.nonce),
        code_verifier: Set(row.code_verifier),
        created_at: Set(row.created_at),
        expires_at: Set(row.expires_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The pending redirect with this `state` digest, deleted as it is read: a
/// second callback with the same `state` (a replay, or a race between two
/// replicas) finds nothing. Expired rows are deleted and not returned.
pub async fn take_upstream_login<C: ConnectionTrait>(
    db: &C,
    state_sha256: &str,
    now: i64,
) -> Result<Option<UpstreamLoginRow>, StoreError> {
    let Some(row) = upstream_login::Entity::find_by_id(state_sha256.to_owned()).one(db).await? else {
        return Ok(None);
    };
    let deleted = upstream_login::Entity::delete_by_id(state_sha256.to_owned()).exec(db).await?.rows_affected;
    Ok((deleted == 1 && row.expires_at > now).then_some(row))
}

// ---- browser sessions ----

pub async fn insert_session<C: ConnectionTrait>(
    db: &C,
    id_sha256: String,
    user_id: String,
    now: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    session::Entity::insert(session::ActiveModel {
        id_sha256: Set(id_sha256),
        user_id: Set(user_id),
        created_at: Set(now),
        expires_at: Set(expires_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The user of a live session.
pub async fn session_user<C: ConnectionTrait>(db: &C, id_sha256: &str, now: i64) -> Result<Option<String>, StoreError> {
    Ok(session::Entity::find_by_id(id_sha256.to_owned())
        .one(db)
        .await?
        .filter(|s| s.expires_at > now)
        .map(|s| s.user_id))
}

// ---- consents ----

pub async fn consented_scopes<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    client_id: &str,
    resource: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    let row =
        consent::Entity::find_by_id((user_id.to_owned(), client_id.to_owned(), resource.to_owned())).one(db).await?;
    row.map(|r| super::json_column("consents.scopes", &r.scopes)).transpose()
}

pub async fn save_consent<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    client_id: &str,
    resource: &str,
    scopes: &[String],
    now: i64,
) -> Result<(), StoreError> {
    consent::Entity::insert(consent::ActiveModel {
        user_id: Set(user_id.to_owned()),
        client_id: Set(client_id.to_owned()),
        resource: Set(resource.to_owned()),
        scopes: Set(serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into())),
        granted_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([consent::Column::UserId, consent::Column::ClientId, consent::Column::Resource])
            .update_columns([consent::Column::Scopes, consent::Column::GrantedAt])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

// ---- authorization codes ----

pub async fn insert_code<C: ConnectionTrait>(db: &C, row: CodeRow) -> Result<(), StoreError> {
    authorization_code::Entity::insert(authorization_code::ActiveModel {
        code_sha256: Set(row.code_sha256),
        client_id: Set(row.client_id),
        user_id: Set(row.user_id),
        redirect_uri: Set(row.redirect_uri),
        code_challenge: Set(row.code_challenge),
        resources: Set(row.resources),
        scope: Set(row.scope),
        offline_access: Set(row.offline_access),
        family_id: Set(row.family_id),
        created_at: Set(row.created_at),
        expires_at: Set(row.expires_at),
        consumed_at: Set(None),
        dpop_jkt: Set(row.dpop_jkt),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn get_code<C: ConnectionTrait>(db: &C, code_sha256: &str) -> Result<Option<CodeRow>, StoreError> {
    Ok(authorization_code::Entity::find_by_id(code_sha256.to_owned()).one(db).await?)
}

/// Marks the code used; false when it already was (the single-use check,
/// atomic in both databases).
pub async fn consume_code<C: ConnectionTrait>(db: &C, code_sha256: &str, now: i64) -> Result<bool, StoreError> {
    let r = authorization_code::Entity::update_many()
        .col_expr(authorization_code::Column::ConsumedAt, Expr::value(now))
        .filter(authorization_code::Column::CodeSha256.eq(code_sha256))
        .filter(authorization_code::Column::ConsumedAt.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

// ---- token families, refresh and access tokens ----

pub async fn insert_family<C: ConnectionTrait>(db: &C, row: FamilyRow) -> Result<(), StoreError> {
    token_family::Entity::insert(token_family::ActiveModel {
        id: Set(row.id),
        client_id: Set(row.client_id),
        user_id: Set(row.user_id),
        resources: Set(row.resources),
        scope: Set(row.scope),
        created_at: Set(row.created_at),
        expires_at: Set(row.expires_at),
        revoked_at: Set(None),
        dpop_jkt: Set(row.dpop_jkt),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn get_family<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<FamilyRow>, StoreError> {
    Ok(token_family::Entity::find_by_id(id.to_owned()).one(db).await?)
}

/// Revokes a family and every access token issued in it. Returns whether the
/// family was live before.
pub async fn revoke_family<C: ConnectionTrait>(db: &C, id: &str, now: i64) -> Result<bool, StoreError> {
    let r = token_family::Entity::update_many()
        .col_expr(token_family::Column::RevokedAt, Expr::value(now))
        .filter(token_family::Column::Id.eq(id))
        .filter(token_family::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    access_token::Entity::update_many()
        .col_expr(access_token::Column::RevokedAt, Expr::value(now))
        .filter(access_token::Column::FamilyId.eq(id))
        .filter(access_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

pub async fn insert_refresh<C: ConnectionTrait>(
    db: &C,
    token_sha256: String,
    family_id: String,
    now: i64,
) -> Result<(), StoreError> {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        token_sha256: Set(token_sha256),
        family_id: Set(family_id),
        created_at: Set(now),
        rotated_at: Set(None),
        successor: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn get_refresh<C: ConnectionTrait>(
    db: &C,
    token_sha256: &str,
) -> Result<Option<refresh_token::Model>, StoreError> {
    Ok(refresh_token::Entity::find_by_id(token_sha256.to_owned()).one(db).await?)
}

/// Marks a refresh token spent and keeps its sealed successor, as one
/// compare-and-swap (`rotated_at IS NULL`), so that of two replicas racing
/// on one token exactly one wins; false when it was already spent.
pub async fn rotate_refresh<C: ConnectionTrait>(
    db: &C,
    token_sha256: &str,
    sealed_successor: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let r = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RotatedAt, Expr::value(now))
        .col_expr(refresh_token::Column::Successor, Expr::value(sealed_successor))
        .filter(refresh_token::Column::TokenSha256.eq(token_sha256))
        .filter(refresh_token::Column::RotatedAt.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

pub async fn insert_access<C: ConnectionTrait>(
    db: &C,
    jti: String,
    family_id: Option<String>,
    client_id: String,
    expires_at: i64,
) -> Result<(), StoreError> {
    access_token::Entity::insert(access_token::ActiveModel {
        jti: Set(jti),
        family_id: Set(family_id),
        client_id: Set(client_id),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Records an access token as revoked (RFC 7009); works for tokens that were
/// never recorded (client credentials) too.
pub async fn revoke_access<C: ConnectionTrait>(
    db: &C,
    jti: &str,
    client_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    access_token::Entity::insert(access_token::ActiveModel {
        jti: Set(jti.to_owned()),
        family_id: Set(None),
        client_id: Set(client_id.to_owned()),
        expires_at: Set(expires_at),
        revoked_at: Set(Some(now)),
    })
    .on_conflict(
        OnConflict::column(access_token::Column::Jti).update_column(access_token::Column::RevokedAt).to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn get_access<C: ConnectionTrait>(db: &C, jti: &str) -> Result<Option<AccessTokenRow>, StoreError> {
    Ok(access_token::Entity::find_by_id(jti.to_owned()).one(db).await?)
}

/// Deletes OAuth state that can no longer be used: expired sign-in requests
/// and sessions, codes and access-token records past their expiry (kept a
/// day for replay detection and introspection), and token families past
/// their expiry with their refresh tokens.
pub async fn purge_expired<C: ConnectionTrait>(db: &C, now: i64) -> Result<u64, StoreError> {
    let day = 86_400;
    let mut n = 0;
    n += auth_request::Entity::delete_many()
        .filter(auth_request::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?
        .rows_affected;
    n += session::Entity::delete_many().filter(session::Column::ExpiresAt.lt(now)).exec(db).await?.rows_affected;
    n += upstream_login::Entity::delete_many()
        .filter(upstream_login::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?
        .rows_affected;
    n += super::dpop::purge(db, now).await?;
    n += authorization_code::Entity::delete_many()
        .filter(authorization_code::Column::ExpiresAt.lt(now - day))
        .exec(db)
        .await?
        .rows_affected;
    n += access_token::Entity::delete_many()
        .filter(access_token::Column::ExpiresAt.lt(now - day))
        .exec(db)
        .await?
        .rows_affected;
    let dead: Vec<String> = token_family::Entity::find()
        .filter(token_family::Column::ExpiresAt.lt(now - day))
        .all(db)
        .await?
        .into_iter()
        .map(|f| f.id)
        .collect();
    for chunk in dead.chunks(500) {
        n += refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::FamilyId.is_in(chunk.to_vec()))
            .exec(db)
            .await?
            .rows_affected;
        n += token_family::Entity::delete_many()
            .filter(token_family::Column::Id.is_in(chunk.to_vec()))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(n)
}
