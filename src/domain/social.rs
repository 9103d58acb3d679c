//! Social login (API.md §8): the sign-in attempts under way, what a verified provider identity
//! signs in to (a linked account, or a new one), linking and unlinking, and the single-use
//! login codes. The protocol itself is `crate::oidc`'s.

use chrono::{DateTime, Duration, Utc};
use entity::{identity, login_code, oidc_flow, user};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::auth::seal::SealingKey;
use crate::auth::token::{new_secret, secret_hash};
use crate::client::ClientInfo;
use crate::domain::account::{self, NewAccount, SignedIn};
use crate::domain::audit::{self, Event, Kind};
use crate::domain::verification;
use crate::error::{on_unique, AppError};
use crate::sessions::SessionStore;

/// How long a user has to finish signing in at the provider.
const FLOW_MINUTES: i64 = 10;
/// API.md §8: a login code is valid 60 seconds.
const LOGIN_CODE_SECONDS: i64 = 60;
/// Numbered variants of a taken username tried before a random suffix.
const NUMBERED_USERNAMES: u32 = 20;
/// Room kept for a `-NN` or random suffix within the 64-character username limit.
const USERNAME_BASE_CHARS: usize = 54;
/// Lost races for a username before giving up.
const SIGNUP_ATTEMPTS: usize = 3;

/// What a provider vouched for in a verified ID token.
#[derive(Clone, Debug)]
pub struct ProviderIdentity {
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
}

/// A sign-in attempt being started.
pub struct NewFlow<'a> {
    pub provider: &'a str,
    pub state: &'a str,
    pub pkce_verifier: &'a str,
    pub nonce: &'a str,
    pub return_to: &'a str,
    pub link_user_id: Option<Uuid>,
}

/// A sign-in attempt taken back by its callback.
pub struct Flow {
    pub pkce_verifier: String,
    pub nonce: String,
    pub return_to: String,
    pub link_user_id: Option<Uuid>,
}

/// Why a verified identity signs nobody in; `code()` is the `?error=` value.
#[derive(Debug)]
pub enum Refusal {
    /// No account is linked and `OIDC_SIGNUP=false`.
    SignupClosed,
    /// `REQUIRE_VERIFIED_EMAIL` is on and no verified address comes with the account.
    EmailNotVerified,
    /// Linking: the identity belongs to another account.
    IdentityInUse,
    /// Linking: the account has another identity at this provider.
    AlreadyLinked,
    /// The account to link to is gone.
    AccountGone,
    Failed(AppError),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::SignupClosed => "signup_disabled",
            Refusal::EmailNotVerified => "email_not_verified",
            Refusal::IdentityInUse => "identity_in_use",
            Refusal::AlreadyLinked => "already_linked",
            Refusal::AccountGone => "unauthenticated",
            Refusal::Failed(_) => "server_error",
        }
    }
}

impl From<AppError> for Refusal {
    fn from(e: AppError) -> Self {
        Refusal::Failed(e)
    }
}

/// Records a sign-in attempt under the hash of its `state`; the PKCE verifier is sealed.
pub async fn save_flow(
    conn: &impl ConnectionTrait,
    sealing: &SealingKey,
    flow: NewFlow<'_>,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let row = oidc_flow::ActiveModel {
        state_hash: Set(secret_hash(flow.state)),
        provider: Set(flow.provider.to_owned()),
        sealed_verifier: Set(sealing.seal(flow.pkce_verifier.as_bytes())),
        nonce: Set(flow.nonce.to_owned()),
        return_to: Set(flow.return_to.to_owned()),
        link_user_id: Set(flow.link_user_id),
        expires_at: Set(now + Duration::minutes(FLOW_MINUTES)),
    };
    oidc_flow::Entity::insert(row).exec_without_returning(conn).await?;
    // Abandoned attempts of anyone go with each new one, so the table stays small.
    oidc_flow::Entity::delete_many()
        .filter(oidc_flow::Column::ExpiresAt.lte(now))
        .exec(conn)
        .await?;
    Ok(())
}

/// Takes the attempt `state` names at `provider`, once: `None` when unknown, used, expired or
/// started at another provider.
pub async fn take_flow(
    conn: &impl ConnectionTrait,
    sealing: &SealingKey,
    provider: &str,
    state: &str,
    now: DateTime<Utc>,
) -> Result<Option<Flow>, AppError> {
    let state_hash = secret_hash(state);
    let Some(row) = oidc_flow::Entity::find_by_id(state_hash.clone()).one(conn).await? else {
        return Ok(None);
    };
    // Deleting is the claim: of two racing callbacks, one finds the row gone.
    let taken = oidc_flow::Entity::delete_by_id(state_hash).exec(conn).await?;
    if taken.rows_affected != 1 || row.expires_at <= now || row.provider != provider {
        return Ok(None);
    }
    let Some(verifier) = sealing
        .open(&row.sealed_verifier)
        .and_then(|v| String::from_utf8(v).ok())
    else {
        return Ok(None);
    };
    Ok(Some(Flow {
        pkce_verifier: verifier,
        nonce: row.nonce,
        return_to: row.return_to,
        link_user_id: row.link_user_id,
    }))
}

/// Signs in the account linked to the identity, or creates one (role `user`, no usable
/// password) when `signup` allows. An account holding the same address is never taken over:
/// the new account then goes without an address.
pub async fn sign_in(
    store: &SessionStore,
    verified_email_required: bool,
    signup: bool,
    who: &ProviderIdentity,
    client: &ClientInfo,
) -> Result<SignedIn, Refusal> {
    for _ in 0..SIGNUP_ATTEMPTS {
        match find_identity(store.db(), &who.provider, &who.subject).await? {
            Some(linked) => return sign_in_linked(store, verified_email_required, who, linked, client).await,
            None if !signup => return Err(Refusal::SignupClosed),
            None => match create_account(store, verified_email_required, who, client).await {
                // A username or the identity was taken meanwhile: look again.
                Err(Refusal::Failed(AppError::Conflict { .. })) => continue,
                other => return other,
            },
        }
    }
    Err(Refusal::Failed(
        anyhow::anyhow!("could not pick a free username").into(),
    ))
}

async fn sign_in_linked(
    store: &SessionStore,
    verified_email_required: bool,
    who: &ProviderIdentity,
    linked: identity::Model,
    client: &ClientInfo,
) -> Result<SignedIn, Refusal> {
    let user = account::find(store.db(), linked.user_id)
        .await?
        .ok_or(Refusal::AccountGone)?;
    let now = store.now();
    let mut change = store.begin().await?;
    let mut verified = verification::is_verified(&user);
    // The provider vouches for the address the account holds: that verifies it.
    if let (false, true, Some(email), Some(key)) = (verified, who.email_verified, &who.email, &user.email_key) {
        if email.trim().to_lowercase() == *key {
            verified = change.mark_email_verified(user.id, key).await?;
        }
    }
    if verified_email_required && !verified {
        return Err(Refusal::EmailNotVerified);
    }
    if linked.email != who.email {
        identity::Entity::update_many()
            .col_expr(
                identity::Column::Email,
                sea_orm::sea_query::Expr::value(who.email.clone()),
            )
            .filter(identity::Column::Id.eq(linked.id))
            .exec(change.txn())
            .await
            .map_err(AppError::from)?;
    }
    let session = change.open(user.id, client).await?;
    let login = Event::own(Kind::Login, user.id, client).with_detail(serde_json::json!({ "provider": who.provider }));
    audit::record(change.txn(), now, login).await?;
    change.commit().await?;
    let user = account::find(store.db(), user.id).await?.unwrap_or(user);
    let roles = session.roles.clone();
    Ok(SignedIn { user, roles, session })
}

async fn create_account(
    store: &SessionStore,
    verified_email_required: bool,
    who: &ProviderIdentity,
    client: &ClientInfo,
) -> Result<SignedIn, Refusal> {
    let email = match account::normalize_email(who.email.clone()) {
        Ok(Some(email)) if account::find_by_email(store.db(), &email).await?.is_none() => Some(email),
        _ => None,
    };
    let email_verified = email.is_some() && who.email_verified;
    if verified_email_required && !email_verified {
        return Err(Refusal::EmailNotVerified);
    }
    let username = free_username(store.db(), who).await?;
    let name = who.name.clone().filter(|n| account::check_name(n).is_ok());
    let now = store.now();
    let mut change = store.begin().await?;
    let new = NewAccount {
        username,
        password: String::new(),
        email: email.clone(),
        name,
    };
    // An empty hash never verifies: the account has no password until a reset sets one.
    let user = account::insert_user(&mut change, new, email.clone(), String::new(), &[], now).await?;
    if let (true, Some(email)) = (email_verified, &email) {
        change.mark_email_verified(user.id, &email.to_lowercase()).await?;
    }
    insert_identity(change.txn(), user.id, who, now).await?;
    let detail = serde_json::json!({ "provider": who.provider });
    audit::record(
        change.txn(),
        now,
        Event::own(Kind::Signup, user.id, client).with_detail(detail.clone()),
    )
    .await?;
    let linked = Event::own(Kind::IdentityLinked, user.id, client).with_detail(detail.clone());
    audit::record(change.txn(), now, linked).await?;
    let session = change.open(user.id, client).await?;
    audit::record(
        change.txn(),
        now,
        Event::own(Kind::Login, user.id, client).with_detail(detail),
    )
    .await?;
    change.commit().await?;
    let user = account::find(store.db(), user.id).await?.unwrap_or(user);
    let roles = session.roles.clone();
    Ok(SignedIn { user, roles, session })
}

/// Links the identity to `user_id` (a fresh session asked for it). Linking it again to the
/// same account changes nothing.
pub async fn link(
    store: &SessionStore,
    user_id: Uuid,
    who: &ProviderIdentity,
    client: &ClientInfo,
) -> Result<(), Refusal> {
    match find_identity(store.db(), &who.provider, &who.subject).await? {
        Some(linked) if linked.user_id == user_id => return Ok(()),
        Some(_) => return Err(Refusal::IdentityInUse),
        None => {}
    }
    account::find(store.db(), user_id).await?.ok_or(Refusal::AccountGone)?;
    let now = store.now();
    let change = store.begin().await?;
    match insert_identity(change.txn(), user_id, who, now).await {
        Ok(()) => {}
        Err(AppError::Conflict { field: "user_id" }) => return Err(Refusal::AlreadyLinked),
        Err(AppError::Conflict { .. }) => return Err(Refusal::IdentityInUse),
        Err(e) => return Err(e.into()),
    }
    let event =
        Event::own(Kind::IdentityLinked, user_id, client).with_detail(serde_json::json!({ "provider": who.provider }));
    audit::record(change.txn(), now, event).await?;
    change.commit().await?;
    Ok(())
}

/// A single-use code valid 60 seconds that `exchange_login_code` turns into a session of `user_id`.
pub async fn issue_login_code(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    provider: &str,
    now: DateTime<Utc>,
) -> Result<String, AppError> {
    let (code, code_hash) = new_secret();
    let row = login_code::ActiveModel {
        code_hash: Set(code_hash),
        user_id: Set(user_id),
        provider: Set(provider.to_owned()),
        expires_at: Set(now + Duration::seconds(LOGIN_CODE_SECONDS)),
    };
    login_code::Entity::insert(row).exec_without_returning(conn).await?;
    login_code::Entity::delete_many()
        .filter(login_code::Column::ExpiresAt.lte(now))
        .exec(conn)
        .await?;
    Ok(code)
}

/// `exchangeLoginCode`: opens a session (for a bearer client) with a login code, once. The
/// browser's own session, opened by the callback, is another one: the code carries no token.
pub async fn exchange_login_code(store: &SessionStore, code: &str, client: &ClientInfo) -> Result<SignedIn, AppError> {
    let invalid = || AppError::bad_input("code", "the login code is unknown, used or expired");
    let now = store.now();
    let code_hash = secret_hash(code);
    let row = login_code::Entity::find_by_id(code_hash.clone())
        .one(store.db())
        .await?
        .filter(|row| row.expires_at > now)
        .ok_or_else(invalid)?;
    let user = account::find(store.db(), row.user_id).await?.ok_or_else(invalid)?;
    let mut change = store.begin().await?;
    let taken = login_code::Entity::delete_by_id(code_hash).exec(change.txn()).await?;
    if taken.rows_affected != 1 {
        return Err(invalid());
    }
    let session = change.open(user.id, client).await?;
    let login = Event::own(Kind::Login, user.id, client)
        .with_detail(serde_json::json!({ "provider": row.provider, "loginCode": true }));
    audit::record(change.txn(), now, login).await?;
    change.commit().await?;
    let roles = session.roles.clone();
    Ok(SignedIn { user, roles, session })
}

/// The identities linked to `user_id`, oldest first.
pub async fn list(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<identity::Model>, AppError> {
    Ok(identity::Entity::find()
        .filter(identity::Column::UserId.eq(user_id))
        .order_by_asc(identity::Column::LinkedAt)
        .all(conn)
        .await?)
}

/// `unlinkIdentity`: refused (BAD_USER_INPUT on `provider`) when none is linked there, or when
/// it is the last way to sign in (no password, no other identity).
pub async fn unlink(
    store: &SessionStore,
    user: &user::Model,
    provider: &str,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let linked = identity::Entity::find()
        .filter(identity::Column::UserId.eq(user.id))
        .filter(identity::Column::Provider.eq(provider))
        .one(store.db())
        .await?
        .ok_or_else(|| AppError::bad_input("provider", "no identity of this provider is linked"))?;
    let change = store.begin().await?;
    let identities = identity::Entity::find()
        .filter(identity::Column::UserId.eq(user.id))
        .count(change.txn())
        .await?;
    if !has_password(user) && identities <= 1 {
        return Err(AppError::bad_input(
            "provider",
            "this identity is the last way to sign in: set a password first",
        ));
    }
    identity::Entity::delete_by_id(linked.id).exec(change.txn()).await?;
    let event =
        Event::own(Kind::IdentityUnlinked, user.id, client).with_detail(serde_json::json!({ "provider": provider }));
    audit::record(change.txn(), store.now(), event).await?;
    change.commit().await
}

/// Accounts made by social login hold an empty hash until a password is set.
pub fn has_password(user: &user::Model) -> bool {
    !user.password_hash.is_empty()
}

async fn find_identity(
    conn: &impl ConnectionTrait,
    provider: &str,
    subject: &str,
) -> Result<Option<identity::Model>, AppError> {
    Ok(identity::Entity::find()
        .filter(identity::Column::Provider.eq(provider))
        .filter(identity::Column::Subject.eq(subject))
        .one(conn)
        .await?)
}

async fn insert_identity(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    who: &ProviderIdentity,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let row = identity::ActiveModel {
        id: Set(Uuid::new_v4()),
        provider: Set(who.provider.clone()),
        subject: Set(who.subject.clone()),
        user_id: Set(user_id),
        email: Set(who.email.clone()),
        linked_at: Set(now),
    };
    identity::Entity::insert(row)
        .exec_without_returning(conn)
        .await
        .map_err(on_unique(&["subject", "user_id"]))?;
    Ok(())
}

/// A username not taken yet: from `preferred_username`, else the address's local part, kept to
/// the allowed characters, then numbered, then with a random suffix.
async fn free_username(conn: &impl ConnectionTrait, who: &ProviderIdentity) -> Result<String, AppError> {
    let base = username_base(who);
    let numbered = (2..=NUMBERED_USERNAMES).map(|n| format!("{base}-{n}"));
    for candidate in std::iter::once(base.clone()).chain(numbered) {
        if account::find_by_username(conn, &candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
    Ok(format!("{base}-{}", hex::encode(rand::random::<[u8; 3]>())))
}

fn username_base(who: &ProviderIdentity) -> String {
    let from_email = who
        .email
        .as_deref()
        .and_then(|e| e.split_once('@'))
        .map(|(local, _)| local);
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
            .take(USERNAME_BASE_CHARS)
            .collect()
    };
    let base = [who.preferred_username.as_deref(), from_email]
        .into_iter()
        .flatten()
        .map(clean)
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "user".into());
    match base.len() {
        0..=2 => format!("user-{base}"),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(preferred: Option<&str>, email: Option<&str>) -> ProviderIdentity {
        ProviderIdentity {
            provider: "p".into(),
            subject: "s".into(),
            email: email.map(Into::into),
            email_verified: false,
            preferred_username: preferred.map(Into::into),
            name: None,
        }
    }

    #[test]
    fn usernames_come_from_the_claims_in_allowed_characters() {
        assert_eq!(username_base(&who(Some("Jean Dupont"), None)), "JeanDupont");
        assert_eq!(username_base(&who(None, Some("ana.b@example.com"))), "ana.b");
        assert_eq!(username_base(&who(Some("émile"), Some("e@x.org"))), "mile");
        assert_eq!(username_base(&who(Some("é"), None)), "user");
        assert_eq!(username_base(&who(Some("ab"), None)), "user-ab");
        let long = username_base(&who(Some(&"x".repeat(100)), None));
        assert_eq!(long.len(), USERNAME_BASE_CHARS);
        assert!(account::check_username(&format!("{long}-{}", "abcdef")).is_ok());
    }
}
