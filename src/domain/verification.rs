//! Verified e-mail (API.md §8): a single-use link valid 24 hours, its token kept only as a
//! SHA-256 hash, for the address the account has when it is mailed. A newer link voids the
//! older ones, and an address changed since makes its links verify nothing.

use chrono::Duration;
use entity::{email_verification, user};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use crate::auth::token::{new_secret, secret_hash};
use crate::client::ClientInfo;
use crate::domain::account;
use crate::domain::audit::{self, Event, Kind};
use crate::domain::rate_limit::{Action, RateLimiter};
use crate::error::AppError;
use crate::mail::{Mail, Mailer};
use crate::sessions::{begin_write, SessionStore};

const VERIFY_TOKEN_HOURS: i64 = 24;

/// How verification links go out: the mailer and the link template (`VERIFY_URL_TEMPLATE`).
#[derive(Clone)]
pub struct VerifyMail {
    pub mailer: Mailer,
    pub link_template: String,
}

impl VerifyMail {
    fn message(&self, user: &user::Model, to: &str, token: &str) -> Mail {
        let link = self.link_template.replace("{token}", token);
        Mail {
            to: to.to_owned(),
            subject: "Verify your e-mail address".into(),
            body: format!(
                "Hello {},\n\nTo confirm that this address belongs to your account, open\n\n{link}\n\nThe link works once, within {VERIFY_TOKEN_HOURS} hours. If you did not ask for it, ignore this mail.\n",
                user.username
            ),
        }
    }
}

pub fn is_verified(user: &user::Model) -> bool {
    user.email.is_some() && user.email_verified_at.is_some()
}

/// Mails a fresh link to the user's address (none: nothing happens), voiding older links.
pub async fn send(store: &SessionStore, mail: &VerifyMail, user: &user::Model) -> Result<(), AppError> {
    let (Some(email), Some(email_key)) = (&user.email, &user.email_key) else {
        return Ok(());
    };
    let (token, token_hash) = new_secret();
    let now = store.now();
    let txn = begin_write(store.db()).await?;
    email_verification::Entity::delete_many()
        .filter(email_verification::Column::UserId.eq(user.id))
        .filter(email_verification::Column::UsedAt.is_null())
        .exec(&txn)
        .await?;
    let row = email_verification::ActiveModel {
        token_hash: Set(token_hash),
        user_id: Set(user.id),
        email_key: Set(email_key.clone()),
        expires_at: Set(now + Duration::hours(VERIFY_TOKEN_HOURS)),
        used_at: Set(None),
    };
    email_verification::Entity::insert(row)
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    mail.mailer.send(mail.message(user, email, &token)).await?;
    Ok(())
}

/// `send` in a task of its own, so the request that asked does not wait for the mail server;
/// at most `RATE_LIMIT_RESET_USER` links per account and window (as many as reset mails,
/// counted apart), so nobody can flood a mailbox through it.
pub fn send_in_background(store: &SessionStore, limiter: &RateLimiter, mail: &VerifyMail, user: user::Model) {
    if user.email.is_none() {
        return;
    }
    let (store, limiter, mail) = (store.clone(), limiter.clone(), mail.clone());
    tokio::spawn(async move {
        match limiter.admit(Action::Verify, Some(&user.username), None).await {
            Ok(_counted) => {}
            Err(AppError::RateLimited { .. }) => return,
            Err(e) => return tracing::error!(error = ?e, "could not count a verification mail"),
        }
        if let Err(e) = send(&store, &mail, &user).await {
            tracing::error!(error = ?e, "could not send a verification mail");
        }
    });
}

/// `requestEmailVerification`: mails a link to the caller's address. An account without an
/// address is `BAD_USER_INPUT` on `email`; one already verified gets no mail.
pub async fn request(
    store: &SessionStore,
    limiter: &RateLimiter,
    mail: &VerifyMail,
    user_id: uuid::Uuid,
) -> Result<(), AppError> {
    let user = account::find(store.db(), user_id)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    if user.email.is_none() {
        return Err(AppError::bad_input("email", "the account has no e-mail address"));
    }
    if !is_verified(&user) {
        send_in_background(store, limiter, mail, user);
    }
    Ok(())
}

/// `verifyEmail`: marks the address the link was mailed to as verified, if it is still the
/// account's. An unknown, used or expired token, or one for an address since replaced, is
/// `BAD_USER_INPUT` on `token`.
pub async fn verify(store: &SessionStore, token: &str, client: &ClientInfo) -> Result<user::Model, AppError> {
    let invalid = || AppError::bad_input("token", "the verification link is invalid, used or expired");
    let now = store.now();
    let pending = email_verification::Entity::find_by_id(secret_hash(token))
        .one(store.db())
        .await?
        .filter(|v| v.used_at.is_none() && v.expires_at > now)
        .ok_or_else(invalid)?;
    let user = account::find(store.db(), pending.user_id)
        .await?
        .filter(|u| u.email_key.as_deref() == Some(pending.email_key.as_str()))
        .ok_or_else(invalid)?;
    let mut change = store.begin().await?;
    // Consuming the token is the first write: of two racing uses, one finds it used.
    let consumed = email_verification::Entity::update_many()
        .col_expr(email_verification::Column::UsedAt, Expr::value(now))
        .filter(email_verification::Column::TokenHash.eq(pending.token_hash.clone()))
        .filter(email_verification::Column::UsedAt.is_null())
        .exec(change.txn())
        .await?;
    if consumed.rows_affected != 1 {
        return Err(invalid());
    }
    if !change.mark_email_verified(user.id, &pending.email_key).await? {
        // The address changed since the link was read.
        return Err(invalid());
    }
    let event =
        Event::own(Kind::EmailVerified, user.id, client).with_detail(serde_json::json!({ "email": user.email }));
    audit::record(change.txn(), now, event).await?;
    change.commit().await?;
    account::find(store.db(), user.id).await?.ok_or_else(invalid)
}
