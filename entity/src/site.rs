//! A site (tenant, workspace) with its invitation code.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sites")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    #[sea_orm(unique)]
    pub code: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::site_member::Entity")]
    SiteMember,
}

impl Related<super::site_member::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SiteMember.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
