//! Passkeys (API.md §8): registration from a fresh session, sign-in without a password, removal.
//! The WebAuthn work is `domain::passkey`'s.

use async_graphql::{Context, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::passkey as passkey_row;
use uuid::Uuid;

use crate::domain::account::EmailPolicy;
use crate::domain::passkey;
use crate::graphql::account::start_session;
use crate::graphql::guard::{FreshSession, RequireRole};
use crate::graphql::types::AuthPayload;
use crate::graphql::ContextExt;

pub struct Passkey {
    row: passkey_row::Model,
}

impl Passkey {
    pub fn new(row: passkey_row::Model) -> Self {
        Passkey { row }
    }
}

/// A passkey (WebAuthn credential) of a user; it signs in without password or second factor.
#[Object]
impl Passkey {
    /// The passkey's id (`removePasskey` takes it).
    async fn id(&self) -> Uuid {
        self.row.id
    }

    /// The name given at registration, such as "laptop".
    async fn name(&self) -> &str {
        &self.row.name
    }

    /// When it was registered.
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }

    /// When it last signed in; null until it has.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.row.last_used_at
    }
}

/// A passkey sign-in in progress.
#[derive(SimpleObject)]
pub struct PasskeyChallenge {
    /// Single-use ticket for `finishPasskeyLogin`, valid 5 minutes.
    pub challenge: String,
    /// PublicKeyCredentialRequestOptions as `{"publicKey": {...}}`, binary fields in base64url, for
    /// `navigator.credentials.get`.
    pub options: Json<serde_json::Value>,
}

/// The answer to `startPasskeyRegistration`.
#[derive(InputObject)]
pub struct FinishPasskeyRegistrationInput {
    /// A name for the passkey, 1 to 64 characters, such as "laptop".
    pub name: String,
    /// What `navigator.credentials.create` returned, as JSON (binary fields in base64url).
    pub credential: Json<serde_json::Value>,
}

/// The answer to `startPasskeyLogin`.
#[derive(InputObject)]
pub struct FinishPasskeyLoginInput {
    /// `challenge` of the PasskeyChallenge.
    pub challenge: String,
    /// What `navigator.credentials.get` returned, as JSON (binary fields in base64url).
    pub credential: Json<serde_json::Value>,
}

#[derive(Default)]
pub struct PasskeyMutation;

#[Object]
impl PasskeyMutation {
    /// Starts registering a passkey: PublicKeyCredentialCreationOptions as `{"publicKey": {...}}` (binary fields
    /// in base64url) for `navigator.credentials.create`; `finishPasskeyRegistration` takes the answer within 5
    /// minutes. Starting again replaces a registration not finished. Needs a fresh session.
    #[graphql(guard = "RequireRole::user().and(FreshSession)")]
    async fn start_passkey_registration(&self, ctx: &Context<'_>) -> Result<Json<serde_json::Value>> {
        let (state, caller) = (ctx.state(), ctx.caller()?);
        let options = passkey::start_registration(&state.db, &state.passkeys, &caller.user, state.clock.now()).await?;
        Ok(Json(options))
    }

    /// Finishes the registration started last and stores the passkey. A credential that does not answer it is
    /// BAD_USER_INPUT on `credential`; one already registered is CONFLICT.
    #[graphql(guard = "RequireRole::user()")]
    async fn finish_passkey_registration(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The passkey's name and the browser's answer.")] input: FinishPasskeyRegistrationInput,
    ) -> Result<Passkey> {
        let (state, caller) = (ctx.state(), ctx.caller()?);
        let row = passkey::finish_registration(
            &state.sessions,
            &state.passkeys,
            &caller.user,
            &input.name,
            input.credential.0,
            ctx.client(),
        )
        .await?;
        Ok(Passkey::new(row))
    }

    /// Starts a passkey sign-in. With a username, that account's passkeys are offered; without one, any passkey
    /// of this site may answer (discoverable credentials). The answer looks the same whether or not the account
    /// exists.
    async fn start_passkey_login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account to sign in to; omit it to let the authenticator choose.")] username: Option<
            String,
        >,
    ) -> Result<PasskeyChallenge> {
        let state = ctx.state();
        let (challenge, options) =
            passkey::start_login(&state.db, &state.passkeys, username.as_deref(), state.clock.now()).await?;
        Ok(PasskeyChallenge {
            challenge,
            options: Json(options),
        })
    }

    /// Signs in with a passkey (token returned and set as cookie); no password or second factor is asked. An
    /// unknown, used or expired challenge is BAD_USER_INPUT on `challenge`; a credential that does not verify is
    /// UNAUTHENTICATED and counts as a failed login. With REQUIRE_VERIFIED_EMAIL, an unverified address is
    /// EMAIL_NOT_VERIFIED and a fresh link is mailed.
    async fn finish_passkey_login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The challenge and the browser's answer.")] input: FinishPasskeyLoginInput,
    ) -> Result<AuthPayload> {
        let state = ctx.state();
        let (mail, required) = state.email_policy();
        let signed_in = passkey::finish_login(
            &state.sessions,
            &state.limiter,
            &state.passkeys,
            EmailPolicy { mail: &mail, required },
            &input.challenge,
            input.credential.0,
            ctx.client(),
        )
        .await?;
        Ok(start_session(ctx, signed_in))
    }

    /// Removes one of the caller's passkeys; another id is NOT_FOUND. Needs a fresh session.
    #[graphql(guard = "RequireRole::user().and(FreshSession)")]
    async fn remove_passkey(&self, ctx: &Context<'_>, #[graphql(desc = "The passkey's id.")] id: Uuid) -> Result<bool> {
        let (state, caller) = (ctx.state(), ctx.caller()?);
        passkey::remove(&state.db, caller.user_id, id, ctx.client(), state.clock.now()).await?;
        Ok(true)
    }
}
