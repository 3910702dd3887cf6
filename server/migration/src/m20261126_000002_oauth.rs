//! OAuth state: pending authorization requests, login sessions, consents,
//! authorization codes, refresh-token families and issued access tokens, plus
//! the client columns dynamic registration needs. Secrets (codes, refresh
//! tokens, session ids) are stored only as SHA-256 digests.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    ApplicationType,
    Metadata,
}

#[derive(DeriveIden)]
enum AuthRequests {
    Table,
    Id,
    BrowserSha256,
    Csrf,
    ClientId,
    Params,
    UserId,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    IdSha256,
    UserId,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    UserId,
    ClientId,
    Resource,
    Scopes,
    GrantedAt,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    CodeSha256,
    ClientId,
    UserId,
    RedirectUri,
    CodeChallenge,
    Resources,
    Scope,
    OfflineAccess,
    FamilyId,
    CreatedAt,
    ExpiresAt,
    ConsumedAt,
}

#[derive(DeriveIden)]
enum TokenFamilies {
    Table,
    Id,
    ClientId,
    UserId,
    Resources,
    Scope,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenSha256,
    FamilyId,
    CreatedAt,
    RotatedAt,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    Jti,
    FamilyId,
    ClientId,
    ExpiresAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(string(Clients::ApplicationType).default("web"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Clients::Table).add_column(text(Clients::Metadata).default("{}")).to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthRequests::Table)
                    .if_not_exists()
                    .col(string(AuthRequests::Id).primary_key())
                    .col(string(AuthRequests::BrowserSha256))
                    .col(string(AuthRequests::Csrf))
                    .col(string(AuthRequests::ClientId))
                    .col(text(AuthRequests::Params))
                    .col(string_null(AuthRequests::UserId))
                    .col(big_integer(AuthRequests::CreatedAt))
                    .col(big_integer(AuthRequests::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(string(Sessions::IdSha256).primary_key())
                    .col(string(Sessions::UserId))
                    .col(big_integer(Sessions::CreatedAt))
                    .col(big_integer(Sessions::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Consents::Table)
                    .if_not_exists()
                    .col(string(Consents::UserId))
                    .col(string(Consents::ClientId))
                    .col(string(Consents::Resource))
                    .col(text(Consents::Scopes))
                    .col(big_integer(Consents::GrantedAt))
                    .primary_key(Index::create().col(Consents::UserId).col(Consents::ClientId).col(Consents::Resource))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthorizationCodes::Table)
                    .if_not_exists()
                    .col(string(AuthorizationCodes::CodeSha256).primary_key())
                    .col(string(AuthorizationCodes::ClientId))
                    .col(string(AuthorizationCodes::UserId))
                    .col(text(AuthorizationCodes::RedirectUri))
                    .col(string(AuthorizationCodes::CodeChallenge))
                    .col(text(AuthorizationCodes::Resources))
                    .col(text(AuthorizationCodes::Scope))
                    .col(boolean(AuthorizationCodes::OfflineAccess))
                    .col(string(AuthorizationCodes::FamilyId))
                    .col(big_integer(AuthorizationCodes::CreatedAt))
                    .col(big_integer(AuthorizationCodes::ExpiresAt))
                    .col(big_integer_null(AuthorizationCodes::ConsumedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TokenFamilies::Table)
                    .if_not_exists()
                    .col(string(TokenFamilies::Id).primary_key())
                    .col(string(TokenFamilies::ClientId))
                    .col(string(TokenFamilies::UserId))
                    .col(text(TokenFamilies::Resources))
                    .col(text(TokenFamilies::Scope))
                    .col(big_integer(TokenFamilies::CreatedAt))
                    .col(big_integer(TokenFamilies::ExpiresAt))
                    .col(big_integer_null(TokenFamilies::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .if_not_exists()
                    .col(string(RefreshTokens::TokenSha256).primary_key())
                    .col(string(RefreshTokens::FamilyId))
                    .col(big_integer(RefreshTokens::CreatedAt))
                    .col(big_integer_null(RefreshTokens::RotatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AccessTokens::Table)
                    .if_not_exists()
                    .col(string(AccessTokens::Jti).primary_key())
                    .col(string_null(AccessTokens::FamilyId))
                    .col(string(AccessTokens::ClientId))
                    .col(big_integer(AccessTokens::ExpiresAt))
                    .col(big_integer_null(AccessTokens::RevokedAt))
                    .to_owned(),
            )
            .await?;
        for (name, table, col) in [
            ("idx_refresh_family", RefreshTokens::Table.into_iden(), RefreshTokens::FamilyId.into_iden()),
            ("idx_access_family", AccessTokens::Table.into_iden(), AccessTokens::FamilyId.into_iden()),
            ("idx_codes_family", AuthorizationCodes::Table.into_iden(), AuthorizationCodes::FamilyId.into_iden()),
        ] {
            manager.create_index(Index::create().name(name).table(table).col(col).if_not_exists().to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            AccessTokens::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            TokenFamilies::Table.into_iden(),
            AuthorizationCodes::Table.into_iden(),
            Consents::Table.into_iden(),
            Sessions::Table.into_iden(),
            AuthRequests::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        manager.alter_table(Table::alter().table(Clients::Table).drop_column(Clients::Metadata).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(Clients::Table).drop_column(Clients::ApplicationType).to_owned())
            .await?;
        Ok(())
    }
}
