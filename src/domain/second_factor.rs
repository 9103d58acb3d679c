//! Second factors (API.md §8): TOTP (RFC 6238 through `totp-rs`: SHA-1, 6 digits, 30-second
//! steps, one step of drift) with ten single-use recovery codes, and the challenges of logins
//! that proved their password and wait for a second factor.
//!
//! Secrets are sealed (`auth::seal`). Challenge tickets (256 random bits) are kept as SHA-256
//! hashes; recovery codes (50 random bits, short enough to type) as the SHA-256 of a random
//! salt of their own and the code (ASVS 2.6.2). A code is accepted once: its step must be
//! later than the last step accepted.

use chrono::{DateTime, Duration, Utc};
use entity::{login_challenge, recovery_code, totp_factor, user};
use rand::Rng;
use sea_orm::sea_query::{Expr, OnConflict, SelectStatement};
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryTrait};
use totp_rs::{Algorithm, TOTP};
use uuid::Uuid;

use crate::auth::seal::SealingKey;
use crate::auth::token::{new_secret, secret_hash};
use crate::client::ClientInfo;
use crate::domain::account::SignedIn;
use crate::domain::audit::{self, Event, Kind};
use crate::domain::rate_limit::{Action, RateLimiter};
use crate::error::AppError;
use crate::sessions::{begin_write, SessionStore};

const ISSUER: &str = "gatehouse";
const STEP_SECONDS: u64 = 30;
const DIGITS: usize = 6;
const SECRET_BYTES: usize = 20;
const RECOVERY_CODES: usize = 10;
/// How long a login may wait for its second factor (API.md §8).
const CHALLENGE_MINUTES: i64 = 5;
/// Recovery codes are written in this alphabet (no 0/o, 1/l/i), as `xxxxx-xxxxx`.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// What a new enrolment shows the user: the secret for manual entry and the URI for a QR code.
pub struct Enrollment {
    pub secret: String,
    pub uri: String,
}

/// A second factor presented to finish a login or to re-authenticate.
pub enum Proof<'a> {
    Code(&'a str),
    RecoveryCode(&'a str),
}

impl Proof<'_> {
    /// The input field a wrong proof is reported on.
    fn field(&self) -> &'static str {
        match self {
            Proof::Code(_) => "code",
            Proof::RecoveryCode(_) => "recoveryCode",
        }
    }
}

fn totp(secret: Vec<u8>, username: &str) -> Result<TOTP, AppError> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECONDS,
        secret,
        Some(ISSUER.into()),
        username.into(),
    )
    .map_err(|e| AppError::Internal(anyhow::anyhow!("TOTP parameters: {e:?}")))
}

/// The step whose code `code` is, among the current one and one step either side; the
/// current step is tried first.
fn matching_step(totp: &TOTP, code: &str, now: DateTime<Utc>) -> Option<i64> {
    use subtle::ConstantTimeEq;
    let code = code.trim();
    let current = u64::try_from(now.timestamp()).ok()? / STEP_SECONDS;
    [current, current.saturating_sub(1), current + 1]
        .into_iter()
        .find(|step| {
            totp.generate(step * STEP_SECONDS)
                .as_bytes()
                .ct_eq(code.as_bytes())
                .into()
        })
        .and_then(|step| i64::try_from(step).ok())
}

/// Starts (or restarts) an enrolment: a new secret, pending until a code confirms it. TOTP
/// already on stays on with its old secret until then.
pub async fn start_enrollment(
    conn: &impl ConnectionTrait,
    sealing: &SealingKey,
    user: &user::Model,
    now: DateTime<Utc>,
) -> Result<Enrollment, AppError> {
    let secret: [u8; SECRET_BYTES] = rand::random();
    let totp = totp(secret.to_vec(), &user.username)?;
    let sealed = sealing.seal(&secret);
    let row = totp_factor::ActiveModel {
        user_id: Set(user.id),
        sealed_secret: Set(sealed.clone()),
        created_at: Set(now),
        confirmed_at: Set(None),
        pending_secret: Set(Some(sealed)),
        last_used_step: Set(None),
    };
    totp_factor::Entity::insert(row)
        .on_conflict(
            OnConflict::column(totp_factor::Column::UserId)
                .update_column(totp_factor::Column::PendingSecret)
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(Enrollment {
        secret: totp.get_secret_base32(),
        uri: totp.get_url(),
    })
}

/// Confirms the pending enrolment with a code from it: TOTP is on with that secret, and ten
/// new recovery codes (returned, never shown again) replace any earlier ones.
pub async fn confirm_enrollment(
    store: &SessionStore,
    sealing: &SealingKey,
    user: &user::Model,
    code: &str,
    client: &ClientInfo,
) -> Result<Vec<String>, AppError> {
    let now = store.now();
    let pending = totp_factor::Entity::find_by_id(user.id)
        .one(store.db())
        .await?
        .and_then(|row| row.pending_secret)
        .ok_or_else(|| AppError::bad_input("code", "start an enrolment first"))?;
    let secret = sealing.open(&pending).ok_or_else(unreadable_secret)?;
    let step = matching_step(&totp(secret, &user.username)?, code, now)
        .ok_or_else(|| AppError::bad_input("code", "the code is wrong or expired"))?;
    let txn = begin_write(store.db()).await?;
    let confirmed = totp_factor::Entity::update_many()
        .col_expr(totp_factor::Column::SealedSecret, Expr::value(pending.clone()))
        .col_expr(totp_factor::Column::PendingSecret, Expr::value(Option::<Vec<u8>>::None))
        .col_expr(totp_factor::Column::ConfirmedAt, Expr::value(now))
        .col_expr(totp_factor::Column::LastUsedStep, Expr::value(step))
        .filter(totp_factor::Column::UserId.eq(user.id))
        .filter(totp_factor::Column::PendingSecret.eq(pending))
        .exec(&txn)
        .await?;
    if confirmed.rows_affected != 1 {
        // Another enrolment started meanwhile: its secret is the one to confirm.
        return Err(AppError::bad_input(
            "code",
            "the enrolment was restarted; use the new secret",
        ));
    }
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user.id))
        .exec(&txn)
        .await?;
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let rows = codes.iter().map(|code| {
        let salt: [u8; 16] = rand::random();
        recovery_code::ActiveModel {
            id: Set(Uuid::new_v4()),
            user_id: Set(user.id),
            code_hash: Set(salted_hash(&salt, code)),
            salt: Set(salt.to_vec()),
            used_at: Set(None),
        }
    });
    recovery_code::Entity::insert_many(rows)
        .exec_without_returning(&txn)
        .await?;
    audit::record(&txn, now, Event::own(Kind::TotpEnabled, user.id, client)).await?;
    txn.commit().await?;
    Ok(codes)
}

/// Turns TOTP off for `user_id` on behalf of `actor` (the user, or an admin), recovery codes
/// and waiting logins included; false when it was not on, `NotFound` for no such user.
pub async fn disable(store: &SessionStore, actor: Uuid, user_id: Uuid, client: &ClientInfo) -> Result<bool, AppError> {
    let txn = begin_write(store.db()).await?;
    let removed = totp_factor::Entity::delete_by_id(user_id).exec(&txn).await?;
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    login_challenge::Entity::delete_many()
        .filter(login_challenge::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    let was_on = removed.rows_affected > 0;
    if !was_on && crate::domain::account::find(&txn, user_id).await?.is_none() {
        return Err(AppError::NotFound);
    }
    if was_on {
        let event = Event {
            kind: Kind::TotpDisabled,
            actor: Some(actor),
            subject: Some(user_id),
            client,
            detail: None,
        };
        audit::record(&txn, store.now(), event).await?;
    }
    txn.commit().await?;
    Ok(was_on)
}

/// Whether TOTP is on (confirmed) for the user.
pub async fn is_enabled(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<bool, AppError> {
    Ok(enabled_among(conn, &[user_id]).await?.contains(&user_id))
}

/// Those of `user_ids` with TOTP on.
pub async fn enabled_among(conn: &impl ConnectionTrait, user_ids: &[Uuid]) -> Result<Vec<Uuid>, AppError> {
    Ok(enabled(user_ids).into_tuple().all(conn).await?)
}

/// The read that finds a row when the user has TOTP on.
pub fn enabled_query(user_id: Uuid) -> SelectStatement {
    enabled(&[user_id]).into_query()
}

fn enabled(user_ids: &[Uuid]) -> sea_orm::Select<totp_factor::Entity> {
    use sea_orm::QuerySelect;
    totp_factor::Entity::find()
        .select_only()
        .column(totp_factor::Column::UserId)
        .filter(totp_factor::Column::UserId.is_in(user_ids.iter().copied()))
        .filter(totp_factor::Column::ConfirmedAt.is_not_null())
}

/// Records a login that proved its password and now needs a second factor; returns the
/// single-use ticket for `verifySecondFactor`.
pub async fn open_challenge(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<String, AppError> {
    let (ticket, ticket_hash) = new_secret();
    let row = login_challenge::ActiveModel {
        ticket_hash: Set(ticket_hash),
        user_id: Set(user_id),
        expires_at: Set(now + Duration::minutes(CHALLENGE_MINUTES)),
    };
    login_challenge::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    // Expired tickets of anyone go with each new one, so the table stays small.
    login_challenge::Entity::delete_many()
        .filter(login_challenge::Column::ExpiresAt.lte(now))
        .exec(conn)
        .await?;
    Ok(ticket)
}

/// `verifySecondFactor`: the challenge of a login and a code (or a recovery code) finish it
/// with a session. A wrong proof counts as a failed login of the user (API.md §8) and is
/// recorded as `second_factor_failed`; the challenge stays usable until it expires.
pub async fn verify_login(
    store: &SessionStore,
    limiter: &RateLimiter,
    sealing: &SealingKey,
    ticket: &str,
    proof: Proof<'_>,
    client: &ClientInfo,
) -> Result<SignedIn, AppError> {
    let now = store.now();
    let invalid = || AppError::bad_input("challenge", "the challenge is unknown, used or expired");
    let ticket_hash = secret_hash(ticket);
    let challenge = login_challenge::Entity::find_by_id(ticket_hash.clone())
        .one(store.db())
        .await?
        .filter(|c| c.expires_at > now)
        .ok_or_else(invalid)?;
    let user = crate::domain::account::find(store.db(), challenge.user_id)
        .await?
        .ok_or_else(invalid)?;
    let attempt = limiter.admit(Action::Login, Some(&user.username), client.ip).await?;
    let accepted = check(store.db(), sealing, &user, &proof, now).await?;
    let Some(accepted) = accepted else {
        return Err(failed(store, &user, &proof, client).await);
    };
    let mut change = store.begin().await?;
    // Taking the ticket is the first write: of two racing uses, one finds it gone.
    let taken = login_challenge::Entity::delete_by_id(ticket_hash)
        .exec(change.txn())
        .await?;
    if taken.rows_affected != 1 {
        return Err(invalid());
    }
    if !accepted.spend(change.txn(), user.id, now).await? {
        drop(change);
        return Err(failed(store, &user, &proof, client).await);
    }
    attempt.succeeded_in(change.txn()).await?;
    let session = change.open(user.id, client).await?;
    let method = match proof {
        Proof::Code(_) => "totp",
        Proof::RecoveryCode(_) => "recovery_code",
    };
    let login = Event::own(Kind::Login, user.id, client).with_detail(serde_json::json!({ "secondFactor": method }));
    audit::record(change.txn(), now, login).await?;
    if let Proof::RecoveryCode(_) = proof {
        audit::record(change.txn(), now, Event::own(Kind::RecoveryCodeUsed, user.id, client)).await?;
    }
    change.commit().await?;
    let roles = session.roles.clone();
    Ok(SignedIn { user, roles, session })
}

/// `reauthenticate` with a second factor: checks and spends `proof`; a wrong one counts as a
/// failed login, as in `verify_login`.
pub async fn confirm_factor(
    store: &SessionStore,
    limiter: &RateLimiter,
    sealing: &SealingKey,
    user: &user::Model,
    proof: Proof<'_>,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let now = store.now();
    if !is_enabled(store.db(), user.id).await? {
        // Nothing to guess at: not a failed login.
        return Err(AppError::bad_input(
            proof.field(),
            "no second factor is enabled for this account",
        ));
    }
    let attempt = limiter.admit(Action::Login, Some(&user.username), client.ip).await?;
    let accepted = match check(store.db(), sealing, user, &proof, now).await? {
        Some(accepted) => accepted,
        None => return Err(failed(store, user, &proof, client).await),
    };
    let txn = begin_write(store.db()).await?;
    if !accepted.spend(&txn, user.id, now).await? {
        drop(txn);
        return Err(failed(store, user, &proof, client).await);
    }
    if let Proof::RecoveryCode(_) = proof {
        audit::record(&txn, now, Event::own(Kind::RecoveryCodeUsed, user.id, client)).await?;
    }
    attempt.succeeded_in(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// A proof found right, to be spent in the transaction that uses it.
enum Accepted {
    Step(i64),
    RecoveryCode(Uuid),
}

impl Accepted {
    /// Marks the proof used; false when it already was (a replayed code, a racing use).
    async fn spend(&self, conn: &impl ConnectionTrait, user_id: Uuid, now: DateTime<Utc>) -> Result<bool, AppError> {
        let spent = match self {
            Accepted::Step(step) => {
                totp_factor::Entity::update_many()
                    .col_expr(totp_factor::Column::LastUsedStep, Expr::value(*step))
                    .filter(totp_factor::Column::UserId.eq(user_id))
                    .filter(totp_factor::Column::ConfirmedAt.is_not_null())
                    .filter(
                        Condition::any()
                            .add(totp_factor::Column::LastUsedStep.is_null())
                            .add(totp_factor::Column::LastUsedStep.lt(*step)),
                    )
                    .exec(conn)
                    .await?
            }
            Accepted::RecoveryCode(id) => {
                recovery_code::Entity::update_many()
                    .col_expr(recovery_code::Column::UsedAt, Expr::value(now))
                    .filter(recovery_code::Column::Id.eq(*id))
                    .filter(recovery_code::Column::UserId.eq(user_id))
                    .filter(recovery_code::Column::UsedAt.is_null())
                    .exec(conn)
                    .await?
            }
        };
        Ok(spent.rows_affected == 1)
    }
}

/// Whether `proof` is right for the user, without spending it. `BAD_USER_INPUT` when the
/// user has no TOTP on.
async fn check(
    conn: &impl ConnectionTrait,
    sealing: &SealingKey,
    user: &user::Model,
    proof: &Proof<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Accepted>, AppError> {
    let factor = totp_factor::Entity::find_by_id(user.id)
        .one(conn)
        .await?
        .filter(|f| f.confirmed_at.is_some())
        .ok_or_else(|| AppError::bad_input(proof.field(), "no second factor is enabled for this account"))?;
    match proof {
        Proof::Code(code) => {
            let secret = sealing.open(&factor.sealed_secret).ok_or_else(unreadable_secret)?;
            let step = matching_step(&totp(secret, &user.username)?, code, now);
            Ok(step
                .filter(|step| factor.last_used_step.is_none_or(|last| *step > last))
                .map(Accepted::Step))
        }
        Proof::RecoveryCode(code) => {
            use subtle::ConstantTimeEq;
            let unused = recovery_code::Entity::find()
                .filter(recovery_code::Column::UserId.eq(user.id))
                .filter(recovery_code::Column::UsedAt.is_null())
                .all(conn)
                .await?;
            Ok(unused
                .into_iter()
                .find(|row| bool::from(salted_hash(&row.salt, code).ct_eq(&row.code_hash)))
                .map(|row| Accepted::RecoveryCode(row.id)))
        }
    }
}

/// Records a wrong second factor (the attempt stays counted as a failed login) and returns
/// the error to answer with.
async fn failed(store: &SessionStore, user: &user::Model, proof: &Proof<'_>, client: &ClientInfo) -> AppError {
    let event = Event {
        kind: Kind::SecondFactorFailed,
        actor: None,
        subject: Some(user.id),
        client,
        detail: Some(serde_json::json!({ "field": proof.field() })),
    };
    match audit::record_refused(store, event).await {
        Ok(()) => AppError::bad_input(proof.field(), "the code is wrong, used or expired"),
        Err(e) => e,
    }
}

fn unreadable_secret() -> AppError {
    AppError::Internal(anyhow::anyhow!(
        "a TOTP secret does not open with this server's sealing key (was the signing secret changed?)"
    ))
}

fn new_recovery_code() -> String {
    let mut rng = rand::thread_rng();
    let mut pick = || RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())] as char;
    let (left, right): (String, String) = ((0..5).map(|_| pick()).collect(), (0..5).map(|_| pick()).collect());
    format!("{left}-{right}")
}

/// What a recovery code is stored as: SHA-256 of its salt and the code as normalized.
fn salted_hash(salt: &[u8], code: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(normalize_recovery_code(code).as_bytes());
    hasher.finalize().to_vec()
}

/// Case, spaces and dashes do not matter when a recovery code is typed back.
fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_and_one_either_side_only() {
        let totp = totp(vec![7; SECRET_BYTES], "sam").unwrap();
        let now = DateTime::from_timestamp(1_800_000_015, 0).unwrap();
        let step = 1_800_000_015 / 30;
        for (offset, expected) in [
            (0, Some(step)),
            (-1, Some(step - 1)),
            (1, Some(step + 1)),
            (-2, None),
            (2, None),
        ] {
            let code = totp.generate(((step + offset) * 30) as u64);
            assert_eq!(matching_step(&totp, &code, now), expected, "offset {offset}");
        }
        assert_eq!(matching_step(&totp, "", now), None);
        // RFC 6238 appendix B, SHA-1, 59 s, truncated to 6 digits.
        let rfc = totp_rs::TOTP::new_unchecked(
            Algorithm::SHA1,
            6,
            1,
            30,
            b"12345678901234567890".to_vec(),
            None,
            String::new(),
        );
        assert_eq!(rfc.generate(59), "287082");
    }

    #[test]
    fn recovery_codes_are_ten_characters_of_the_alphabet_and_typed_loosely() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 11);
        assert!(code.replace('-', "").bytes().all(|b| RECOVERY_ALPHABET.contains(&b)));
        assert_eq!(
            normalize_recovery_code(&format!(" {} ", code.to_uppercase())),
            code.replace('-', "")
        );
    }
}
