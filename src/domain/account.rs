//! Accounts: signup, login, the configured admin, password change and profile. Input rules
//! of API.md §7 live here (passwords in `auth::password`); uniqueness is the database's.

use chrono::{DateTime, Utc};
use entity::{session, user};
use sea_orm::sea_query::{Expr, UpdateStatement};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use uuid::Uuid;

use crate::auth::password::{check_new_password, PasswordHasher};
use crate::auth::seal::SealingKey;
use crate::client::ClientInfo;
use crate::domain::audit::{self, Event, Kind};
use crate::domain::rate_limit::{Action, RateLimiter};
use crate::domain::verification::{self, VerifyMail};
use crate::domain::{reset, role, second_factor};
use crate::error::{on_unique, AppError};
use crate::sessions::{Caller, IssuedSession, SessionChange, SessionStore, Write};

const USERNAME_CHARS: std::ops::RangeInclusive<usize> = 3..=64;
/// RFC 5321 caps a forward path at 254 characters.
const MAX_EMAIL_CHARS: usize = 254;
const MAX_NAME_CHARS: usize = 200;
/// The unique indexes on `users`, by the field each protects.
pub(crate) const USER_UNIQUE_FIELDS: &[&str] = &["username", "email"];

pub struct NewAccount {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// A signed-in account: the user row, its roles and the session just opened.
pub struct SignedIn {
    pub user: user::Model,
    pub roles: Vec<String>,
    pub session: IssuedSession,
}

pub fn check_username(username: &str) -> Result<(), AppError> {
    let valid_chars = username
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !USERNAME_CHARS.contains(&username.len()) || !valid_chars {
        return Err(AppError::bad_input(
            "username",
            "username must be 3 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'",
        ));
    }
    Ok(())
}

/// A plausible address: one `@`, something before it, a dotted domain after, no spaces.
pub fn check_email(email: &str) -> Result<(), AppError> {
    let plausible = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.contains('@') && domain.contains('.')
                && !domain.starts_with('.') && !domain.ends_with('.'));
    if !plausible {
        return Err(AppError::bad_input("email", "email is not a valid address"));
    }
    Ok(())
}

pub fn check_name(name: &str) -> Result<(), AppError> {
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "name",
            format!("name must be at most {MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(())
}

/// Trims an optional email; blank means none.
pub fn normalize_email(email: Option<String>) -> Result<Option<String>, AppError> {
    let email = email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
    if let Some(email) = &email {
        check_email(email)?;
    }
    Ok(email)
}

/// Checks a new account's fields (API.md §7); returns the normalized email.
pub fn check_new_account(new: &NewAccount) -> Result<Option<String>, AppError> {
    check_username(&new.username)?;
    check_new_password("password", &new.username, &new.password)?;
    if let Some(name) = &new.name {
        check_name(name)?;
    }
    normalize_email(new.email.clone())
}

/// Inserts a user row with role `user` plus `extra_roles`; the unique indexes decide conflicts.
pub async fn insert_user(
    change: &mut SessionChange,
    new: NewAccount,
    email: Option<String>,
    password_hash: String,
    extra_roles: &[String],
    now: DateTime<Utc>,
) -> Result<user::Model, AppError> {
    let row = user::ActiveModel {
        id: Set(Uuid::new_v4()),
        username_key: Set(new.username.to_lowercase()),
        username: Set(new.username),
        email_key: Set(email.as_ref().map(|e| e.to_lowercase())),
        email: Set(email),
        password_hash: Set(password_hash.clone()),
        name: Set(new.name),
        time_zone: Set(None),
        language: Set(None),
        theme: Set(None),
        settings: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        password_changed_at: Set((!password_hash.is_empty()).then_some(now)),
        email_verified_at: Set(None),
    };
    let user = user::Entity::insert(row)
        .exec_with_returning(change.txn())
        .await
        .map_err(on_unique(USER_UNIQUE_FIELDS))?;
    let mut roles: Vec<&str> = vec![role::USER];
    roles.extend(extra_roles.iter().map(String::as_str));
    change.grant(user.id, &roles, now).await?;
    Ok(user)
}

/// How e-mail addresses are verified (API.md §8): the link mail, and whether signing in
/// waits for it (`REQUIRE_VERIFIED_EMAIL`).
#[derive(Clone, Copy)]
pub struct EmailPolicy<'a> {
    pub mail: &'a VerifyMail,
    pub required: bool,
}

/// Creates an account with role `user` and opens its first session, all in one transaction;
/// a given address is mailed a verification link. With verification required, an address is
/// needed and no session opens: the answer is `EMAIL_NOT_VERIFIED`.
pub async fn signup(
    store: &SessionStore,
    limiter: &RateLimiter,
    passwords: &PasswordHasher,
    email_policy: EmailPolicy<'_>,
    new: NewAccount,
    client: &ClientInfo,
) -> Result<SignedIn, AppError> {
    // Every signup counts against the address, the successful ones above all (mass creation).
    let _counted = limiter.admit(Action::Signup, None, client.ip).await?;
    let email = check_new_account(&new)?;
    if email_policy.required && email.is_none() {
        return Err(AppError::bad_input("email", "an e-mail address is required"));
    }
    let password_hash = passwords.hash(&new.password).await?;
    let now = store.now();
    let mut change = store.begin().await?;
    let user = insert_user(&mut change, new, email, password_hash, &[], now).await?;
    let session = match email_policy.required {
        true => None,
        false => Some(change.open(user.id, client).await?),
    };
    audit::record(change.txn(), now, Event::own(Kind::Signup, user.id, client)).await?;
    change.commit().await?;
    verification::send_in_background(store, limiter, email_policy.mail, user.clone());
    let Some(session) = session else {
        return Err(AppError::EmailNotVerified);
    };
    Ok(SignedIn {
        user,
        roles: vec![role::USER.into()],
        session,
    })
}

/// Checks a username and password and opens a session. An unknown name costs the same
/// hashing as a wrong password and fails with the same error. Over the rate limit, the
/// attempt is refused before any hashing (API.md §7).
pub async fn login(
    store: &SessionStore,
    limiter: &RateLimiter,
    passwords: &PasswordHasher,
    email_policy: EmailPolicy<'_>,
    username: &str,
    password: &str,
    client: &ClientInfo,
) -> Result<SignedIn, AppError> {
    let attempt = limiter.admit(Action::Login, Some(username), client.ip).await?;
    let user = find_by_username(store.db(), username).await?;
    let verified = passwords
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let now = store.now();
    let user = match user {
        Some(user) if verified => user,
        other => {
            let failed = Event {
                kind: Kind::LoginFailed,
                actor: None,
                subject: other.map(|u| u.id),
                client,
                detail: None,
            };
            audit::record_refused(store, failed).await?;
            return Err(AppError::InvalidCredentials);
        }
    };
    if email_policy.required && !verification::is_verified(&user) {
        // The password was right: not a failed login. The owner gets a fresh link, as they
        // have no other way to ask for one before signing in.
        attempt.succeeded(limiter).await?;
        verification::send_in_background(store, limiter, email_policy.mail, user);
        return Err(AppError::EmailNotVerified);
    }
    // A hash made at an older cost is replaced while the password is at hand.
    let rehash = match passwords.needs_rehash(&user.password_hash) {
        true => Some(replace_hash(&user, passwords.hash(password).await?)),
        false => None,
    };
    // The success lands whole: the attempt stops counting, the rehash, and the session with
    // its audit row; or, with a second factor on, the challenge that will open the session.
    let mut writes = vec![Write::Insert(audit::insert(
        now,
        Event::own(Kind::Login, user.id, client),
    ))];
    writes.extend(attempt.success().map(Write::Delete));
    writes.extend(rehash.clone().map(Write::Update));
    let factor = second_factor::enabled_query(user.id);
    if let Some(session) = store.open_unless(factor, user.id, client, writes).await? {
        let roles = session.roles.clone();
        return Ok(SignedIn { user, roles, session });
    }
    // Nothing was written: the challenge lands with the attempt's end and the rehash instead.
    let change = store.begin().await?;
    attempt.succeeded_in(change.txn()).await?;
    if let Some(update) = rehash {
        let backend = change.txn().get_database_backend();
        change.txn().execute(backend.build(&update)).await?;
    }
    let challenge = second_factor::open_challenge(change.txn(), user.id, now).await?;
    change.commit().await?;
    Err(AppError::SecondFactorRequired { challenge })
}

/// Stores the same password hashed at the configured cost. Only if the hash is still the one
/// verified: a password changed meanwhile is kept. The password itself did not change, so
/// `passwordChangedAt` and pending reset links stay.
fn replace_hash(user: &user::Model, rehashed: String) -> UpdateStatement {
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(rehashed))
        .filter(user::Column::Id.eq(user.id))
        .filter(user::Column::PasswordHash.eq(user.password_hash.as_str()))
        .into_query()
}

/// Up to `limit` stored password hashes, of the most recently updated accounts: a sample of
/// the costs in use.
pub async fn password_hash_sample(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<String>, AppError> {
    Ok(user::Entity::find()
        .select_only()
        .column(user::Column::PasswordHash)
        .order_by_desc(user::Column::UpdatedAt)
        .limit(limit)
        .into_tuple()
        .all(conn)
        .await?)
}

pub async fn find_by_username(conn: &impl ConnectionTrait, username: &str) -> Result<Option<user::Model>, AppError> {
    Ok(user::Entity::find()
        .filter(user::Column::UsernameKey.eq(username.to_lowercase()))
        .one(conn)
        .await?)
}

pub async fn find_by_email(conn: &impl ConnectionTrait, email: &str) -> Result<Option<user::Model>, AppError> {
    Ok(user::Entity::find()
        .filter(user::Column::EmailKey.eq(email.trim().to_lowercase()))
        .one(conn)
        .await?)
}

pub async fn find(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<Option<user::Model>, AppError> {
    Ok(user::Entity::find_by_id(user_id).one(conn).await?)
}

/// Makes sure the configured admin exists with this password and roles `admin` and `user`.
/// Several instances may start at once: a lost insert race turns into the update.
pub async fn ensure_admin(
    store: &SessionStore,
    passwords: &PasswordHasher,
    username: &str,
    password: &str,
) -> Result<(), AppError> {
    let now = store.now();
    let existing = find_by_username(store.db(), username).await?;
    let current = match &existing {
        Some(user) => passwords.verify(password, Some(&user.password_hash)).await?,
        None => false,
    };
    let password_hash = match current {
        true => None,
        false => Some(passwords.hash(password).await?),
    };
    let mut change = store.begin().await?;
    let user_id = match (existing, password_hash) {
        (Some(user), None) => user.id,
        (Some(user), Some(password_hash)) => set_password(&mut change, user, password_hash, now).await?.id,
        (None, password_hash) => {
            let new = NewAccount {
                username: username.to_owned(),
                password: String::new(),
                email: None,
                name: None,
            };
            let admin = [role::ADMIN.to_owned()];
            match insert_user(&mut change, new, None, password_hash.unwrap_or_default(), &admin, now).await {
                Ok(user) => user.id,
                // Another instance created it first: start over against its row.
                Err(AppError::Conflict { .. }) => {
                    drop(change);
                    return Box::pin(ensure_admin(store, passwords, username, password)).await;
                }
                Err(e) => return Err(e),
            }
        }
    };
    change.grant(user_id, &[role::ADMIN, role::USER], now).await?;
    change.commit().await
}

async fn set_password(
    change: &mut SessionChange,
    user: user::Model,
    password_hash: String,
    now: DateTime<Utc>,
) -> Result<user::Model, AppError> {
    let mut row: user::ActiveModel = user.into();
    row.password_hash = Set(password_hash);
    row.password_changed_at = Set(Some(now));
    row.updated_at = Set(now);
    let user = change.update_user(row).await?;
    // A reset link mailed before the new password would otherwise still replace it.
    reset::void_pending(change.txn(), user.id).await?;
    Ok(user)
}

/// Stores a new password hash, closes every session of the user and opens a fresh one, in
/// `change`; `kind` says why (changed, or reset by mail). Hash before the change starts, so
/// no lock is held while hashing.
pub async fn replace_password(
    change: &mut SessionChange,
    user: user::Model,
    password_hash: String,
    client: &ClientInfo,
    kind: Kind,
) -> Result<SignedIn, AppError> {
    let user = set_password_closing_sessions(change, user, password_hash, client, kind).await?;
    let session = change.open(user.id, client).await?;
    let roles = session.roles.clone();
    Ok(SignedIn { user, roles, session })
}

/// `replace_password` for an account with a second factor on: no session opens; the
/// returned challenge lets `verifySecondFactor` open one.
pub async fn replace_password_awaiting_factor(
    change: &mut SessionChange,
    user: user::Model,
    password_hash: String,
    client: &ClientInfo,
    kind: Kind,
) -> Result<String, AppError> {
    let user = set_password_closing_sessions(change, user, password_hash, client, kind).await?;
    second_factor::open_challenge(change.txn(), user.id, change.now()).await
}

async fn set_password_closing_sessions(
    change: &mut SessionChange,
    user: user::Model,
    password_hash: String,
    client: &ClientInfo,
    kind: Kind,
) -> Result<user::Model, AppError> {
    let now = change.now();
    let user_id = user.id;
    let user = set_password(change, user, password_hash, now).await?;
    change.close_all(user_id).await?;
    audit::record(change.txn(), now, Event::own(kind, user_id, client)).await?;
    Ok(user)
}

/// Checks the password a sensitive change asks for (in the input field `field`). A wrong or
/// missing one is a failed login by another name: a stolen session must not become an
/// unlimited password oracle.
pub async fn confirm_password(
    limiter: &RateLimiter,
    passwords: &PasswordHasher,
    user: &user::Model,
    (field, current_password): (&'static str, Option<&str>),
    client: &ClientInfo,
) -> Result<(), AppError> {
    let attempt = limiter.admit(Action::Login, Some(&user.username), client.ip).await?;
    let wrong = || AppError::bad_input(field, "current password is wrong");
    let Some(current_password) = current_password else {
        return Err(AppError::bad_input(field, "current password is required"));
    };
    if !passwords.verify(current_password, Some(&user.password_hash)).await? {
        return Err(wrong());
    }
    attempt.succeeded(limiter).await
}

/// `changePassword`: the current password proves it is the user; every session closes and a
/// new one is returned.
pub async fn change_password(
    store: &SessionStore,
    limiter: &RateLimiter,
    passwords: &PasswordHasher,
    caller: &Caller,
    current_password: &str,
    new_password: &str,
    client: &ClientInfo,
) -> Result<SignedIn, AppError> {
    let user = find(store.db(), caller.user_id)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    confirm_password(
        limiter,
        passwords,
        &user,
        ("currentPassword", Some(current_password)),
        client,
    )
    .await?;
    check_new_password("newPassword", &user.username, new_password)?;
    let password_hash = passwords.hash(new_password).await?;
    let mut change = store.begin().await?;
    let signed_in = replace_password(&mut change, user, password_hash, client, Kind::PasswordChanged).await?;
    change.commit().await?;
    Ok(signed_in)
}

/// What `reauthenticate` is given: the password, or a second factor.
pub enum Credential<'a> {
    Password(&'a str),
    Factor(second_factor::Proof<'a>),
}

/// The collaborators that check a credential.
pub struct CredentialChecks<'a> {
    pub limiter: &'a RateLimiter,
    pub passwords: &'a PasswordHasher,
    pub sealing: &'a SealingKey,
}

/// `reauthenticate`: the current session counts as freshly signed in (API.md §8). A wrong
/// password is `BAD_USER_INPUT` on `password`, a wrong code on its own field; either counts
/// as a failed login of the user.
pub async fn reauthenticate(
    store: &SessionStore,
    checks: CredentialChecks<'_>,
    caller: &Caller,
    credential: Credential<'_>,
    client: &ClientInfo,
) -> Result<session::Model, AppError> {
    let user = find(store.db(), caller.user_id)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    match credential {
        Credential::Password(password) => {
            confirm_password(
                checks.limiter,
                checks.passwords,
                &user,
                ("password", Some(password)),
                client,
            )
            .await?
        }
        Credential::Factor(proof) => {
            second_factor::confirm_factor(store, checks.limiter, checks.sealing, &user, proof, client).await?
        }
    }
    let mut change = store.begin().await?;
    if !change.mark_authenticated(caller.user_id, caller.session_id).await? {
        return Err(AppError::InvalidToken);
    }
    let event = Event::own(Kind::Reauthenticated, caller.user_id, client)
        .with_detail(serde_json::json!({ "sessionId": caller.session_id }));
    audit::record(change.txn(), change.now(), event).await?;
    change.commit().await?;
    session::Entity::find_by_id(caller.session_id)
        .one(store.db())
        .await?
        .ok_or(AppError::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(check_username("al.ice-_1").is_ok());
        assert!(check_username(&"a".repeat(64)).is_ok());
        for bad in ["ab", "", "with space", "émile", "semi;colon", &"a".repeat(65)] {
            assert!(
                matches!(
                    check_username(bad),
                    Err(AppError::BadUserInput { field: "username", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn emails() {
        assert!(check_email("a@example.com").is_ok());
        for bad in ["a", "@example.com", "a@b", "a@@b.com", "a b@c.com", "a@.com", "a@com."] {
            assert!(
                matches!(check_email(bad), Err(AppError::BadUserInput { field: "email", .. })),
                "{bad}"
            );
        }
    }
}
