//! Ceremonies between a `start...` and its `finish...`: the `webauthn-rs` state, kept in the
//! database under the SHA-256 of a single-use ticket so a finish may reach any instance. A
//! finish takes its ceremony before checking anything: each challenge is answered once.

use chrono::{DateTime, Duration, Utc};
use entity::passkey_ceremony;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::token::new_secret;
use crate::error::AppError;

/// How long a started registration or sign-in waits for its finish, as a TOTP login does.
const CEREMONY_MINUTES: i64 = 5;
pub(super) const REGISTRATION: &str = "registration";
pub(super) const LOGIN: &str = "login";

/// Stores a ceremony; returns its ticket. Expired ceremonies of anyone go with each new one.
pub(super) async fn open_ceremony(
    conn: &impl ConnectionTrait,
    user_id: Option<Uuid>,
    kind: &str,
    state: String,
    now: DateTime<Utc>,
) -> Result<String, AppError> {
    let (ticket, ticket_hash) = new_secret();
    let row = passkey_ceremony::ActiveModel {
        ticket_hash: Set(ticket_hash),
        user_id: Set(user_id),
        kind: Set(kind.to_owned()),
        state: Set(state),
        expires_at: Set(now + Duration::minutes(CEREMONY_MINUTES)),
    };
    passkey_ceremony::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    passkey_ceremony::Entity::delete_many()
        .filter(passkey_ceremony::Column::ExpiresAt.lte(now))
        .exec(conn)
        .await?;
    Ok(ticket)
}

/// Deletes the ceremony found; `None` when there was none or a racing finish took it first.
pub(super) async fn take(
    conn: &impl ConnectionTrait,
    found: Option<passkey_ceremony::Model>,
) -> Result<Option<passkey_ceremony::Model>, AppError> {
    let Some(ceremony) = found else {
        return Ok(None);
    };
    let taken = passkey_ceremony::Entity::delete_by_id(ceremony.ticket_hash.clone())
        .exec(conn)
        .await?;
    Ok((taken.rows_affected == 1).then_some(ceremony))
}

pub(super) fn to_text(value: &impl Serialize) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(|e| AppError::Internal(e.into()))
}

pub(super) fn from_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, AppError> {
    serde_json::from_str(text).map_err(|e| AppError::Internal(anyhow::anyhow!("stored passkey state: {e}")))
}
