//! Renewal and re-authentication (API.md §8): when a session last proved its password, and
//! the head of its refresh-token chain. Only the hash of the current refresh secret is kept,
//! with its position in the chain, so a spent token can be recognised without being stored.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        let columns = [
            ColumnDef::new(Sessions::AuthenticatedAt)
                .timestamp_with_time_zone()
                .to_owned(),
            ColumnDef::new(Sessions::RefreshHash).binary().to_owned(),
            ColumnDef::new(Sessions::RefreshGeneration)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(Sessions::RefreshedAt)
                .timestamp_with_time_zone()
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(Table::alter().table(Sessions::Table).add_column(&mut column).to_owned())
                .await?;
        }
        // The sweep of idle sessions.
        manager
            .create_index(
                Index::create()
                    .name("sessions_last_seen_at")
                    .table(Sessions::Table)
                    .col(Sessions::LastSeenAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("sessions_last_seen_at")
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Sessions::RefreshedAt,
            Sessions::RefreshGeneration,
            Sessions::RefreshHash,
            Sessions::AuthenticatedAt,
        ] {
            manager
                .alter_table(Table::alter().table(Sessions::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    LastSeenAt,
    AuthenticatedAt,
    RefreshHash,
    RefreshGeneration,
    RefreshedAt,
}
