//! Clients, resources, users, signing keys, audit events and the health probe.
//! Timestamps are Unix seconds (`*_at`), audit time is Unix milliseconds.
//! JSON lists are stored as text so SQLite and Postgres share one schema.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Resources {
    Table,
    Resource,
    Name,
    Scopes,
    DefaultScopes,
    Source,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    ClientName,
    TokenEndpointAuthMethod,
    ClientSecretSha256,
    RedirectUris,
    GrantTypes,
    AllowedResources,
    AllowedScopes,
    Source,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    Email,
    Name,
    Source,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Alg,
    CreatedAt,
    ActiveFrom,
    PrivateKeyPem,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAtMs,
    EventType,
    Outcome,
    UserId,
    ClientId,
    Resource,
    RequestId,
    TraceId,
    Detail,
}

#[derive(DeriveIden)]
enum HealthProbe {
    Table,
    Id,
    CheckedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Resources::Table)
                    .if_not_exists()
                    .col(string(Resources::Resource).primary_key())
                    .col(string_null(Resources::Name))
                    .col(text(Resources::Scopes))
                    .col(text_null(Resources::DefaultScopes))
                    .col(string(Resources::Source))
                    .col(big_integer(Resources::CreatedAt))
                    .col(big_integer(Resources::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Clients::Table)
                    .if_not_exists()
                    .col(string(Clients::ClientId).primary_key())
                    .col(string_null(Clients::ClientName))
                    .col(string(Clients::TokenEndpointAuthMethod))
                    .col(string_null(Clients::ClientSecretSha256))
                    .col(text(Clients::RedirectUris))
                    .col(text(Clients::GrantTypes))
                    .col(text(Clients::AllowedResources))
                    .col(text(Clients::AllowedScopes))
                    .col(string(Clients::Source))
                    .col(big_integer(Clients::CreatedAt))
                    .col(big_integer(Clients::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(string(Users::Id).primary_key())
                    .col(string_uniq(Users::Username))
                    .col(string(Users::PasswordHash))
                    .col(string_null(Users::Email))
                    .col(string_null(Users::Name))
                    .col(string(Users::Source))
                    .col(big_integer(Users::CreatedAt))
                    .col(big_integer(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .if_not_exists()
                    .col(string(SigningKeys::Kid).primary_key())
                    .col(string(SigningKeys::Alg))
                    .col(big_integer(SigningKeys::CreatedAt))
                    .col(big_integer(SigningKeys::ActiveFrom))
                    .col(text(SigningKeys::PrivateKeyPem))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(big_integer(AuditEvents::Id).primary_key().auto_increment())
                    .col(big_integer(AuditEvents::OccurredAtMs))
                    .col(string(AuditEvents::EventType))
                    .col(string(AuditEvents::Outcome))
                    .col(string_null(AuditEvents::UserId))
                    .col(string_null(AuditEvents::ClientId))
                    .col(string_null(AuditEvents::Resource))
                    .col(string_null(AuditEvents::RequestId))
                    .col(string_null(AuditEvents::TraceId))
                    .col(text(AuditEvents::Detail))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [("idx_audit_user", AuditEvents::UserId), ("idx_audit_client", AuditEvents::ClientId)] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(col)
                        .col(AuditEvents::OccurredAtMs)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_time")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OccurredAtMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HealthProbe::Table)
                    .if_not_exists()
                    .col(integer(HealthProbe::Id).primary_key())
                    .col(big_integer(HealthProbe::CheckedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Table::drop().table(HealthProbe::Table).if_exists().to_owned(),
            Table::drop().table(AuditEvents::Table).if_exists().to_owned(),
            Table::drop().table(SigningKeys::Table).if_exists().to_owned(),
            Table::drop().table(Users::Table).if_exists().to_owned(),
            Table::drop().table(Clients::Table).if_exists().to_owned(),
            Table::drop().table(Resources::Table).if_exists().to_owned(),
        ] {
            manager.drop_table(t).await?;
        }
        Ok(())
    }
}
