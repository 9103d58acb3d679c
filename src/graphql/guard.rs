//! Field guards (API.md §4): one struct per access rule, named to read as English on the
//! field they protect. They only inspect the request's `Identity`; they do no I/O.

use std::ops::Deref;
use std::sync::{RwLock, RwLockReadGuard};

use async_graphql::{Context, Guard, Result};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::domain::role;
use crate::domain::site::{self, SiteRole};
use crate::error::AppError;
use crate::graphql::{ContextExt, RequestData};
use crate::sessions::Identity;

/// The identity a GraphQL request runs as. Roles may be reloaded mid-request by a mutation
/// that changes the caller's own roles, so the fields it returns see them.
pub struct RequestIdentity(RwLock<Identity>);

impl RequestIdentity {
    pub fn new(identity: Identity) -> Self {
        RequestIdentity(RwLock::new(identity))
    }

    pub fn set_roles(&self, roles: Vec<String>) {
        if let Ok(mut identity) = self.0.write() {
            if let Identity::User(caller) = &mut *identity {
                caller.roles = roles.into();
            }
        }
    }
}

/// The request's identity, read in place: the caller is shared with the session cache, and a
/// copy per field would cost every field atomic counts on memory that every core writes. A
/// schema executed without one is treated as anonymous. Not held across an `.await` (the
/// future would not be `Send`), so a mutation that reloads the caller's roles never waits
/// on a reader of its own request.
pub fn identity<'a>(ctx: &Context<'a>) -> IdentityRef<'a> {
    static ANONYMOUS: Identity = Identity::Anonymous;
    match ctx.data_opt::<RequestData>().map(|request| request.identity.0.read()) {
        Some(Ok(identity)) => IdentityRef::Held(identity),
        // No identity, or a writer panicked while reloading roles: nobody is signed in.
        None | Some(Err(_)) => IdentityRef::Anonymous(&ANONYMOUS),
    }
}

/// What `identity` returns: reads as an `&Identity`.
pub enum IdentityRef<'a> {
    Held(RwLockReadGuard<'a, Identity>),
    Anonymous(&'static Identity),
}

impl Deref for IdentityRef<'_> {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        match self {
            IdentityRef::Held(identity) => identity,
            IdentityRef::Anonymous(identity) => identity,
        }
    }
}

/// The caller must hold a global role.
pub struct RequireRole {
    role: &'static str,
}

impl RequireRole {
    pub fn user() -> Self {
        RequireRole { role: role::USER }
    }

    pub fn admin() -> Self {
        RequireRole { role: role::ADMIN }
    }
}

impl Guard for RequireRole {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        match identity(ctx).caller() {
            None => Err(AppError::Unauthenticated.into()),
            Some(caller) if caller.has_role(self.role) => Ok(()),
            Some(_) => Err(AppError::Forbidden.into()),
        }
    }
}

/// The caller must be the user `user_id`, or an admin.
pub struct SelfOrAdmin {
    user_id: Uuid,
    signing_in: bool,
}

impl SelfOrAdmin {
    pub fn new(user_id: Uuid) -> Self {
        SelfOrAdmin {
            user_id,
            signing_in: false,
        }
    }

    /// Also allows the anonymous request that is signing this user in (`signup`, `login`):
    /// whoever holds the new token is that user.
    pub fn or_signing_in(self, signing_in: bool) -> Self {
        SelfOrAdmin { signing_in, ..self }
    }
}

impl Guard for SelfOrAdmin {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        if self.signing_in {
            return Ok(());
        }
        match identity(ctx).caller() {
            None => Err(AppError::Unauthenticated.into()),
            Some(caller) if caller.user_id == self.user_id || caller.has_role(role::ADMIN) => Ok(()),
            Some(_) => Err(AppError::Forbidden.into()),
        }
    }
}

/// The caller must hold at least `min` on the site (or be a global admin, when allowed).
/// A caller with no role on the site learns nothing about it: `NotFound`.
pub struct SiteRoleAtLeast {
    site_id: Uuid,
    min: SiteRole,
    global_admin: bool,
}

impl SiteRoleAtLeast {
    pub fn new(site_id: Uuid, min: SiteRole) -> Self {
        SiteRoleAtLeast {
            site_id,
            min,
            global_admin: false,
        }
    }

    pub fn or_global_admin(self) -> Self {
        SiteRoleAtLeast {
            global_admin: true,
            ..self
        }
    }
}

impl Guard for SiteRoleAtLeast {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let identity = identity(ctx);
        let Some(caller) = identity.caller() else {
            return Err(AppError::Unauthenticated.into());
        };
        if self.global_admin && caller.has_role(role::ADMIN) {
            return Ok(());
        }
        match site::role_on(caller, self.site_id) {
            Some(held) if held >= self.min => Ok(()),
            Some(_) => Err(AppError::Forbidden.into()),
            None if caller.has_role(role::ADMIN) => Err(AppError::Forbidden.into()),
            None => Err(AppError::NotFound.into()),
        }
    }
}

/// The caller's session must have proved a password or a factor within `REAUTH_WINDOW`
/// (API.md §8); otherwise `REAUTHENTICATION_REQUIRED`, and `reauthenticate` makes it fresh.
pub struct FreshSession;

impl FreshSession {
    fn judge(identity: &Identity, now: DateTime<Utc>, window: Duration) -> Result<(), AppError> {
        match identity.caller() {
            None => Err(AppError::Unauthenticated),
            Some(caller) if now - caller.authenticated_at <= window => Ok(()),
            Some(_) => Err(AppError::ReauthenticationRequired),
        }
    }
}

impl Guard for FreshSession {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let state = ctx.state();
        let window = crate::sessions::seconds_to_duration(state.config.reauth_window);
        Ok(FreshSession::judge(&identity(ctx), state.clock.now(), window)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sessions::{sample_user, Caller};

    fn signed_in_at(at: DateTime<Utc>) -> Identity {
        let user = sample_user();
        Identity::User(Caller {
            user_id: user.id,
            session_id: Uuid::new_v4(),
            roles: vec![role::USER.into()].into(),
            user: Arc::new(user),
            authenticated_at: at,
        })
    }

    #[test]
    fn a_session_is_fresh_for_the_window_and_not_a_second_longer() {
        let (now, window) = (Utc::now(), Duration::seconds(300));
        let fresh = FreshSession::judge(&signed_in_at(now - window), now, window);
        assert!(fresh.is_ok());
        let stale = FreshSession::judge(&signed_in_at(now - window - Duration::seconds(1)), now, window);
        assert!(matches!(stale, Err(AppError::ReauthenticationRequired)));
        assert_eq!(AppError::ReauthenticationRequired.code(), "REAUTHENTICATION_REQUIRED");
        let anonymous = FreshSession::judge(&Identity::Anonymous, now, window);
        assert!(matches!(anonymous, Err(AppError::Unauthenticated)));
    }
}
