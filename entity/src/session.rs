//! A login session. The token is never stored: only the SHA-256 of the secret it carries,
//! so a copy of this table cannot be turned back into working tokens; the same holds for
//! refresh tokens.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub secret_hash: Vec<u8>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub last_seen_at: Option<DateTimeUtc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// When the session last proved a password or a factor; `None` for sessions opened
    /// before this was recorded, which count from `created_at`.
    pub authenticated_at: Option<DateTimeUtc>,
    /// SHA-256 of the current refresh secret; `None` when tokens are not short-lived.
    pub refresh_hash: Option<Vec<u8>>,
    /// How many times the refresh token has been rotated.
    pub refresh_generation: i64,
    /// When the refresh token was last rotated.
    pub refreshed_at: Option<DateTimeUtc>,
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
