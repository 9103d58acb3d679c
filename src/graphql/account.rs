//! Account operations: `me`, `signup`, `login`.

use async_graphql::{Context, InputObject, Object, Result};

use uuid::Uuid;

use crate::auth::cookie;
use crate::auth::guard::SelfOrAdmin;
use crate::domain::account::{self, NewAccount, SignedIn};
use crate::graphql::types::{AuthPayload, User};
use crate::graphql::ContextExt;

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in user, or null for anonymous callers.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let Some(caller) = ctx.identity().caller() else {
            return Ok(None);
        };
        let row = account::find(&ctx.state().db, caller.user_id).await?;
        Ok(row.map(|row| User::new(row, Some(caller.roles.clone()))))
    }

    /// A user by id: admins may read anyone, others only themselves. Null when no such user.
    #[graphql(guard = "SelfOrAdmin::new(id)")]
    async fn user(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<User>> {
        let row = account::find(&ctx.state().db, id).await?;
        Ok(row.map(|row| User::new(row, None)))
    }
}

/// A new account.
#[derive(InputObject)]
pub struct SignupInput {
    /// 3 to 64 characters of A-Z, a-z, 0-9, `_`, `.`, `-`; unique regardless of case.
    pub username: String,
    /// 8 to 256 characters, not the username, not a common password.
    pub password: String,
    /// Optional e-mail address, unique regardless of case.
    pub email: Option<String>,
    /// Optional display name.
    pub name: Option<String>,
}

/// Credentials for `login`.
#[derive(InputObject)]
pub struct LoginInput {
    /// The username, in any case.
    pub username: String,
    /// The password.
    pub password: String,
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account with role `user` and signs it in (token returned and set as cookie).
    async fn signup(&self, ctx: &Context<'_>, input: SignupInput) -> Result<AuthPayload> {
        let new = NewAccount {
            username: input.username,
            password: input.password,
            email: input.email,
            name: input.name,
        };
        let signed_in = account::signup(ctx.state(), new, ctx.client()).await?;
        Ok(start_session(ctx, signed_in))
    }

    /// Signs in with username and password; a wrong name or password gets one and the same error.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<AuthPayload> {
        let signed_in = account::login(ctx.state(), &input.username, &input.password, ctx.client()).await?;
        Ok(start_session(ctx, signed_in))
    }
}

/// Sets the session cookie for a fresh session and hands back its payload.
fn start_session(ctx: &Context<'_>, signed_in: SignedIn) -> AuthPayload {
    let state = ctx.state();
    let max_age = (signed_in.session.session.expires_at - state.clock.now()).num_seconds();
    ctx.append_http_header(
        http::header::SET_COOKIE,
        cookie::set(&state.config, &signed_in.session.token, max_age),
    );
    signed_in.into()
}
