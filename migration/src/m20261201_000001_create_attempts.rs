//! Attempts counted by the rate limits (API.md §7 `RATE_LIMITED`): failed logins, signups and
//! password-reset calls, one row each. Kept in the database so every instance sharing it
//! counts the same attempts.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Attempts::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Attempts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Attempts::Kind).string().not_null())
                    .col(ColumnDef::new(Attempts::UsernameKey).string())
                    .col(ColumnDef::new(Attempts::Ip).string())
                    .col(ColumnDef::new(Attempts::At).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        // The two counting queries (per username, per address) and the sweep of old rows.
        let indexes = [
            (
                "attempts_kind_username_at",
                vec![Attempts::Kind, Attempts::UsernameKey, Attempts::At],
            ),
            ("attempts_kind_ip_at", vec![Attempts::Kind, Attempts::Ip, Attempts::At]),
            ("attempts_at", vec![Attempts::At]),
        ];
        for (name, columns) in indexes {
            let mut index = Index::create();
            index.name(name).table(Attempts::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Attempts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Attempts {
    Table,
    Id,
    Kind,
    UsernameKey,
    Ip,
    At,
}
