//! The members of a page of sites in one index range per site, already in the order they
//! joined, with every column a membership is read with: the rows come from the index alone,
//! with no sort and no visit to the table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const NAME: &str = "site_members_by_site";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(SiteMembers::Table)
                    .col(SiteMembers::SiteId)
                    .col(SiteMembers::JoinedAt)
                    .col(SiteMembers::UserId)
                    .col(SiteMembers::Role)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(NAME).table(SiteMembers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SiteMembers {
    Table,
    SiteId,
    UserId,
    Role,
    JoinedAt,
}
