//! Passkeys (API.md §8): WebAuthn registration and sign-in through `webauthn-rs`, user
//! verification required. A passkey signs in on its own, without password or second factor.
//!
//! Each ceremony's state is kept in `passkey_ceremonies` under the SHA-256 of a single-use
//! ticket, so a finish may reach any instance; a finish takes its ceremony before checking
//! anything, so every challenge is answered at most once. The stored credential is rewritten
//! after each sign-in, and a sign-in is checked against the row as it is at the finish, so
//! the signature counter cannot go back.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use entity::{passkey, passkey_ceremony, user};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::fake::{FakePasskeyDistribution, WebauthnFakeCredentialGenerator};
use webauthn_rs::prelude::{
    CredentialID, DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::{AllowCredentials, ResidentKeyRequirement};

use crate::auth::token::secret_hash;
use crate::client::ClientInfo;
use crate::domain::account::{self, SignedIn};
use crate::domain::audit::{self, Event, Kind};
use crate::domain::rate_limit::{Action, RateLimiter};
use crate::error::{on_unique, AppError};
use crate::sessions::SessionStore;

/// How long a started registration or sign-in waits for its finish, as a TOTP login does.
const CEREMONY_MINUTES: i64 = 5;
const MAX_NAME_CHARS: usize = 64;
const REGISTRATION: &str = "registration";
const LOGIN: &str = "login";

/// The relying party: `WEBAUTHN_RP_ID` and `WEBAUTHN_ORIGIN`, and the key that makes up
/// credential ids for names without passkeys.
pub struct RelyingParty {
    webauthn: Webauthn,
    decoys: WebauthnFakeCredentialGenerator<FakePasskeyDistribution>,
}

/// Checks the settings as `webauthn-rs` will use them: the origin is a URL and the RP id is
/// its host or a parent domain of it.
pub fn relying_party(rp_id: &str, origin: &str) -> Result<Webauthn, String> {
    let url = Url::parse(origin).map_err(|_| format!("WEBAUTHN_ORIGIN `{origin}` is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.path() != "/" || url.query().is_some() {
        return Err(format!(
            "WEBAUTHN_ORIGIN `{origin}` must be an origin like https://app.example.com"
        ));
    }
    // webauthn-rs's own rule, checked first so that a refusal is our one line and not its log.
    let bound = url
        .domain()
        .is_some_and(|host| host == rp_id || host.ends_with(&format!(".{rp_id}")));
    let wrong_rp_id =
        || format!("WEBAUTHN_RP_ID `{rp_id}` must be the host name of WEBAUTHN_ORIGIN or a parent domain of it");
    if !bound {
        return Err(wrong_rp_id());
    }
    WebauthnBuilder::new(rp_id, &url)
        .and_then(WebauthnBuilder::build)
        .map_err(|_| wrong_rp_id())
}

impl RelyingParty {
    /// `decoy_key` is a secret kept by the server: whoever knows it could tell made-up
    /// credential ids from real ones.
    pub fn new(rp_id: &str, origin: &str, decoy_key: &[u8]) -> anyhow::Result<Self> {
        Ok(RelyingParty {
            webauthn: relying_party(rp_id, origin).map_err(anyhow::Error::msg)?,
            decoys: WebauthnFakeCredentialGenerator::new(decoy_key)
                .map_err(|e| anyhow::anyhow!("passkey decoy key: {e}"))?,
        })
    }
}

/// What a sign-in ceremony remembers between start and finish.
#[derive(Serialize, Deserialize)]
struct LoginState {
    /// The name given at the start (failures count against it), if any.
    username: Option<String>,
    /// The account whose passkeys were offered; `None` with a username: made-up ids were.
    user_id: Option<Uuid>,
    state: DiscoverableAuthentication,
}

/// Starts a registration for `user`: PublicKeyCredentialCreationOptions (`{"publicKey": ...}`)
/// for `navigator.credentials.create`. Starting again replaces a registration not finished.
pub async fn start_registration(
    db: &DatabaseConnection,
    rp: &RelyingParty,
    user: &user::Model,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, AppError> {
    let txn = db.begin().await?;
    // The authenticator refuses to make a second passkey for an account it already holds one of.
    let existing = credential_ids(&txn, user.id).await?;
    let display_name = user.name.as_deref().unwrap_or(&user.username);
    let (mut options, state) = rp
        .webauthn
        .start_passkey_registration(user.id, &user.username, display_name, Some(existing))
        .map_err(webauthn_failure)?;
    // Ask for a discoverable credential where the authenticator can keep one, so that
    // `startPasskeyLogin` without a username finds it; one that cannot still registers.
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(ResidentKeyRequirement::Preferred);
    }
    passkey_ceremony::Entity::delete_many()
        .filter(passkey_ceremony::Column::UserId.eq(user.id))
        .filter(passkey_ceremony::Column::Kind.eq(REGISTRATION))
        .exec(&txn)
        .await?;
    open_ceremony(&txn, Some(user.id), REGISTRATION, to_text(&state)?, now).await?;
    txn.commit().await?;
    serde_json::to_value(options).map_err(|e| AppError::Internal(e.into()))
}

/// Finishes the registration `user` started with what `navigator.credentials.create`
/// returned; the new passkey is named `name`.
pub async fn finish_registration(
    store: &SessionStore,
    rp: &RelyingParty,
    user: &user::Model,
    name: &str,
    credential: serde_json::Value,
    client: &ClientInfo,
) -> Result<passkey::Model, AppError> {
    let name = check_name(name)?;
    let response: RegisterPublicKeyCredential = serde_json::from_value(credential)
        .map_err(|_| AppError::bad_input("credential", "credential is not a WebAuthn registration response"))?;
    let now = store.now();
    let pending = passkey_ceremony::Entity::find()
        .filter(passkey_ceremony::Column::UserId.eq(user.id))
        .filter(passkey_ceremony::Column::Kind.eq(REGISTRATION))
        .filter(passkey_ceremony::Column::ExpiresAt.gt(now))
        .one(store.db())
        .await?;
    let no_registration = || AppError::bad_input("credential", "no passkey registration is waiting: start one first");
    let ceremony = take(store.db(), pending).await?.ok_or_else(no_registration)?;
    let state: PasskeyRegistration = from_text(&ceremony.state)?;
    let passkey = rp
        .webauthn
        .finish_passkey_registration(&response, &state)
        .map_err(|e| {
            tracing::info!(error = %e, "passkey registration refused");
            AppError::bad_input("credential", "the credential does not answer the registration")
        })?;
    let row = passkey::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user.id),
        name: Set(name.clone()),
        credential_id: Set(passkey.cred_id().to_vec()),
        credential: Set(to_text(&passkey)?),
        created_at: Set(now),
        last_used_at: Set(None),
    };
    let txn = store.db().begin().await?;
    let row = passkey::Entity::insert(row)
        .exec_with_returning(&txn)
        .await
        .map_err(on_unique(&["credential"]))?;
    let added = Event::own(Kind::PasskeyAdded, user.id, client)
        .with_detail(serde_json::json!({ "passkeyId": row.id, "name": name }));
    audit::record(&txn, now, added).await?;
    txn.commit().await?;
    Ok(row)
}

/// Removes one of the user's passkeys; `NotFound` for any id that is not theirs.
pub async fn remove(
    db: &DatabaseConnection,
    user_id: Uuid,
    passkey_id: Uuid,
    client: &ClientInfo,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let txn = db.begin().await?;
    let row = passkey::Entity::find_by_id(passkey_id)
        .filter(passkey::Column::UserId.eq(user_id))
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound)?;
    let removed = passkey::Entity::delete_by_id(row.id).exec(&txn).await?;
    if removed.rows_affected != 1 {
        return Err(AppError::NotFound);
    }
    let event = Event::own(Kind::PasskeyRemoved, user_id, client)
        .with_detail(serde_json::json!({ "passkeyId": row.id, "name": row.name }));
    audit::record(&txn, now, event).await?;
    txn.commit().await?;
    Ok(())
}

/// The passkeys of `user_ids`, oldest first.
pub async fn of_users(conn: &impl ConnectionTrait, user_ids: &[Uuid]) -> Result<Vec<passkey::Model>, AppError> {
    Ok(passkey::Entity::find()
        .filter(passkey::Column::UserId.is_in(user_ids.iter().copied()))
        .order_by_asc(passkey::Column::CreatedAt)
        .order_by_asc(passkey::Column::Id)
        .all(conn)
        .await?)
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
    let txn = db.begin().await?;
    let ticket = open_ceremony(&txn, user_id, LOGIN, to_text(&remembered)?, now).await?;
    txn.commit().await?;
    let options = serde_json::to_value(options).map_err(|e| AppError::Internal(e.into()))?;
    Ok((ticket, options))
}

/// Finishes a sign-in with what `navigator.credentials.get` returned, opening a session. A
/// credential that does not verify is `InvalidCredentials` and counts as a failed login
/// (of the account, when it is known).
pub async fn finish_login(
    store: &SessionStore,
    limiter: &RateLimiter,
    rp: &RelyingParty,
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
        return Err(failed(store, None, client).await);
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
    if let Err(e) = audit::record(store.db(), store.now(), event).await {
        return e;
    }
    metrics::counter!(crate::telemetry::LOGIN_FAILURES).increment(1);
    AppError::InvalidCredentials
}

fn check_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "name",
            format!("name must be 1 to {MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

async fn credential_ids(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<CredentialID>, AppError> {
    let ids: Vec<Vec<u8>> = passkey::Entity::find()
        .select_only()
        .column(passkey::Column::CredentialId)
        .filter(passkey::Column::UserId.eq(user_id))
        .order_by_asc(passkey::Column::CreatedAt)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(ids.into_iter().map(CredentialID::from).collect())
}

/// Stores a ceremony; returns its ticket. Expired ceremonies of anyone go with each new one.
async fn open_ceremony(
    conn: &impl ConnectionTrait,
    user_id: Option<Uuid>,
    kind: &str,
    state: String,
    now: DateTime<Utc>,
) -> Result<String, AppError> {
    let ticket = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let row = passkey_ceremony::ActiveModel {
        ticket_hash: Set(secret_hash(&ticket)),
        user_id: Set(user_id),
        kind: Set(kind.to_owned()),
        state: Set(state),
        expires_at: Set(now + Duration::minutes(CEREMONY_MINUTES)),
    };
    passkey_ceremony::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    passkey_ceremony::Entity::delete_many()
        .filter(passkey_ceremony::Column::ExpiresAt.lte(now))
        .exec(conn)
        .await?;
    Ok(ticket)
}

/// Deletes the ceremony found; `None` when there was none or a racing finish took it first.
async fn take(
    conn: &impl ConnectionTrait,
    found: Option<passkey_ceremony::Model>,
) -> Result<Option<passkey_ceremony::Model>, AppError> {
    let Some(ceremony) = found else {
        return Ok(None);
    };
    let taken = passkey_ceremony::Entity::delete_by_id(ceremony.ticket_hash.clone())
        .exec(conn)
        .await?;
    Ok((taken.rows_affected == 1).then_some(ceremony))
}

fn to_text(value: &impl Serialize) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(|e| AppError::Internal(e.into()))
}

fn from_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, AppError> {
    serde_json::from_str(text).map_err(|e| AppError::Internal(anyhow::anyhow!("stored passkey state: {e}")))
}

fn webauthn_failure(e: webauthn_rs::prelude::WebauthnError) -> AppError {
    AppError::Internal(anyhow::anyhow!("webauthn: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rp_id_must_be_the_origin_host_or_a_parent_of_it() {
        assert!(relying_party("localhost", "http://localhost:8080").is_ok());
        assert!(relying_party("example.com", "https://app.example.com").is_ok());
        for (rp_id, origin) in [
            ("example.com", "https://example.org"),
            ("app.example.com", "https://example.com"),
            ("localhost", "not a url"),
            ("localhost", "ftp://localhost"),
            ("localhost", "http://localhost:8080/path"),
            ("127.0.0.1", "http://127.0.0.1:8080"),
            ("ample.com", "https://example.com"),
        ] {
            assert!(relying_party(rp_id, origin).is_err(), "{rp_id} {origin}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("  laptop ").unwrap(), "laptop");
        for bad in ["", "   ", "tab\there", &"x".repeat(MAX_NAME_CHARS + 1)] {
            assert!(
                matches!(check_name(bad), Err(AppError::BadUserInput { field: "name", .. })),
                "{bad:?}"
            );
        }
    }

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
