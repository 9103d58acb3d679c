//! Account operations: `me`, `signup`, `login`.

use async_graphql::{Context, InputObject, Json, MaybeUndefined, Object, Result};

use uuid::Uuid;

use crate::auth::cookie;
use crate::domain::account::{self, EmailPolicy, NewAccount, SignedIn};
use crate::domain::profile::{self, ProfileChanges};
use crate::domain::{reset, verification};
use crate::graphql::guard::{RequireRole, SelfOrAdmin};
use crate::graphql::types::{AuthPayload, User};
use crate::graphql::{change, ContextExt};

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in user, or null for anonymous callers.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let identity = ctx.identity();
        let Some(caller) = identity.caller() else {
            return Ok(None);
        };
        // The row came with the session, from the store's cache or the same query.
        Ok(Some(User::new(caller.user.clone(), Some(caller.roles.to_vec()))))
    }

    /// A user by id: admins may read anyone, others only themselves. Null when no such user.
    #[graphql(guard = "SelfOrAdmin::new(id)")]
    async fn user(&self, ctx: &Context<'_>, #[graphql(desc = "The user's id.")] id: Uuid) -> Result<Option<User>> {
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

/// The current password and the new one.
#[derive(InputObject)]
pub struct ChangePasswordInput {
    /// The password in use now.
    pub current_password: String,
    /// 8 to 256 characters, not the username, not a common password.
    pub new_password: String,
}

/// Profile fields to change: an omitted field stays, `null` clears it.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    /// Display name, at most 200 characters.
    pub name: MaybeUndefined<String>,
    /// E-mail address, unique regardless of case.
    pub email: MaybeUndefined<String>,
    /// IANA time zone, such as `Europe/Paris`.
    pub time_zone: MaybeUndefined<String>,
    /// BCP 47 language tag, such as `pt-BR`.
    pub language: MaybeUndefined<String>,
    /// UI theme name, 1 to 32 characters of letters, digits, `-`, `_`.
    pub theme: MaybeUndefined<String>,
    /// Free-form client settings, at most 16 KiB of JSON.
    pub settings: MaybeUndefined<Json<serde_json::Value>>,
    /// The password in use now; required when `email` changes (wrong or missing: BAD_USER_INPUT on
    /// `currentPassword`, counted as a failed login).
    pub current_password: Option<String>,
}

/// Who forgot their password: username wins when both are given.
#[derive(InputObject)]
pub struct RequestPasswordResetInput {
    /// The account's username.
    pub username: Option<String>,
    /// The account's e-mail address.
    pub email: Option<String>,
}

/// A mailed reset token and the new password.
#[derive(InputObject)]
pub struct ResetPasswordInput {
    /// The token from the reset link.
    pub token: String,
    /// 8 to 256 characters, not the username, not a common password.
    pub new_password: String,
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account with role `user` and signs it in (token returned and set as cookie).
    async fn signup(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new account.")] input: SignupInput,
    ) -> Result<AuthPayload> {
        let new = NewAccount {
            username: input.username,
            password: input.password,
            email: input.email,
            name: input.name,
        };
        let state = ctx.state();
        let (mail, required) = state.email_policy();
        let email_policy = EmailPolicy { mail: &mail, required };
        let signed_in = account::signup(
            &state.sessions,
            &state.limiter,
            &state.passwords,
            email_policy,
            new,
            ctx.client(),
        )
        .await?;
        Ok(start_session(ctx, signed_in))
    }

    /// Signs in with username and password; a wrong name or password gets one and the same error.
    async fn login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Username and password.")] input: LoginInput,
    ) -> Result<AuthPayload> {
        let state = ctx.state();
        let (username, password) = (&input.username, &input.password);
        let (mail, required) = state.email_policy();
        let signed_in = account::login(
            &state.sessions,
            &state.limiter,
            &state.passwords,
            EmailPolicy { mail: &mail, required },
            username,
            password,
            ctx.client(),
        )
        .await?;
        Ok(start_session(ctx, signed_in))
    }

    /// Changes the caller's password: every session closes, the current one included, and a new one is returned.
    /// A wrong current password is BAD_USER_INPUT on `currentPassword`.
    #[graphql(guard = "RequireRole::user()")]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The current password and the new one.")] input: ChangePasswordInput,
    ) -> Result<AuthPayload> {
        let (state, caller, client) = (ctx.state(), ctx.caller()?, ctx.client());
        let signed_in = account::change_password(
            &state.sessions,
            &state.limiter,
            &state.passwords,
            &caller,
            &input.current_password,
            &input.new_password,
            client,
        )
        .await?;
        Ok(start_session(ctx, signed_in))
    }

    /// Changes the caller's profile: omitted fields stay, `null` clears a field. A new `email` needs
    /// `currentPassword`, and the old address is told of the change.
    #[graphql(guard = "RequireRole::user()")]
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The profile fields to change.")] input: UpdateProfileInput,
    ) -> Result<User> {
        let caller = ctx.caller()?;
        let changes = ProfileChanges {
            name: change(input.name),
            email: change(input.email),
            time_zone: change(input.time_zone),
            language: change(input.language),
            theme: change(input.theme),
            settings: change(input.settings.map_value(|json| json.0)),
            current_password: input.current_password,
        };
        let state = ctx.state();
        let (verify_mail, _) = state.email_policy();
        let checks = profile::Checks {
            limiter: &state.limiter,
            passwords: &state.passwords,
            mailer: &state.mailer,
            verify_mail: &verify_mail,
        };
        let row = profile::update(&state.sessions, checks, caller.user_id, changes, ctx.client()).await?;
        Ok(User::new(row, Some(caller.roles.to_vec())))
    }

    /// Mails a single-use reset link valid 30 minutes when the account exists. Always true, answered at once,
    /// so it tells nothing about which accounts exist.
    async fn request_password_reset(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account's username or e-mail address.")] input: RequestPasswordResetInput,
    ) -> Result<bool> {
        let (state, client) = (ctx.state(), ctx.client().clone());
        let mail = state.reset_mail();
        reset::request_in_background(
            state.sessions.clone(),
            &state.limiter,
            mail,
            input.username,
            input.email,
            client,
        )
        .await?;
        Ok(true)
    }

    /// Mails a link that verifies the caller's e-mail address (valid 24 hours, once); none when it is verified
    /// already. An account without an address is BAD_USER_INPUT on `email`.
    #[graphql(guard = "RequireRole::user()")]
    async fn request_email_verification(&self, ctx: &Context<'_>) -> Result<bool> {
        let state = ctx.state();
        let (mail, _) = state.email_policy();
        verification::request(&state.sessions, &state.limiter, &mail, ctx.caller()?.user_id).await?;
        Ok(true)
    }

    /// Verifies the address a link was mailed to, with the token from the link. An unknown, used or expired
    /// token, or one for an address since replaced, is BAD_USER_INPUT on `token`.
    async fn verify_email(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The token from the verification link.")] token: String,
    ) -> Result<User> {
        let user = verification::verify(&ctx.state().sessions, &token, ctx.client()).await?;
        // Whoever holds the mailed link may see the result, as a signing-in user would.
        Ok(User::signing_in(user))
    }

    /// Sets a new password with a reset token: the token is used up, every session closes and a new one is
    /// returned. An unknown, used or expired token is BAD_USER_INPUT on `token`.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The reset token and the new password.")] input: ResetPasswordInput,
    ) -> Result<AuthPayload> {
        let state = ctx.state();
        let (token, new_password) = (&input.token, &input.new_password);
        let signed_in = reset::reset(
            &state.sessions,
            &state.limiter,
            &state.passwords,
            token,
            new_password,
            ctx.client(),
        )
        .await?;
        Ok(start_session(ctx, signed_in))
    }
}

/// Sets the session cookie for a fresh session and hands back its payload.
pub(crate) fn start_session(ctx: &Context<'_>, signed_in: SignedIn) -> AuthPayload {
    let state = ctx.state();
    let issued = &signed_in.session;
    let max_age = (issued.session.expires_at - state.clock.now()).num_seconds();
    let cookie_token = issued.cookie_token.as_deref().unwrap_or(&issued.token);
    ctx.append_http_header(
        http::header::SET_COOKIE,
        cookie::set(&state.config, cookie_token, max_age),
    );
    signed_in.into()
}
