//! Sign-in through an identity provider (`/ui/upstream/<id>/…`): one row per
//! redirect to the provider, keyed by the SHA-256 of its `state`, holding
//! what the callback must check (the provider, the browser, the `nonce`)
//! and the PKCE verifier it must send. Deleted when the callback uses it
//! (single use) or when it expires.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UpstreamLogins {
    Table,
    StateSha256,
    UpstreamId,
    AuthRequestId,
    BrowserSha256,
    Nonce,
    CodeVerifier,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UpstreamLogins::Table)
                    .if_not_exists()
                    .col(string(UpstreamLogins::StateSha256).primary_key())
                    .col(string(UpstreamLogins::UpstreamId))
                    .col(string(UpstreamLogins::AuthRequestId))
                    .col(string(UpstreamLogins::BrowserSha256))
                    .col(string(UpstreamLogins::Nonce))
                    .col(string(UpstreamLogins::CodeVerifier))
                    .col(big_integer(UpstreamLogins::CreatedAt))
                    .col(big_integer(UpstreamLogins::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_upstream_logins_expires")
                    .table(UpstreamLogins::Table)
                    .col(UpstreamLogins::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UpstreamLogins::Table).to_owned()).await?;
        Ok(())
    }
}
