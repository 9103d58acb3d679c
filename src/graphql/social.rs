//! Social login (API.md §8): the provider names for login buttons, the login-code exchange of
//! bearer clients, and unlinking an identity. The redirects are `http::oidc`'s.

use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};
use entity::identity as identity_row;

use crate::domain::social;
use crate::graphql::account::start_session;
use crate::graphql::guard::{FreshSession, RequireRole};
use crate::graphql::types::AuthPayload;
use crate::graphql::ContextExt;

pub struct Identity {
    row: identity_row::Model,
}

impl Identity {
    pub fn new(row: identity_row::Model) -> Self {
        Identity { row }
    }
}

/// An account at an OpenID Connect provider, linked to a user.
#[Object]
impl Identity {
    /// The provider's name, as in `oidcProviders`.
    async fn provider(&self) -> &str {
        &self.row.provider
    }

    /// The account's id at the provider (the ID token's `sub`).
    async fn subject(&self) -> &str {
        &self.row.subject
    }

    /// The address the provider gave at the last sign-in.
    async fn email(&self) -> Option<&str> {
        self.row.email.as_deref()
    }

    /// When the identity was linked.
    async fn linked_at(&self) -> DateTime<Utc> {
        self.row.linked_at
    }
}

#[derive(Default)]
pub struct SocialQuery;

#[Object]
impl SocialQuery {
    /// The configured OpenID Connect providers, for login buttons: each signs in at
    /// `/auth/oidc/<name>/start?return_to=URL`.
    async fn oidc_providers(&self, ctx: &Context<'_>) -> Vec<String> {
        ctx.state().oidc.names()
    }
}

#[derive(Default)]
pub struct SocialMutation;

#[Object]
impl SocialMutation {
    /// Opens a session with the single-use `login_code` a social login returned with (valid 60 seconds).
    /// An unknown, used or expired code is BAD_USER_INPUT on `code`.
    async fn exchange_login_code(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The `login_code` query parameter of the return URL.")] code: String,
    ) -> Result<AuthPayload> {
        let state = ctx.state();
        let signed_in = social::exchange_login_code(&state.sessions, &code, ctx.client()).await?;
        Ok(start_session(ctx, signed_in))
    }

    /// Unlinks the caller's identity at `provider`. Needs a fresh session; refused (BAD_USER_INPUT on
    /// `provider`) when none is linked there or when it is the last way to sign in.
    #[graphql(guard = "RequireRole::user().and(FreshSession)")]
    async fn unlink_identity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The provider's name.")] provider: String,
    ) -> Result<bool> {
        let (state, caller) = (ctx.state(), ctx.caller()?);
        // The row, not the session's cached copy: a password may have been set since.
        let user = crate::domain::account::find(&state.db, caller.user_id)
            .await?
            .ok_or(crate::error::AppError::Unauthenticated)?;
        social::unlink(&state.sessions, &user, &provider, ctx.client()).await?;
        Ok(true)
    }
}
