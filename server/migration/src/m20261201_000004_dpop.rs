//! DPoP (RFC 9449): the proof replay store, and the key bindings.
//!
//! `dpop_proofs` holds one row per accepted proof, keyed by a digest of the
//! proof's key thumbprint and `jti`: the primary key makes "first one wins"
//! atomic across replicas sharing the database (an `INSERT … ON CONFLICT DO
//! NOTHING` that affected no row is a replay). Rows are purged once the proof
//! could no longer pass the `iat` window (`expires_at`).
//!
//! `authorization_codes.dpop_jkt` (RFC 9449 §10) and `token_families.dpop_jkt`
//! (refresh tokens of public clients, §5) record the key a grant is bound to;
//! `resources.dpop_required` and `clients.dpop_bound_access_tokens` (§5.2)
//! make a proof mandatory.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DpopProofs {
    Table,
    Id,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    DpopJkt,
}

#[derive(DeriveIden)]
enum TokenFamilies {
    Table,
    DpopJkt,
}

#[derive(DeriveIden)]
enum Resources {
    Table,
    DpopRequired,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    DpopBoundAccessTokens,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DpopProofs::Table)
                    .if_not_exists()
                    .col(string(DpopProofs::Id).primary_key())
                    .col(big_integer(DpopProofs::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_dpop_proofs_expires")
                    .table(DpopProofs::Table)
                    .col(DpopProofs::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(AuthorizationCodes::Table)
                    .add_column(text_null(AuthorizationCodes::DpopJkt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(TokenFamilies::Table).add_column(text_null(TokenFamilies::DpopJkt)).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Resources::Table)
                    .add_column(boolean(Resources::DpopRequired).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(boolean(Clients::DpopBoundAccessTokens).default(false))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Clients::Table).drop_column(Clients::DpopBoundAccessTokens).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(Resources::Table).drop_column(Resources::DpopRequired).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(TokenFamilies::Table).drop_column(TokenFamilies::DpopJkt).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter().table(AuthorizationCodes::Table).drop_column(AuthorizationCodes::DpopJkt).to_owned(),
            )
            .await?;
        manager.drop_table(Table::drop().table(DpopProofs::Table).to_owned()).await?;
        Ok(())
    }
}
