//! Administration (role `admin`): users, roles, other users' sessions and the audit log.

use async_graphql::{Context, InputObject, Object, Result};
use uuid::Uuid;

use crate::domain::account::NewAccount;
use crate::domain::page::PageRequest;
use crate::domain::{admin, audit, second_factor, session};
use crate::graphql::connection::{AuditEventConnection, UserConnection};
use crate::graphql::guard::{FreshSession, RequireRole};
use crate::graphql::types::{AuditEvent, User};
use crate::graphql::ContextExt;

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Every user, by username; `search` matches part of a username or e-mail. Admins only.
    #[graphql(guard = "RequireRole::admin()")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size, at most 100.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
        #[graphql(desc = "Part of a username or e-mail address, any case.")] search: Option<String>,
    ) -> Result<Option<UserConnection>> {
        // Nullable, as every guarded field: a refusal leaves `null` beside the rest (API.md §2).
        let request = PageRequest::new(first, after.as_deref())?;
        let page = admin::list_users(&ctx.state().db, &request, search.as_deref()).await?;
        Ok(Some(UserConnection::from_page(page, |row| User::new(row, None))))
    }

    /// Security events, newest first; `userId` keeps those where that user acted or was acted upon. Admins only.
    #[graphql(guard = "RequireRole::admin()")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size, at most 100.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only events whose actor or subject is this user.")] user_id: Option<Uuid>,
    ) -> Result<Option<AuditEventConnection>> {
        let request = PageRequest::new(first, after.as_deref())?;
        let page = audit::list(&ctx.state().db, &request, user_id).await?;
        Ok(Some(AuditEventConnection::from_page(page, AuditEvent::new)))
    }
}

/// A user created by an admin.
#[derive(InputObject)]
pub struct CreateUserInput {
    /// 3 to 64 characters of A-Z, a-z, 0-9, `_`, `.`, `-`; unique regardless of case.
    pub username: String,
    /// 8 to 256 characters, not the username, not a common password.
    pub password: String,
    /// Optional e-mail address, unique regardless of case.
    pub email: Option<String>,
    /// Optional display name.
    pub name: Option<String>,
    /// Global roles besides `user`, which every account has.
    pub roles: Option<Vec<String>>,
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Creates an account with role `user` and the given roles. Admins only.
    #[graphql(guard = "RequireRole::admin()")]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new account.")] input: CreateUserInput,
    ) -> Result<User> {
        let new = NewAccount {
            username: input.username,
            password: input.password,
            email: input.email,
            name: input.name,
        };
        let roles = input.roles.unwrap_or_default();
        let (row, roles) = {
            let state = ctx.state();
            admin::create_user(
                &state.sessions,
                &state.passwords,
                &ctx.caller()?,
                new,
                &roles,
                ctx.client(),
            )
        }
        .await?;
        Ok(User::new(row, Some(roles)))
    }

    /// Deletes users and returns the ids actually deleted; their sessions end at once. The last admin cannot be deleted. Admins only.
    #[graphql(guard = "RequireRole::admin()")]
    async fn delete_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The ids of the users to delete.")] ids: Vec<Uuid>,
    ) -> Result<Vec<Uuid>> {
        Ok(admin::delete_users(&ctx.state().sessions, &ctx.caller()?, &ids, ctx.client()).await?)
    }

    /// Grants global roles, effective on the user's next request. Admins only.
    #[graphql(guard = "RequireRole::admin()")]
    async fn grant_roles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] user_id: Uuid,
        #[graphql(desc = "Role names matching `^[a-z][a-z0-9_-]{0,31}$`.")] roles: Vec<String>,
    ) -> Result<User> {
        let (row, roles) =
            admin::grant_roles(&ctx.state().sessions, &ctx.caller()?, user_id, &roles, ctx.client()).await?;
        ctx.refresh_roles().await?;
        Ok(User::new(row, Some(roles)))
    }

    /// Revokes global roles, effective on the user's next request; `user` stays, and the last admin keeps `admin`. Admins only.
    #[graphql(guard = "RequireRole::admin()")]
    async fn revoke_roles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] user_id: Uuid,
        #[graphql(desc = "Role names to take away.")] roles: Vec<String>,
    ) -> Result<User> {
        let (row, roles) =
            admin::revoke_roles(&ctx.state().sessions, &ctx.caller()?, user_id, &roles, ctx.client()).await?;
        ctx.refresh_roles().await?;
        Ok(User::new(row, Some(roles)))
    }

    /// Ends every session of a user (a stolen laptop); returns how many. Admins only.
    #[graphql(guard = "RequireRole::admin()")]
    async fn close_user_sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] user_id: Uuid,
    ) -> Result<i32> {
        let closed = session::close_all(&ctx.state().sessions, ctx.caller()?.user_id, user_id, ctx.client()).await?;
        Ok(i32::try_from(closed).unwrap_or(i32::MAX))
    }

    /// Turns TOTP off for a user who lost their device (recorded as `totp_disabled` with the admin as actor);
    /// false when it was not on. Admins only, with a fresh session.
    #[graphql(guard = "RequireRole::admin().and(FreshSession)")]
    async fn disable_user_totp(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] user_id: Uuid,
    ) -> Result<bool> {
        let actor = ctx.caller()?.user_id;
        Ok(second_factor::disable(&ctx.state().sessions, actor, user_id, ctx.client()).await?)
    }
}
