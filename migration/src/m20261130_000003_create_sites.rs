//! Sites and their members.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sites::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Sites::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Sites::Name).string().not_null())
                    .col(ColumnDef::new(Sites::Description).string())
                    .col(ColumnDef::new(Sites::Code).string().not_null())
                    .col(ColumnDef::new(Sites::CreatedBy).uuid())
                    .col(ColumnDef::new(Sites::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Sites::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sites::Table, Sites::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // Invitation codes are looked up by index, and unique.
        manager
            .create_index(
                Index::create()
                    .name("sites_code_unique")
                    .table(Sites::Table)
                    .col(Sites::Code)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sites_created_at")
                    .table(Sites::Table)
                    .col(Sites::CreatedAt)
                    .col(Sites::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SiteMembers::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SiteMembers::SiteId).uuid().not_null())
                    .col(ColumnDef::new(SiteMembers::UserId).uuid().not_null())
                    .col(ColumnDef::new(SiteMembers::Role).string().not_null())
                    .col(
                        ColumnDef::new(SiteMembers::JoinedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(SiteMembers::SiteId).col(SiteMembers::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SiteMembers::Table, SiteMembers::SiteId)
                            .to(Sites::Table, Sites::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SiteMembers::Table, SiteMembers::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("site_members_user_id")
                    .table(SiteMembers::Table)
                    .col(SiteMembers::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SiteMembers::Table).to_owned())
            .await?;
        manager.drop_table(Table::drop().table(Sites::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Sites {
    Table,
    Id,
    Name,
    Description,
    Code,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SiteMembers {
    Table,
    SiteId,
    UserId,
    Role,
    JoinedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
