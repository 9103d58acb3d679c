//! Passkeys (API.md §8): WebAuthn through `webauthn-rs`, user verification required. A passkey
//! signs in on its own, without password or second factor. Registration, removal and the
//! relying party live here; sign-in in `login`, the stored ceremonies in `ceremony`.

mod ceremony;
mod login;

use chrono::{DateTime, Utc};
use entity::{passkey, passkey_ceremony, user};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;
use webauthn_rs::fake::{FakePasskeyDistribution, WebauthnFakeCredentialGenerator};
use webauthn_rs::prelude::{
    CredentialID, PasskeyRegistration, RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use crate::client::ClientInfo;
use crate::domain::audit::{self, Event, Kind};
use crate::error::{on_unique, AppError};
use crate::sessions::{begin_write, SessionStore};
use ceremony::{from_text, open_ceremony, take, to_text, REGISTRATION};
pub use login::{finish_login, start_login};

const MAX_NAME_CHARS: usize = 64;

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

/// Starts a registration for `user`: PublicKeyCredentialCreationOptions (`{"publicKey": ...}`)
/// for `navigator.credentials.create`. Starting again replaces a registration not finished.
pub async fn start_registration(
    db: &DatabaseConnection,
    rp: &RelyingParty,
    user: &user::Model,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, AppError> {
    let txn = begin_write(db).await?;
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
    let txn = begin_write(store.db()).await?;
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
    let txn = begin_write(db).await?;
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

pub(super) async fn credential_ids(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<CredentialID>, AppError> {
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

pub(super) fn webauthn_failure(e: webauthn_rs::prelude::WebauthnError) -> AppError {
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
}
