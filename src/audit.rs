//! Audit events: what happened, written in the transaction of the change it records (the
//! session store records the endings it decides on itself, so this sits below it). Events
//! never hold a password or a token.

use chrono::{DateTime, Utc};
use entity::audit_event;
use sea_orm::sea_query::InsertStatement;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryTrait};
use uuid::Uuid;

use crate::client::ClientInfo;
use crate::error::AppError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Signup,
    Login,
    LoginFailed,
    Logout,
    SessionClosed,
    SessionsClosed,
    PasswordChanged,
    PasswordResetRequested,
    PasswordReset,
    ProfileUpdated,
    UserCreated,
    UserDeleted,
    RolesGranted,
    RolesRevoked,
    SiteCreated,
    SiteDeleted,
    SiteRoleChanged,
    /// A refresh token was exchanged for a new token pair.
    TokenRefreshed,
    /// A spent refresh token came back after its grace: the session was closed.
    RefreshTokenReused,
    /// The session proved the password again (`reauthenticate`).
    Reauthenticated,
    TotpEnabled,
    TotpDisabled,
    /// A wrong, used or expired TOTP or recovery code.
    SecondFactorFailed,
    RecoveryCodeUsed,
    EmailVerified,
    IdentityLinked,
    IdentityUnlinked,
    PasskeyAdded,
    PasskeyRemoved,
}

impl Kind {
    /// The names API.md §5 and §8 list for `AuditEvent.kind`, and the two gatehouse adds
    /// (`token_refreshed`, `reauthenticated`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Signup => "signup",
            Kind::Login => "login",
            Kind::LoginFailed => "login_failed",
            Kind::Logout => "logout",
            Kind::SessionClosed => "session_closed",
            Kind::SessionsClosed => "sessions_closed",
            Kind::PasswordChanged => "password_changed",
            Kind::PasswordResetRequested => "password_reset_requested",
            Kind::PasswordReset => "password_reset",
            Kind::ProfileUpdated => "profile_updated",
            Kind::UserCreated => "user_created",
            Kind::UserDeleted => "user_deleted",
            Kind::RolesGranted => "roles_granted",
            Kind::RolesRevoked => "roles_revoked",
            Kind::SiteCreated => "site_created",
            Kind::SiteDeleted => "site_deleted",
            Kind::SiteRoleChanged => "site_role_changed",
            Kind::TokenRefreshed => "token_refreshed",
            Kind::RefreshTokenReused => "refresh_token_reused",
            Kind::Reauthenticated => "reauthenticated",
            Kind::TotpEnabled => "totp_enabled",
            Kind::TotpDisabled => "totp_disabled",
            Kind::IdentityLinked => "identity_linked",
            Kind::IdentityUnlinked => "identity_unlinked",
            Kind::SecondFactorFailed => "second_factor_failed",
            Kind::RecoveryCodeUsed => "recovery_code_used",
            Kind::EmailVerified => "email_verified",
            Kind::PasskeyAdded => "passkey_added",
            Kind::PasskeyRemoved => "passkey_removed",
        }
    }
}

/// One event to record: who acted (`actor`), on whom (`subject`), from which client.
pub struct Event<'a> {
    pub kind: Kind,
    pub actor: Option<Uuid>,
    pub subject: Option<Uuid>,
    pub client: &'a ClientInfo,
    pub detail: Option<serde_json::Value>,
}

impl<'a> Event<'a> {
    /// An event where a user acts on their own account.
    pub fn own(kind: Kind, user_id: Uuid, client: &'a ClientInfo) -> Self {
        Event {
            kind,
            actor: Some(user_id),
            subject: Some(user_id),
            client,
            detail: None,
        }
    }

    pub fn with_detail(self, detail: serde_json::Value) -> Self {
        Event {
            detail: Some(detail),
            ..self
        }
    }
}

/// Writes an event on `conn`: pass the transaction of the change it records.
pub async fn record(conn: &impl ConnectionTrait, at: DateTime<Utc>, event: Event<'_>) -> Result<(), AppError> {
    audit_event::Entity::insert(row(at, event))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The statement that writes an event, to send with others (`SessionStore::open_unless`).
pub fn insert(at: DateTime<Utc>, event: Event<'_>) -> InsertStatement {
    audit_event::Entity::insert(row(at, event)).into_query()
}

fn row(at: DateTime<Utc>, event: Event<'_>) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: Set(Uuid::new_v4()),
        at: Set(at),
        kind: Set(event.kind.as_str().to_owned()),
        actor_id: Set(event.actor),
        subject_id: Set(event.subject),
        ip: Set(event.client.ip.map(|ip| ip.to_string())),
        user_agent: Set(event.client.user_agent.clone()),
        detail: Set(event.detail),
    }
}
