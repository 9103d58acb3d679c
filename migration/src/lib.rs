//! Schema migrations of gatehouse, applied by `gatehouse serve` and `gatehouse migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261130_000001_create_core_tables;
mod m20261130_000002_create_audit_and_resets;
mod m20261130_000003_create_sites;
mod m20261201_000001_create_attempts;
mod m20261203_000001_session_renewal;
mod m20261203_000002_second_factors;
mod m20261203_000003_passkeys;
mod m20261203_000004_email_verification;
mod m20261203_000005_identities;
mod m20261206_000001_site_members_by_site;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261130_000001_create_core_tables::Migration),
            Box::new(m20261130_000002_create_audit_and_resets::Migration),
            Box::new(m20261130_000003_create_sites::Migration),
            Box::new(m20261201_000001_create_attempts::Migration),
            Box::new(m20261203_000001_session_renewal::Migration),
            Box::new(m20261203_000002_second_factors::Migration),
            Box::new(m20261203_000003_passkeys::Migration),
            Box::new(m20261203_000004_email_verification::Migration),
            Box::new(m20261203_000005_identities::Migration),
            Box::new(m20261206_000001_site_members_by_site::Migration),
        ]
    }
}
