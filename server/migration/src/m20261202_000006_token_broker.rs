//! The token broker: one row per (user, upstream) holding the provider's
//! tokens encrypted (AES-256-GCM, `key_id` names the key, the row's user and
//! upstream are the associated data), the grant's status (`active`,
//! `revoked`), the last refresh outcome, and `refreshing_until`, the lease
//! that makes a refresh single-flight across replicas. And
//! `clients.broker_upstreams`: the upstreams a client may broker.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UpstreamGrants {
    Table,
    UserId,
    UpstreamId,
    Status,
    KeyId,
    AccessTokenEnc,
    RefreshTokenEnc,
    ExpiresAt,
    Scope,
    RefreshingUntil,
    LastRefreshOutcome,
    LastRefreshAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    BrokerUpstreams,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UpstreamGrants::Table)
                    .if_not_exists()
                    .col(string(UpstreamGrants::UserId))
                    .col(string(UpstreamGrants::UpstreamId))
                    .col(string(UpstreamGrants::Status))
                    .col(string(UpstreamGrants::KeyId))
                    .col(text(UpstreamGrants::AccessTokenEnc))
                    .col(text_null(UpstreamGrants::RefreshTokenEnc))
                    .col(big_integer_null(UpstreamGrants::ExpiresAt))
                    .col(text_null(UpstreamGrants::Scope))
                    .col(big_integer_null(UpstreamGrants::RefreshingUntil))
                    .col(string_null(UpstreamGrants::LastRefreshOutcome))
                    .col(big_integer_null(UpstreamGrants::LastRefreshAt))
                    .col(big_integer(UpstreamGrants::CreatedAt))
                    .col(big_integer(UpstreamGrants::UpdatedAt))
                    .primary_key(Index::create().col(UpstreamGrants::UserId).col(UpstreamGrants::UpstreamId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(text(Clients::BrokerUpstreams).default("[]"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Clients::Table).drop_column(Clients::BrokerUpstreams).to_owned())
            .await?;
        manager.drop_table(Table::drop().table(UpstreamGrants::Table).to_owned()).await?;
        Ok(())
    }
}
