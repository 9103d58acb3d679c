//! Passkey sign-in: by username (that account's passkeys are offered) or without one
//! (discoverable credentials, the user handle names the account). A sign-in is checked
//! against the stored credential as it is at the finish, and the credential is rewritten by
//! compare-and-set, so the signature counter cannot go back, even between racing sign-ins.

use chrono::{DateTime, Utc};
use entity::{passkey, passkey_ceremony};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{DiscoverableAuthentication, DiscoverableKey, Passkey, PublicKeyCredential};
use webauthn_rs_proto::AllowCredentials;

use super::ceremony::{from_text, open_ceremony, take, to_text, LOGIN};
use super::{credential_ids, webauthn_failure, RelyingParty};
use crate::auth::token::secret_hash;
use crate::client::ClientInfo;
use crate::domain::account::{self, EmailPolicy, SignedIn};
use crate::domain::audit::{self, Event, Kind};
use crate::domain::rate_limit::{Action, RateLimiter};
use crate::domain::verification;
use crate::error::AppError;
use crate::sessions::{begin_write, SessionStore};

/// What a sign-in ceremony remembers between start and finish.
#[derive(Serialize, Deserialize)]
struct LoginState {
    /// The name given at the start (failures count against it), if any.
    username: Option<String>,
    /// The account whose passkeys were offered; `None` with a username: made-up ids were.
    user_id: Option<Uuid>,
    state: DiscoverableAuthentication,
}

/// Starts a sign-in: the ticket for `finishPasskeyLogin` and PublicKeyCredentialRequestOptions
/// (`{"publicKey": ...}`) for `navigator.credentials.get`. With a username, its passkeys are
/// offered; a name with none (unknown, or an account without passkeys) gets ids made up from
/// it, the same ones each time, so the answer does not tell which names have accounts.
/// Without a username, any passkey of this relying party may answer (discoverable credentials).
pub async fn start_login(
    db: &DatabaseConnection,
    rp: &RelyingParty,
    username: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(String, serde_json::Value), AppError> {
    let (mut options, state) = rp
        .webauthn
        .start_discoverable_authentication()
        .map_err(webauthn_failure)?;
    // webauthn-rs asks for conditional mediation (autofill); the page chooses how to ask.
    options.mediation = None;
    let (user_id, offered) = match username {
        None => (None, Vec::new()),
        Some(name) => {
            let user = account::find_by_username(db, name).await?;
            let ids = match &user {
                Some(user) => credential_ids(db, user.id).await?,
                None => Vec::new(),
            };
            match (user, ids.is_empty()) {
                (Some(user), false) => (Some(user.id), ids),
                _ => (
                    None,
                    rp.decoys
                        .generate(name.to_lowercase().as_bytes())
                        .map_err(webauthn_failure)?,
                ),
            }
        }
    };
    options.public_key.allow_credentials = offered
        .into_iter()
        .map(|id| AllowCredentials {
            type_: "public-key".into(),
            id: id.to_vec().into(),
            transports: None,
        })
        .collect();
    let remembered = LoginState {
        username: username.map(str::to_owned),
        user_id,
        state,
    };
    let txn = begin_write(db).await?;
    let ticket = open_ceremony(&txn, user_id, LOGIN, to_text(&remembered)?, now).await?;
    txn.commit().await?;
    let options = serde_json::to_value(options).map_err(|e| AppError::Internal(e.into()))?;
    Ok((ticket, options))
}

/// Finishes a sign-in with what `navigator.credentials.get` returned, opening a session. A
/// credential that does not verify is `InvalidCredentials` and counts as a failed login
/// (of the account, when it is known). With verified addresses required, an account whose
/// address is not verified gets `EmailNotVerified` and a fresh link, as after a right password.
pub async fn finish_login(
    store: &SessionStore,
    limiter: &RateLimiter,
    rp: &RelyingParty,
    email_policy: EmailPolicy<'_>,
    ticket: &str,
    credential: serde_json::Value,
    client: &ClientInfo,
) -> Result<SignedIn, AppError> {
    let response: PublicKeyCredential = serde_json::from_value(credential)
        .map_err(|_| AppError::bad_input("credential", "credential is not a WebAuthn authentication response"))?;
    let now = store.now();
    let found = passkey_ceremony::Entity::find_by_id(secret_hash(ticket))
        .filter(passkey_ceremony::Column::Kind.eq(LOGIN))
        .filter(passkey_ceremony::Column::ExpiresAt.gt(now))
        .one(store.db())
        .await?;
    let invalid = || AppError::bad_input("challenge", "the challenge is unknown, used or expired");
    let ceremony = take(store.db(), found).await?.ok_or_else(invalid)?;
    let LoginState {
        username,
        user_id,
        state,
    } = from_text(&ceremony.state)?;

    let stored = passkey::Entity::find()
        .filter(passkey::Column::CredentialId.eq(response.raw_id.to_vec()))
        .one(store.db())
        .await?;
    // The passkey must belong to the account the ceremony was for: the one named at the start,
    // or, without a name, the one the authenticator's user handle names.
    let stored = match (&username, user_id) {
        (Some(_), Some(user_id)) => stored.filter(|p| p.user_id == user_id),
        (Some(_), None) => None,
        (None, _) => {
            let handle = rp.webauthn.identify_discoverable_authentication(&response).ok();
            stored.filter(|p| handle.is_some_and(|(owner, _)| owner == p.user_id))
        }
    };
    let user = match &stored {
        Some(p) => account::find(store.db(), p.user_id).await?,
        None => None,
    };
    let counted_name = user.as_ref().map(|u| u.username.as_str()).or(username.as_deref());
    let attempt = limiter.admit(Action::Login, counted_name, client.ip).await?;
    let (Some(stored), Some(user)) = (stored, user) else {
        // As for a password login, a failure for an existing name has that account as subject.
        let named = match (user_id, &username) {
            (Some(user_id), _) => Some(user_id),
            (None, Some(name)) => account::find_by_username(store.db(), name).await?.map(|u| u.id),
            (None, None) => None,
        };
        return Err(failed(store, named, client).await);
    };

    let mut passkey: Passkey = from_text(&stored.credential)?;
    let verified = rp
        .webauthn
        .finish_discoverable_authentication(&response, state, &[DiscoverableKey::from(&passkey)]);
    let result = match verified {
        Ok(result) => result,
        Err(e) => {
            tracing::info!(error = %e, passkey = %stored.id, "passkey sign-in refused");
            return Err(failed(store, Some(user.id), client).await);
        }
    };
    passkey.update_credential(&result);
    let mut change = store.begin().await?;
    // Compare-and-set on the credential as verified: of two sign-ins racing with the same
    // stored counter, one finds it changed and fails.
    let updated = passkey::Entity::update_many()
        .col_expr(passkey::Column::Credential, Expr::value(to_text(&passkey)?))
        .col_expr(passkey::Column::LastUsedAt, Expr::value(now))
        .filter(passkey::Column::Id.eq(stored.id))
        .filter(passkey::Column::Credential.eq(stored.credential.as_str()))
        .exec(change.txn())
        .await?;
    if updated.rows_affected != 1 {
        drop(change);
        return Err(failed(store, Some(user.id), client).await);
    }
    attempt.succeeded_in(change.txn()).await?;
    if email_policy.required && !verification::is_verified(&user) {
        // The credential was used (its counter is kept) but no session opens.
        change.commit().await?;
        verification::send_in_background(store, limiter, email_policy.mail, user);
        return Err(AppError::EmailNotVerified);
    }
    let session = change.open(user.id, client).await?;
    let login = Event::own(Kind::Login, user.id, client)
        .with_detail(serde_json::json!({ "method": "passkey", "passkeyId": stored.id }));
    audit::record(change.txn(), now, login).await?;
    change.commit().await?;
    let roles = session.roles.clone();
    Ok(SignedIn { user, roles, session })
}

/// Records a refused passkey sign-in (its attempt stays counted) and returns the error.
async fn failed(store: &SessionStore, subject: Option<Uuid>, client: &ClientInfo) -> AppError {
    let event = Event {
        kind: Kind::LoginFailed,
        actor: None,
        subject,
        client,
        detail: Some(serde_json::json!({ "method": "passkey" })),
    };
    match audit::record_refused(store, event).await {
        Ok(()) => AppError::InvalidCredentials,
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoy_ids_are_the_same_for_a_name_each_time_and_differ_by_key() {
        let rp = RelyingParty::new("localhost", "http://localhost:8080", b"0123456789abcdef").unwrap();
        let other = RelyingParty::new("localhost", "http://localhost:8080", b"fedcba9876543210").unwrap();
        let name = b"someone_without_passkeys";
        assert_eq!(rp.decoys.generate(name).unwrap(), rp.decoys.generate(name).unwrap());
        let ids = rp.decoys.generate(name).unwrap();
        assert!(ids.is_empty() || ids != other.decoys.generate(name).unwrap());
    }
}
