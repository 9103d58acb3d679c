//! Session operations on the caller's own sessions: count, list, logout, close, renew and
//! re-authenticate.

use async_graphql::{Context, InputObject, Object, Result};
use uuid::Uuid;

use crate::auth::cookie;
use crate::domain::audit::Kind;
use crate::domain::{account, session};
use crate::graphql::guard::RequireRole;
use crate::graphql::second_factor;
use crate::graphql::types::{AuthPayload, Session};
use crate::graphql::ContextExt;

/// A proof for `reauthenticate`: exactly one of the three.
#[derive(InputObject)]
pub struct ReauthenticateInput {
    /// The account's password.
    pub password: Option<String>,
    /// A code from the authenticator app (with TOTP on).
    pub code: Option<String>,
    /// One of the recovery codes (with TOTP on).
    pub recovery_code: Option<String>,
}

#[derive(Default)]
pub struct SessionQuery;

#[Object]
impl SessionQuery {
    /// How many live sessions the caller has.
    #[graphql(guard = "RequireRole::user()")]
    async fn count_sessions(&self, ctx: &Context<'_>) -> Result<i32> {
        let count = ctx.state().sessions.count(ctx.caller()?.user_id).await?;
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// The caller's live sessions, newest first.
    #[graphql(guard = "RequireRole::user()")]
    async fn sessions(&self, ctx: &Context<'_>) -> Result<Vec<Session>> {
        let caller = ctx.caller()?;
        let rows = ctx.state().sessions.list(caller.user_id).await?;
        Ok(rows
            .into_iter()
            .map(|row| Session::new(row, Some(caller.session_id)))
            .collect())
    }
}

#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// Closes the current session and clears the session cookie.
    #[graphql(guard = "RequireRole::user()")]
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool> {
        let caller = ctx.caller()?;
        session::close(
            &ctx.state().sessions,
            caller.user_id,
            caller.session_id,
            Kind::Logout,
            ctx.client(),
        )
        .await?;
        clear_cookie(ctx);
        Ok(true)
    }

    /// Closes every session of the caller, the current one included; returns how many.
    #[graphql(guard = "RequireRole::user()")]
    async fn close_all_sessions(&self, ctx: &Context<'_>) -> Result<i32> {
        let caller = ctx.caller()?;
        let closed = session::close_all(&ctx.state().sessions, caller.user_id, caller.user_id, ctx.client()).await?;
        clear_cookie(ctx);
        Ok(i32::try_from(closed).unwrap_or(i32::MAX))
    }

    /// Closes one of the caller's own sessions (the cookie is cleared when it is the current one).
    #[graphql(guard = "RequireRole::user()")]
    async fn close_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session's id, from `sessions`.")] id: Uuid,
    ) -> Result<bool> {
        let caller = ctx.caller()?;
        session::close(
            &ctx.state().sessions,
            caller.user_id,
            id,
            Kind::SessionClosed,
            ctx.client(),
        )
        .await?;
        if id == caller.session_id {
            clear_cookie(ctx);
        }
        Ok(true)
    }

    /// Closes every session of the caller but the current one; returns how many.
    #[graphql(guard = "RequireRole::user()")]
    async fn close_other_sessions(&self, ctx: &Context<'_>) -> Result<i32> {
        let caller = ctx.caller()?;
        let closed =
            session::close_others(&ctx.state().sessions, caller.user_id, caller.session_id, ctx.client()).await?;
        Ok(i32::try_from(closed).unwrap_or(i32::MAX))
    }

    /// Exchanges a refresh token (from an AuthPayload, with `ACCESS_TOKEN_TTL` set) for a new
    /// token and refresh token of the same session. Each refresh token works once; one
    /// presented again more than 10 seconds after it was spent closes the session. Send it
    /// without the expired token: a request whose credentials fail is refused as a whole.
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token of the latest AuthPayload.")] refresh_token: String,
    ) -> Result<AuthPayload> {
        let signed_in = session::refresh(&ctx.state().sessions, &refresh_token, ctx.client()).await?;
        Ok(signed_in.into())
    }

    /// Proves the password (or, with TOTP on, a code or a recovery code) again, so that the current session
    /// counts as fresh for `REAUTH_WINDOW` seconds. A wrong one is BAD_USER_INPUT on its field, counted as a
    /// failed login.
    #[graphql(guard = "RequireRole::user()")]
    async fn reauthenticate(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Exactly one of password, code and recoveryCode.")] input: ReauthenticateInput,
    ) -> Result<Session> {
        let (state, caller) = (ctx.state(), ctx.caller()?);
        let credential = second_factor::credential(&input.password, &input.code, &input.recovery_code)?;
        let checks = account::CredentialChecks {
            limiter: &state.limiter,
            passwords: &state.passwords,
            sealing: &state.sealing,
        };
        let row = account::reauthenticate(&state.sessions, checks, &caller, credential, ctx.client()).await?;
        Ok(Session::new(row, Some(caller.session_id)))
    }
}

// API.md §3: cleared whether the request came with the cookie or with a bearer token.
fn clear_cookie(ctx: &Context<'_>) {
    ctx.append_http_header(http::header::SET_COOKIE, cookie::clear(&ctx.state().config));
}
