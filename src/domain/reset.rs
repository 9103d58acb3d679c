//! Password reset by mail: a single-use token valid 30 minutes, stored only as its SHA-256;
//! a newer request voids older tokens. Requests answer at once whatever happens, so neither
//! the answer nor its timing tells whether an account exists.

use chrono::Duration;
use entity::{password_reset, user};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::auth::password::{check_new_password, PasswordHasher};
use crate::auth::token::{new_secret, secret_hash};
use crate::client::ClientInfo;
use crate::domain::account::{self, SignedIn};
use crate::domain::audit::{self, Event, Kind};
use crate::domain::rate_limit::{Action, RateLimiter};
use crate::domain::second_factor;
use crate::error::AppError;
use crate::mail::{Mail, Mailer};
use crate::sessions::{begin_write, SessionStore};

/// How long a reset link works.
const RESET_TOKEN_MINUTES: i64 = 30;

/// Starts a reset in the background and returns at once (API.md §5: always `true`), unless
/// the address is over its rate limit: that is refused whether or not the account exists,
/// so the refusal tells nothing about accounts either.
pub async fn request_in_background(
    store: SessionStore,
    limiter: &RateLimiter,
    mail: ResetMail,
    username: Option<String>,
    email: Option<String>,
    client: ClientInfo,
) -> Result<(), AppError> {
    // Every request counts: each may send a mail.
    let _counted = limiter.admit(Action::Reset, None, client.ip).await?;
    let limiter = limiter.clone();
    tokio::spawn(async move {
        if let Err(e) = request(&store, &limiter, &mail, username, email, &client).await {
            tracing::error!(error = ?e, "password reset request failed");
        }
    });
    Ok(())
}

/// Finds the account (username wins over email), stores a fresh token, voids older ones and
/// mails the link. No account, no address to mail, or an account over its own limit: nothing
/// happens.
pub async fn request(
    store: &SessionStore,
    limiter: &RateLimiter,
    mail: &ResetMail,
    username: Option<String>,
    email: Option<String>,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let user = match (username, email) {
        (Some(username), _) => account::find_by_username(store.db(), &username).await?,
        (None, Some(email)) => account::find_by_email(store.db(), &email).await?,
        (None, None) => None,
    };
    let Some(user) = user else { return Ok(()) };
    if mail.mailer.needs_address() && user.email.is_none() {
        return Ok(());
    }
    // Per account as well as per address, so that many addresses cannot flood one mailbox
    // (or keep voiding the link its owner is about to use). The answer was `true` already.
    match limiter.admit(Action::Reset, Some(&user.username), None).await {
        Ok(_counted) => {}
        Err(AppError::RateLimited { .. }) => return Ok(()),
        Err(e) => return Err(e),
    }
    let (token, token_hash) = new_secret();
    let now = store.now();
    let txn = begin_write(store.db()).await?;
    void_pending(&txn, user.id).await?;
    let row = password_reset::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user.id),
        token_hash: Set(token_hash),
        created_at: Set(now),
        expires_at: Set(now + Duration::minutes(RESET_TOKEN_MINUTES)),
        used_at: Set(None),
    };
    password_reset::Entity::insert(row).exec_without_returning(&txn).await?;
    let event = Event {
        kind: Kind::PasswordResetRequested,
        actor: None,
        subject: Some(user.id),
        client,
        detail: None,
    };
    audit::record(&txn, now, event).await?;
    txn.commit().await?;
    mail.mailer.send(mail.message(&user, &token)).await?;
    Ok(())
}

/// Voids the user's unused reset tokens: a newer request replaces them, and a new password
/// or e-mail address makes them stale (a link mailed before must not undo the change).
pub async fn void_pending(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<(), AppError> {
    password_reset::Entity::delete_many()
        .filter(password_reset::Column::UserId.eq(user_id))
        .filter(password_reset::Column::UsedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// How reset links are sent: the mailer and the link template (`RESET_URL_TEMPLATE`).
#[derive(Clone)]
pub struct ResetMail {
    pub mailer: Mailer,
    pub link_template: String,
}

impl ResetMail {
    fn message(&self, user: &user::Model, token: &str) -> Mail {
        let link = self.link_template.replace("{token}", token);
        Mail {
        to: user.email.clone().unwrap_or_else(|| user.username.clone()),
        subject: "Reset your password".into(),
        body: format!(
            "Hello {},\n\nSomeone asked to reset the password of your account. To choose a new one, open\n\n{link}\n\nThe link works once, within {RESET_TOKEN_MINUTES} minutes. If you did not ask, ignore this mail.\n",
            user.username
        ),
    }
    }
}

/// Sets a new password with a mailed token: the token is consumed, every session closes and a
/// new one opens, all in one transaction.
pub async fn reset(
    store: &SessionStore,
    limiter: &RateLimiter,
    passwords: &PasswordHasher,
    token: &str,
    new_password: &str,
    client: &ClientInfo,
) -> Result<SignedIn, AppError> {
    // Failed uses count against the address, so reset tokens cannot be guessed at length.
    let attempt = limiter.admit(Action::Reset, None, client.ip).await?;
    let invalid = || AppError::bad_input("token", "reset token is invalid, used or expired");
    let now = store.now();
    let pending = password_reset::Entity::find()
        .filter(password_reset::Column::TokenHash.eq(secret_hash(token)))
        .one(store.db())
        .await?
        .filter(|r| r.used_at.is_none() && r.expires_at > now)
        .ok_or_else(invalid)?;
    let user = account::find(store.db(), pending.user_id).await?.ok_or_else(invalid)?;
    check_new_password("newPassword", &user.username, new_password)?;
    let password_hash = passwords.hash(new_password).await?;

    let mut change = store.begin().await?;
    // Consuming the token is the first write: of two racing uses, one finds it used.
    let consumed = password_reset::Entity::update_many()
        .col_expr(password_reset::Column::UsedAt, Expr::value(now))
        .filter(password_reset::Column::Id.eq(pending.id))
        .filter(password_reset::Column::UsedAt.is_null())
        .exec(change.txn())
        .await?;
    if consumed.rows_affected != 1 {
        return Err(invalid());
    }
    // With a second factor on, a mailed link alone does not sign in: the password is reset
    // and the login waits for the factor.
    if second_factor::is_enabled(store.db(), user.id).await? {
        let challenge =
            account::replace_password_awaiting_factor(&mut change, user, password_hash, client, Kind::PasswordReset)
                .await?;
        change.commit().await?;
        attempt.succeeded(limiter).await?;
        return Err(AppError::SecondFactorRequired { challenge });
    }
    let signed_in = account::replace_password(&mut change, user, password_hash, client, Kind::PasswordReset).await?;
    change.commit().await?;
    attempt.succeeded(limiter).await?;
    Ok(signed_in)
}
