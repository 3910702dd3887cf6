//! Schema migrations. Each migration names its own columns (`DeriveIden`
//! enums local to the file), so entity changes never rewrite history.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_initial;
mod m20261126_000002_oauth;
mod m20261201_000003_refresh_successor;
mod m20261201_000004_dpop;
mod m20261202_000005_upstream_logins;
mod m20261202_000006_token_broker;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_initial::Migration),
            Box::new(m20261126_000002_oauth::Migration),
            Box::new(m20261201_000003_refresh_successor::Migration),
            Box::new(m20261201_000004_dpop::Migration),
            Box::new(m20261202_000005_upstream_logins::Migration),
            Box::new(m20261202_000006_token_broker::Migration),
        ]
    }
}
