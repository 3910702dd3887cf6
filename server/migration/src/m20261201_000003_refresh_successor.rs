//! Refresh rotation with a reuse interval (`oauth.refresh_reuse_interval`):
//! a rotated refresh token keeps its successor, encrypted under a key derived
//! from the rotated token itself, so that presenting it again within the
//! interval returns the same successor. The database alone cannot read it.
//! Also an index for finding a client's token families (unused-client purge).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Successor,
}

#[derive(DeriveIden)]
enum TokenFamilies {
    Table,
    ClientId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(RefreshTokens::Table).add_column(text_null(RefreshTokens::Successor)).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_families_client")
                    .table(TokenFamilies::Table)
                    .col(TokenFamilies::ClientId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("idx_families_client").table(TokenFamilies::Table).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(RefreshTokens::Table).drop_column(RefreshTokens::Successor).to_owned())
            .await?;
        Ok(())
    }
}
