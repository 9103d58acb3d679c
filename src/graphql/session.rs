//! Session operations on the caller's own sessions: count, list, logout and close.

use async_graphql::{Context, Object, Result};
use uuid::Uuid;

use crate::auth::cookie;
use crate::domain::audit::Kind;
use crate::domain::session;
use crate::graphql::guard::RequireRole;
use crate::graphql::types::Session;
use crate::graphql::ContextExt;

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
}

// API.md §3: cleared whether the request came with the cookie or with a bearer token.
fn clear_cookie(ctx: &Context<'_>) {
    ctx.append_http_header(http::header::SET_COOKIE, cookie::clear(&ctx.state().config));
}
