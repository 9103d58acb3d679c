//! A user's sessions: list, count and close, each close recorded in the audit log in the
//! same transaction. Opening and checking sessions is `auth::session`'s.

use entity::{session, user};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use crate::auth::cache::Stale;
use crate::client::ClientInfo;
use crate::domain::audit::{self, Event, Kind};
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

/// Closes one live session of `user_id` (`kind` is `Logout` or `SessionClosed`); someone
/// else's session is `NotFound`, as if it did not exist.
pub async fn close(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    kind: Kind,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let now = state.clock.now();
    let txn = state.db.begin().await?;
    let deleted = session::Entity::delete_many()
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(AppError::NotFound);
    }
    let detail = serde_json::json!({ "sessionId": session_id });
    audit::record(&txn, now, Event::own(kind, user_id, client).with_detail(detail)).await?;
    txn.commit().await?;
    state.sessions_changed(Stale::User(user_id)).await;
    Ok(())
}

/// Closes every live session of `user_id` on behalf of `actor` (the user, or an admin);
/// returns how many. An unknown user is `NotFound`.
pub async fn close_all(state: &AppState, actor: Uuid, user_id: Uuid, client: &ClientInfo) -> Result<u64, AppError> {
    let now = state.clock.now();
    let txn = state.db.begin().await?;
    let closed = delete_live(&txn, user_id, now).await?;
    if closed == 0 && user::Entity::find_by_id(user_id).one(&txn).await?.is_none() {
        return Err(AppError::NotFound);
    }
    let event = Event {
        kind: Kind::SessionsClosed,
        actor: Some(actor),
        subject: Some(user_id),
        client,
        detail: None,
    }
    .with_detail(serde_json::json!({ "count": closed }));
    audit::record(&txn, now, event).await?;
    txn.commit().await?;
    state.sessions_changed(Stale::User(user_id)).await;
    Ok(closed)
}

async fn delete_live(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, AppError> {
    let deleted = session::Entity::delete_many()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::ExpiresAt.gt(now))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected)
}

/// Live sessions of every user (the `live sessions` metric).
pub async fn count_live(state: &AppState) -> Result<u64, AppError> {
    let now = state.clock.now();
    Ok(session::Entity::find()
        .filter(session::Column::ExpiresAt.gt(now))
        .count(&state.db)
        .await?)
}

/// Deletes up to `batch` expired sessions; returns how many, so the caller can loop.
pub async fn delete_expired(state: &AppState, batch: u64) -> Result<u64, AppError> {
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
