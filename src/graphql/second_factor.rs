//! Second factors (API.md §8): TOTP enrolment, confirmation and removal, and finishing a
//! login that answered `SECOND_FACTOR_REQUIRED`.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use crate::domain::account;
use crate::domain::second_factor::{self, Proof};
use crate::error::AppError;
use crate::graphql::account::start_session;
use crate::graphql::guard::{FreshSession, RequireRole};
use crate::graphql::types::AuthPayload;
use crate::graphql::ContextExt;

/// A TOTP secret being enrolled: type `secret` into an authenticator app or show `uri` as a QR code.
#[derive(SimpleObject)]
pub struct TotpEnrollment {
    /// The secret, base32.
    pub secret: String,
    /// An `otpauth://totp/...` URI holding the secret, for a QR code.
    pub uri: String,
}

/// The challenge of a login that needs a second factor, and exactly one of `code` and `recoveryCode`.
#[derive(InputObject)]
pub struct VerifySecondFactorInput {
    /// `extensions.challenge` of the SECOND_FACTOR_REQUIRED error.
    pub challenge: String,
    /// The current code of the authenticator app.
    pub code: Option<String>,
    /// One of the recovery codes, each usable once.
    pub recovery_code: Option<String>,
}

/// Exactly one of a code and a recovery code, as a proof.
pub(crate) fn proof<'a>(code: &'a Option<String>, recovery_code: &'a Option<String>) -> Result<Proof<'a>, AppError> {
    match (code, recovery_code) {
        (Some(code), None) => Ok(Proof::Code(code)),
        (None, Some(recovery_code)) => Ok(Proof::RecoveryCode(recovery_code)),
        _ => Err(AppError::bad_input(
            "input",
            "give exactly one of code and recoveryCode",
        )),
    }
}

#[derive(Default)]
pub struct SecondFactorMutation;

#[Object]
impl SecondFactorMutation {
    /// Starts TOTP enrolment with a new secret; `confirmTotpEnrollment` turns it on. Needs a fresh session.
    #[graphql(guard = "RequireRole::user().and(FreshSession)")]
    async fn start_totp_enrollment(&self, ctx: &Context<'_>) -> Result<TotpEnrollment> {
        let (state, caller) = (ctx.state(), ctx.caller()?);
        let enrollment =
            second_factor::start_enrollment(&state.db, &state.sealing, &caller.user, state.clock.now()).await?;
        Ok(TotpEnrollment {
            secret: enrollment.secret,
            uri: enrollment.uri,
        })
    }

    /// Turns TOTP on with a code from the enrolment just started; returns 10 single-use recovery codes, shown
    /// only now. A wrong code is BAD_USER_INPUT on `code`.
    #[graphql(guard = "RequireRole::user()")]
    async fn confirm_totp_enrollment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The current code of the authenticator app.")] code: String,
    ) -> Result<Vec<String>> {
        let (state, caller) = (ctx.state(), ctx.caller()?);
        let codes =
            second_factor::confirm_enrollment(&state.sessions, &state.sealing, &caller.user, &code, ctx.client())
                .await?;
        Ok(codes)
    }

    /// Turns TOTP off (recovery codes go with it); false when it was not on. Needs a fresh session.
    #[graphql(guard = "RequireRole::user().and(FreshSession)")]
    async fn disable_totp(&self, ctx: &Context<'_>) -> Result<bool> {
        let caller = ctx.caller()?;
        let state = ctx.state();
        Ok(second_factor::disable(&state.sessions, caller.user_id, caller.user_id, ctx.client()).await?)
    }

    /// Finishes a login that answered SECOND_FACTOR_REQUIRED: the challenge and a code (or a recovery code)
    /// open the session. A wrong code counts as a failed login of the user.
    async fn verify_second_factor(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The challenge and exactly one of code and recoveryCode.")] input: VerifySecondFactorInput,
    ) -> Result<AuthPayload> {
        let state = ctx.state();
        let proof = proof(&input.code, &input.recovery_code)?;
        let signed_in = second_factor::verify_login(
            &state.sessions,
            &state.limiter,
            &state.sealing,
            &input.challenge,
            proof,
            ctx.client(),
        )
        .await?;
        Ok(start_session(ctx, signed_in))
    }
}

/// `reauthenticate`'s credential: the password, or a second factor.
pub(crate) fn credential<'a>(
    password: &'a Option<String>,
    code: &'a Option<String>,
    recovery_code: &'a Option<String>,
) -> Result<account::Credential<'a>, AppError> {
    match (password, code, recovery_code) {
        (Some(password), None, None) => Ok(account::Credential::Password(password)),
        (None, Some(_), None) | (None, None, Some(_)) => Ok(account::Credential::Factor(proof(code, recovery_code)?)),
        _ => Err(AppError::bad_input(
            "input",
            "give exactly one of password, code and recoveryCode",
        )),
    }
}
