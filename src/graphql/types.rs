//! The object types of API.md §5 shared by several domains: `User`, `Session`, `AuthPayload`.
//! Rows are mapped explicitly; entities never derive GraphQL.

use std::sync::Arc;

use async_graphql::{Context, Json, Object, Result};
use chrono::{DateTime, Utc};
use entity::{audit_event as audit_row, session as session_row, user as user_row};
use uuid::Uuid;

use crate::domain::account::SignedIn;
use crate::domain::{role, site, verification};
use crate::graphql::guard::SelfOrAdmin;
use crate::graphql::passkey::Passkey;
use crate::graphql::site::SiteMembership;
use crate::graphql::ContextExt;
use crate::sessions::{self, IssuedSession};

pub struct User {
    /// Shared: the caller's row comes from the session cache, others from the request's loader.
    row: Arc<user_row::Model>,
    /// Roles when already known (the caller's, or just loaded); read on demand otherwise.
    roles: Option<Vec<String>>,
    /// This user has just signed in through this response, so the reader is the user.
    signing_in: bool,
}

impl User {
    pub fn new(row: impl Into<Arc<user_row::Model>>, roles: Option<Vec<String>>) -> Self {
        User {
            row: row.into(),
            roles,
            signing_in: false,
        }
    }

    /// A user whose credential this very request proved (a login, a verification link): the
    /// reader is that user.
    pub fn signing_in(row: user_row::Model) -> Self {
        User {
            row: Arc::new(row),
            roles: None,
            signing_in: true,
        }
    }
}

impl User {
    /// Whether the reader may know all of this user's site roles: the user themself and admins.
    fn read_by_self_or_admin(&self, ctx: &Context<'_>) -> bool {
        let identity = ctx.identity();
        let caller = identity.caller();
        self.signing_in || caller.is_some_and(|c| c.user_id == self.row.id || c.has_role(role::ADMIN))
    }
}

/// An account: its profile, global roles and site memberships.
#[Object]
impl User {
    /// The user's id.
    async fn id(&self) -> Uuid {
        self.row.id
    }

    /// The login name, as spelled at signup; unique regardless of case.
    async fn username(&self) -> &str {
        &self.row.username
    }

    /// Roles, read live: global ones (`user`, `admin`, granted roles) and site roles
    /// (`<siteId>:<role>`). The user themself and admins see every site role; others see only
    /// those on sites they hold a role on too.
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        let roles = match &self.roles {
            Some(roles) => roles.clone(),
            None => sessions::roles_of(&ctx.state().db, self.row.id).await?,
        };
        if self.read_by_self_or_admin(ctx) {
            return Ok(roles);
        }
        let identity = ctx.identity();
        let caller = identity.caller();
        Ok(roles
            .into_iter()
            .filter(|r| {
                // Global role names hold no `:`; every other role is a site role.
                !r.contains(':')
                    || site::site_of_role(r).is_some_and(|site_id| caller.is_some_and(|c| site::can_see(c, site_id)))
            })
            .collect())
    }

    /// When the account was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }

    /// The e-mail address; only the user themself and admins may read it.
    #[graphql(guard = "SelfOrAdmin::new(self.row.id).or_signing_in(self.signing_in)")]
    async fn email(&self) -> Option<&str> {
        self.row.email.as_deref()
    }

    /// Whether `email` is verified (false without an address); only the user themself and admins may read it.
    #[graphql(guard = "SelfOrAdmin::new(self.row.id).or_signing_in(self.signing_in)")]
    async fn email_verified(&self) -> Option<bool> {
        Some(verification::is_verified(&self.row))
    }

    /// Display name.
    async fn name(&self) -> Option<&str> {
        self.row.name.as_deref()
    }

    /// IANA time zone, such as `Europe/Paris`.
    async fn time_zone(&self) -> Option<&str> {
        self.row.time_zone.as_deref()
    }

    /// BCP 47 language tag, such as `fr-CA`.
    async fn language(&self) -> Option<&str> {
        self.row.language.as_deref()
    }

    /// Preferred UI theme.
    async fn theme(&self) -> Option<&str> {
        self.row.theme.as_deref()
    }

    /// Free-form client settings.
    async fn settings(&self) -> Option<Json<serde_json::Value>> {
        self.row.settings.clone().map(Json)
    }

    /// When the password was last set.
    async fn password_changed_at(&self) -> Option<DateTime<Utc>> {
        self.row.password_changed_at
    }

    /// Whether TOTP is on; only the user themself and admins may read it.
    #[graphql(guard = "SelfOrAdmin::new(self.row.id).or_signing_in(self.signing_in)")]
    async fn totp_enabled(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        let loader = ctx.loaders().totp_enabled();
        Ok(Some(loader.load_one(self.row.id).await?.unwrap_or(false)))
    }

    /// Accounts at OpenID Connect providers linked to this user; only the user themself and admins may read them.
    #[graphql(guard = "SelfOrAdmin::new(self.row.id).or_signing_in(self.signing_in)")]
    async fn identities(&self, ctx: &Context<'_>) -> Result<Option<Vec<crate::graphql::social::Identity>>> {
        let loader = ctx.loaders().identities_by_user();
        let rows = loader.load_one(self.row.id).await?.unwrap_or_default();
        Ok(Some(
            rows.into_iter().map(crate::graphql::social::Identity::new).collect(),
        ))
    }

    /// The user's passkeys, oldest first; only the user themself and admins may read them.
    #[graphql(guard = "SelfOrAdmin::new(self.row.id).or_signing_in(self.signing_in)")]
    async fn passkeys(&self, ctx: &Context<'_>) -> Result<Option<Vec<Passkey>>> {
        let loader = ctx.loaders().passkeys_by_user();
        let rows = loader.load_one(self.row.id).await?.unwrap_or_default();
        Ok(Some(rows.into_iter().map(Passkey::new).collect()))
    }

    /// The user's roles on sites: all of them for the user themself and admins, otherwise
    /// those on sites the caller holds a role on too.
    async fn sites(&self, ctx: &Context<'_>) -> Result<Vec<SiteMembership>> {
        let memberships = ctx.loaders().memberships_by_user().load_one(self.row.id).await?;
        let sees_all = self.read_by_self_or_admin(ctx);
        let identity = ctx.identity();
        let caller = identity.caller();
        Ok(memberships
            .unwrap_or_default()
            .into_iter()
            .map(SiteMembership::new)
            .filter(|m| sees_all || caller.is_some_and(|c| site::can_see(c, m.site_id())))
            .collect())
    }
}

pub struct Session {
    row: session_row::Model,
    current: bool,
}

impl Session {
    pub fn new(row: session_row::Model, current_session: Option<Uuid>) -> Self {
        let current = current_session == Some(row.id);
        Session { row, current }
    }
}

/// A login session of a user; `closeSession` ends it.
#[Object]
impl Session {
    /// The session's id (`closeSession` takes it).
    async fn id(&self) -> Uuid {
        self.row.id
    }

    /// When the session was opened.
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }

    /// When the session ends on its own.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.row.expires_at
    }

    /// When a request last used the session.
    async fn last_seen_at(&self) -> Option<DateTime<Utc>> {
        self.row.last_seen_at
    }

    /// The User-Agent of the client that opened the session.
    async fn user_agent(&self) -> Option<&str> {
        self.row.user_agent.as_deref()
    }

    /// The client address that opened the session.
    async fn ip(&self) -> Option<&str> {
        self.row.ip.as_deref()
    }

    /// True for the session this request runs in, and for the one an `AuthPayload` returns.
    async fn current(&self) -> bool {
        self.current
    }

    /// When the session last proved a password (login, `reauthenticate`); operations that
    /// need a fresh session allow `REAUTH_WINDOW` seconds after it.
    async fn last_authenticated_at(&self) -> DateTime<Utc> {
        sessions::authenticated_at(&self.row)
    }
}

pub struct AuthPayload {
    token: String,
    token_expires_at: DateTime<Utc>,
    refresh_token: Option<String>,
    user: user_row::Model,
    roles: Vec<String>,
    session: session_row::Model,
}

impl From<SignedIn> for AuthPayload {
    fn from(signed_in: SignedIn) -> Self {
        let IssuedSession {
            token,
            token_expires_at,
            refresh_token,
            session,
            ..
        } = signed_in.session;
        AuthPayload {
            token,
            token_expires_at,
            refresh_token,
            user: signed_in.user,
            roles: signed_in.roles,
            session,
        }
    }
}

/// A new or renewed session: its token (a new session's is also set as the session cookie),
/// the user and the session.
#[Object]
impl AuthPayload {
    /// The bearer token (a JWT) for `Authorization: Bearer <token>`.
    async fn token(&self) -> &str {
        &self.token
    }

    /// When `token` expires: with `ACCESS_TOKEN_TTL` set, that many seconds from now (never
    /// beyond the session); otherwise with the session (`session.expiresAt`).
    async fn expires_at(&self) -> DateTime<Utc> {
        self.token_expires_at
    }

    /// Set when `ACCESS_TOKEN_TTL` is: the single-use token `refreshSession` takes for the
    /// next pair.
    async fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_deref()
    }

    /// The signed-in user.
    async fn user(&self) -> User {
        User {
            row: Arc::new(self.user.clone()),
            roles: Some(self.roles.clone()),
            signing_in: true,
        }
    }

    /// The session just opened.
    async fn session(&self) -> Session {
        Session {
            row: self.session.clone(),
            current: true,
        }
    }
}

pub struct AuditEvent {
    row: audit_row::Model,
}

impl AuditEvent {
    pub fn new(row: audit_row::Model) -> Self {
        AuditEvent { row }
    }
}

/// A security event from the audit log.
#[Object]
impl AuditEvent {
    /// The event's id.
    async fn id(&self) -> Uuid {
        self.row.id
    }

    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.row.at
    }

    /// What happened: signup, login, login_failed, logout, session_closed, sessions_closed,
    /// password_changed, password_reset_requested, password_reset, profile_updated,
    /// user_created, user_deleted, roles_granted, roles_revoked, site_created, site_deleted,
    /// site_role_changed, token_refreshed, refresh_token_reused, reauthenticated, totp_enabled,
    /// totp_disabled, second_factor_failed, recovery_code_used, email_verified, passkey_added,
    /// passkey_removed, identity_linked, identity_unlinked.
    async fn kind(&self) -> &str {
        &self.row.kind
    }

    /// Who acted; null when unknown or since deleted.
    async fn actor(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let Some(actor_id) = self.row.actor_id else {
            return Ok(None);
        };
        let loader = ctx.loaders().users();
        Ok(loader.load_one(actor_id).await?.map(|row| User::new(row, None)))
    }

    /// The user acted upon.
    async fn subject_id(&self) -> Option<Uuid> {
        self.row.subject_id
    }

    /// The client address.
    async fn ip(&self) -> Option<&str> {
        self.row.ip.as_deref()
    }

    /// The client's User-Agent.
    async fn user_agent(&self) -> Option<&str> {
        self.row.user_agent.as_deref()
    }

    /// Event details (roles granted, fields changed, ...); never a password or a token.
    async fn detail(&self) -> Option<Json<serde_json::Value>> {
        self.row.detail.clone().map(Json)
    }
}
