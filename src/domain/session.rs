//! Closing a user's sessions and renewing one, each recorded in the audit log in the same
//! transaction. Listing, counting and checking sessions is the session store's.

use uuid::Uuid;

use crate::client::ClientInfo;
use crate::domain::account;
use crate::domain::account::SignedIn;
use crate::domain::audit::{self, Event, Kind};
use crate::error::AppError;
use crate::sessions::{Renewal, SessionStore};

/// Closes one live session of `user_id` (`kind` is `Logout` or `SessionClosed`); someone
/// else's session is `NotFound`, as if it did not exist.
pub async fn close(
    store: &SessionStore,
    user_id: Uuid,
    session_id: Uuid,
    kind: Kind,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let mut change = store.begin().await?;
    if !change.close(user_id, session_id).await? {
        return Err(AppError::NotFound);
    }
    let detail = serde_json::json!({ "sessionId": session_id });
    let event = Event::own(kind, user_id, client).with_detail(detail);
    audit::record(change.txn(), store.now(), event).await?;
    change.commit().await
}

/// Closes every live session of `user_id` on behalf of `actor` (the user, or an admin);
/// returns how many. An unknown user is `NotFound`.
pub async fn close_all(store: &SessionStore, actor: Uuid, user_id: Uuid, client: &ClientInfo) -> Result<u64, AppError> {
    let mut change = store.begin().await?;
    let closed = change.close_all(user_id).await?;
    if closed == 0 && account::find(change.txn(), user_id).await?.is_none() {
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
    audit::record(change.txn(), store.now(), event).await?;
    change.commit().await?;
    Ok(closed)
}

/// `closeOtherSessions`: closes every live session of `user_id` but `keep`; returns how many.
pub async fn close_others(
    store: &SessionStore,
    user_id: Uuid,
    keep: Uuid,
    client: &ClientInfo,
) -> Result<u64, AppError> {
    let mut change = store.begin().await?;
    let closed = change.close_others(user_id, keep).await?;
    let detail = serde_json::json!({ "count": closed, "kept": keep });
    let event = Event::own(Kind::SessionsClosed, user_id, client).with_detail(detail);
    audit::record(change.txn(), store.now(), event).await?;
    change.commit().await?;
    Ok(closed)
}

/// `refreshSession`: a new token pair for the session the refresh token belongs to. A token
/// that ends the session (replayed, or the session idle) still commits that ending before
/// the caller is refused.
pub async fn refresh(store: &SessionStore, refresh_token: &str, client: &ClientInfo) -> Result<SignedIn, AppError> {
    let mut change = store.begin().await?;
    match change.refresh(refresh_token, client).await? {
        Renewal::Renewed(renewed) => {
            let (session, user) = *renewed;
            let detail = serde_json::json!({ "sessionId": session.session.id });
            let event = Event::own(Kind::TokenRefreshed, user.id, client).with_detail(detail);
            audit::record(change.txn(), store.now(), event).await?;
            change.commit().await?;
            let roles = session.roles.clone();
            Ok(SignedIn { user, roles, session })
        }
        Renewal::Ended => {
            change.commit().await?;
            Err(AppError::InvalidToken)
        }
    }
}
