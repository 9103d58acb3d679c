//! A social sign-in under way: the SHA-256 of its `state`, the sealed PKCE verifier and the
//! nonce the ID token must carry, where to return, and the user to link to when linking.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oidc_flows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub state_hash: Vec<u8>,
    pub provider: String,
    pub sealed_verifier: Vec<u8>,
    pub nonce: String,
    pub return_to: String,
    pub link_user_id: Option<Uuid>,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::LinkUserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
