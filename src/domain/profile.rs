//! `updateProfile`: each field validated and named in its error; email uniqueness is the
//! database's. A new e-mail address needs the current password and is announced to the old
//! one. The audit event lists which fields changed, never their values.

use std::str::FromStr;

use entity::user;
use sea_orm::ActiveValue::Set;
use uuid::Uuid;

use crate::auth::password::PasswordHasher;
use crate::client::ClientInfo;
use crate::domain::account::{self, USER_UNIQUE_FIELDS};
use crate::domain::audit::{self, Event, Kind};
use crate::domain::rate_limit::{Action, RateLimiter};
use crate::domain::reset;
use crate::domain::verification::{self, VerifyMail};
use crate::error::{on_unique, AppError};
use crate::mail::{Mail, Mailer};
use crate::sessions::SessionStore;

/// `settings` is a client's blob, not a document store.
pub const MAX_SETTINGS_BYTES: usize = 16 * 1024;
const MAX_THEME_CHARS: usize = 32;

/// What to do with one profile field.
#[derive(Clone, Debug, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

#[derive(Default)]
pub struct ProfileChanges {
    pub name: Change<String>,
    pub email: Change<String>,
    pub time_zone: Change<String>,
    pub language: Change<String>,
    pub theme: Change<String>,
    pub settings: Change<serde_json::Value>,
    /// Proof that the caller is the user; needed when `email` changes.
    pub current_password: Option<String>,
}

/// Who checks what `updateProfile` asks for: passwords are confirmed through the rate limiter
/// and hasher, and the old address is told of a new one through the mailer.
pub struct Checks<'a> {
    pub limiter: &'a RateLimiter,
    pub passwords: &'a PasswordHasher,
    pub mailer: &'a Mailer,
    /// Where the link that verifies a new address goes out.
    pub verify_mail: &'a VerifyMail,
}

fn check_time_zone(zone: &str) -> Result<(), AppError> {
    chrono_tz::Tz::from_str(zone)
        .map(|_| ())
        .map_err(|_| AppError::bad_input("timeZone", "timeZone must be an IANA time zone such as Europe/Paris"))
}

fn check_language(tag: &str) -> Result<(), AppError> {
    match language_tags::LanguageTag::parse(tag) {
        Ok(parsed) if parsed.is_valid() => Ok(()),
        _ => Err(AppError::bad_input(
            "language",
            "language must be a BCP 47 tag such as en or pt-BR",
        )),
    }
}

fn check_theme(theme: &str) -> Result<(), AppError> {
    let valid = !theme.is_empty()
        && theme.len() <= MAX_THEME_CHARS
        && theme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(AppError::bad_input(
            "theme",
            "theme must be 1 to 32 characters of A-Z, a-z, 0-9, '-', '_'",
        ));
    }
    Ok(())
}

fn check_settings(settings: &serde_json::Value) -> Result<(), AppError> {
    let size = serde_json::to_vec(settings).map_err(anyhow::Error::from)?.len();
    if size > MAX_SETTINGS_BYTES {
        return Err(AppError::bad_input(
            "settings",
            "settings must be at most 16 KiB of JSON",
        ));
    }
    Ok(())
}

/// `None` to keep a field, `Some(None)` to clear it, `Some(Some(v))` to set a checked value.
fn decide<T>(change: Change<T>, check: impl Fn(&T) -> Result<(), AppError>) -> Result<Option<Option<T>>, AppError> {
    match change {
        Change::Keep => Ok(None),
        Change::Clear => Ok(Some(None)),
        Change::Set(value) => {
            check(&value)?;
            Ok(Some(Some(value)))
        }
    }
}

/// Applies `changes` to the user's profile and records which fields changed. A change of
/// e-mail address needs the current password, voids pending reset links and is mailed to the
/// old address.
pub async fn update(
    store: &SessionStore,
    checks: Checks<'_>,
    user_id: Uuid,
    changes: ProfileChanges,
    client: &ClientInfo,
) -> Result<user::Model, AppError> {
    let user = account::find(store.db(), user_id)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    let old_email = user.email.clone();
    let mut row: user::ActiveModel = user.clone().into();
    let mut changed: Vec<&str> = Vec::new();
    if let Some(name) = decide(changes.name, |n| account::check_name(n))? {
        row.name = Set(name);
        changed.push("name");
    }
    let mut email_changes = false;
    if let Some(email) = decide(changes.email, |e| account::check_email(e.trim()))? {
        let email = email.map(|e| e.trim().to_owned());
        // Setting the address already held changes nothing, so it asks for nothing.
        email_changes = email != old_email;
        row.email_key = Set(email.as_ref().map(|e| e.to_lowercase()));
        row.email = Set(email);
        if email_changes {
            // A new address starts unverified (API.md §8).
            row.email_verified_at = Set(None);
        }
        changed.push("email");
    }
    if let Some(zone) = decide(changes.time_zone, |z| check_time_zone(z))? {
        row.time_zone = Set(zone);
        changed.push("timeZone");
    }
    if let Some(language) = decide(changes.language, |l| check_language(l))? {
        row.language = Set(language);
        changed.push("language");
    }
    if let Some(theme) = decide(changes.theme, |t| check_theme(t))? {
        row.theme = Set(theme);
        changed.push("theme");
    }
    if let Some(settings) = decide(changes.settings, check_settings)? {
        row.settings = Set(settings);
        changed.push("settings");
    }

    // The e-mail address is where reset links go: whoever changes it must know the password.
    let email_attempt = match email_changes {
        true => {
            let current_password = changes.current_password.as_deref();
            account::confirm_password(
                checks.limiter,
                checks.passwords,
                &user,
                ("currentPassword", current_password),
                client,
            )
            .await?;
            // A CONFLICT tells that an address has an account, so each change counts against
            // the address's signup budget (signup can tell the same) unless it succeeds.
            Some(checks.limiter.admit(Action::Signup, None, client.ip).await?)
        }
        false => None,
    };
    let now = store.now();
    row.updated_at = Set(now);
    let mut change = store.begin().await?;
    let updated = change.update_user(row).await.map_err(on_unique(USER_UNIQUE_FIELDS))?;
    if email_changes {
        // A link mailed to the old address must not outlive it.
        reset::void_pending(change.txn(), user_id).await?;
    }
    let event = Event::own(Kind::ProfileUpdated, user_id, client).with_detail(serde_json::json!({ "fields": changed }));
    audit::record(change.txn(), now, event).await?;
    change.commit().await?;
    if let Some(attempt) = email_attempt {
        attempt.succeeded(checks.limiter).await?;
    }
    if email_changes {
        verification::send_in_background(store, checks.limiter, checks.verify_mail, updated.clone());
    }
    if let (true, Some(old_email)) = (email_changes, old_email) {
        // The change is made; a mail that cannot be sent is logged, not turned into an error.
        if let Err(e) = checks.mailer.send(email_changed_mail(&updated, old_email)).await {
            tracing::error!(error = ?e, "could not tell the old address of an e-mail change");
        }
    }
    Ok(updated)
}

/// The notice to the address an account had before.
fn email_changed_mail(user: &user::Model, old_email: String) -> Mail {
    Mail {
        to: old_email,
        subject: "Your e-mail address was changed".into(),
        body: format!(
            "Hello {},\n\nThe e-mail address of your account was changed, and this address no longer receives its password reset links. If you did not make this change, someone else may hold your account: contact the administrator.\n",
            user.username
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(result: Result<(), AppError>) -> &'static str {
        match result {
            Err(AppError::BadUserInput { field, .. }) => field,
            other => panic!("expected BadUserInput, got {other:?}"),
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert!(check_time_zone("Europe/Paris").is_ok());
        assert!(check_time_zone("America/Argentina/Buenos_Aires").is_ok());
        assert_eq!(field(check_time_zone("Mars/Olympus")), "timeZone");
    }

    #[test]
    fn languages_are_bcp47_tags() {
        for good in ["en", "pt-BR", "zh-Hant-TW", "de-CH-1996"] {
            assert!(check_language(good).is_ok(), "{good}");
        }
        for bad in ["", "english!", "e", "en--US"] {
            assert_eq!(field(check_language(bad)), "language", "{bad}");
        }
    }

    #[test]
    fn themes_and_settings_are_bounded() {
        assert!(check_theme("solarized-dark").is_ok());
        assert_eq!(field(check_theme("")), "theme");
        assert_eq!(field(check_theme(&"x".repeat(33))), "theme");
        assert!(check_settings(&serde_json::json!({ "a": "x".repeat(16_000) })).is_ok());
        assert_eq!(
            field(check_settings(&serde_json::json!({ "a": "x".repeat(16_400) }))),
            "settings"
        );
    }
}
