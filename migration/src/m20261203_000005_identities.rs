//! Social login (API.md §8): identities at OpenID Connect providers linked to users, the
//! sign-in attempts under way (keyed by the hash of their `state`), and the single-use login
//! codes a callback hands to bearer clients (kept as hashes).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Identities::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Identities::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Identities::Provider).string().not_null())
                    .col(ColumnDef::new(Identities::Subject).string().not_null())
                    .col(ColumnDef::new(Identities::UserId).uuid().not_null())
                    .col(ColumnDef::new(Identities::Email).string())
                    .col(
                        ColumnDef::new(Identities::LinkedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Identities::Table, Identities::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("identities_provider_subject")
                    .table(Identities::Table)
                    .col(Identities::Provider)
                    .col(Identities::Subject)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // One identity per provider and user: `unlinkIdentity` names only the provider.
        manager
            .create_index(
                Index::create()
                    .name("identities_user_id_provider")
                    .table(Identities::Table)
                    .col(Identities::UserId)
                    .col(Identities::Provider)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OidcFlows::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(OidcFlows::StateHash).binary().not_null().primary_key())
                    .col(ColumnDef::new(OidcFlows::Provider).string().not_null())
                    .col(ColumnDef::new(OidcFlows::SealedVerifier).binary().not_null())
                    .col(ColumnDef::new(OidcFlows::Nonce).string().not_null())
                    .col(ColumnDef::new(OidcFlows::ReturnTo).text().not_null())
                    .col(ColumnDef::new(OidcFlows::LinkUserId).uuid())
                    .col(
                        ColumnDef::new(OidcFlows::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OidcFlows::Table, OidcFlows::LinkUserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginCodes::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(LoginCodes::CodeHash).binary().not_null().primary_key())
                    .col(ColumnDef::new(LoginCodes::UserId).uuid().not_null())
                    .col(ColumnDef::new(LoginCodes::Provider).string().not_null())
                    .col(
                        ColumnDef::new(LoginCodes::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(LoginCodes::Table, LoginCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LoginCodes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(OidcFlows::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Identities::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Identities {
    Table,
    Id,
    Provider,
    Subject,
    UserId,
    Email,
    LinkedAt,
}

#[derive(DeriveIden)]
enum OidcFlows {
    Table,
    StateHash,
    Provider,
    SealedVerifier,
    Nonce,
    ReturnTo,
    LinkUserId,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum LoginCodes {
    Table,
    CodeHash,
    UserId,
    Provider,
    ExpiresAt,
}
