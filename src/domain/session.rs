//! A user's own sessions: list, count and close. Opening and checking them is
//! `auth::session`'s.

use entity::session;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;

/// Live sessions of a user, newest first, with last-seen times not yet written merged in.
pub async fn list(state: &AppState, user_id: Uuid) -> Result<Vec<session::Model>, AppError> {
    let mut sessions = session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::ExpiresAt.gt(state.clock.now()))
        .order_by_desc(session::Column::CreatedAt)
        .order_by_desc(session::Column::Id)
        .all(&state.db)
        .await?;
    for s in &mut sessions {
        if let Some(at) = state.last_seen.pending(s.id) {
            s.last_seen_at = Some(s.last_seen_at.map_or(at, |seen| seen.max(at)));
        }
    }
    Ok(sessions)
}

pub async fn count(state: &AppState, user_id: Uuid) -> Result<u64, AppError> {
    Ok(session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::ExpiresAt.gt(state.clock.now()))
        .count(&state.db)
        .await?)
}

/// Closes one session of `user_id`; someone else's session is `NotFound`, as if it did not exist.
pub async fn close(state: &AppState, user_id: Uuid, session_id: Uuid) -> Result<(), AppError> {
    let deleted = session::Entity::delete_many()
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::ExpiresAt.gt(state.clock.now()))
        .exec(&state.db)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(AppError::NotFound);
    }
    Ok(())
}

/// Closes every live session of `user_id`; returns how many.
pub async fn close_all(state: &AppState, user_id: Uuid) -> Result<u64, AppError> {
    let deleted = session::Entity::delete_many()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::ExpiresAt.gt(state.clock.now()))
        .exec(&state.db)
        .await?;
    Ok(deleted.rows_affected)
}

/// Deletes up to `batch` expired sessions; returns how many, so the caller can loop.
pub async fn delete_expired(state: &AppState, batch: u64) -> Result<u64, AppError> {
    use sea_orm::QuerySelect;
    let ids: Vec<Uuid> = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::ExpiresAt.lte(state.clock.now()))
        .limit(batch)
        .into_tuple()
        .all(&state.db)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let deleted = session::Entity::delete_many()
        .filter(session::Column::Id.is_in(ids))
        .exec(&state.db)
        .await?;
    Ok(deleted.rows_affected)
}
