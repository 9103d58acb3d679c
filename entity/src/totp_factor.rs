//! A user's TOTP authenticator (RFC 6238). Secrets are sealed (`auth::seal`): a copy of the
//! database alone does not give them away. `confirmed_at` is set once a code proved the user
//! holds the secret; until then TOTP is not on. `pending_secret` is an enrolment started and
//! not yet confirmed, which replaces `sealed_secret` when it is.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "totp_factors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    pub sealed_secret: Vec<u8>,
    pub created_at: DateTimeUtc,
    pub confirmed_at: Option<DateTimeUtc>,
    pub pending_secret: Option<Vec<u8>>,
    /// The 30-second step of the last code accepted: a code is accepted once.
    pub last_used_step: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
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
