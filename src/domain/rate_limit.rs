//! Rate limits (API.md §7 `RATE_LIMITED`): attempts counted in a sliding window per
//! case-folded username and per client address. The counts live in the `attempts` table, so
//! every instance sharing the database sees the same ones.

use std::net::{IpAddr, Ipv6Addr};

use chrono::{DateTime, Duration, Utc};
use entity::attempt;
use sea_orm::sea_query::DeleteStatement;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait,
};
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::AppError;

/// Longest username key stored: no account name is longer than 64 characters, so a longer
/// (hopeless) name is cut rather than stored whole, and stays distinct from every real one.
const MAX_KEY_CHARS: usize = 65;
/// The longest window accepted (`Config::validate` says the same).
pub const MAX_WINDOW_SECONDS: i64 = 366 * 24 * 3600;

/// What is being attempted; each has its own limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `login`: failures count, per username and per address.
    Login,
    /// `signup`: every attempt counts, per address.
    Signup,
    /// `requestPasswordReset` (every request, per address, and per account once the account
    /// is found) and `resetPassword` (failures, per address).
    Reset,
    /// Verification mails, per account, within the same limit as reset mails.
    Verify,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Signup => "signup",
            Action::Reset => "reset",
            Action::Verify => "verify",
        }
    }
}

/// The limits in force; 0 turns one off.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub login_user: u32,
    pub login_ip: u32,
    pub signup_ip: u32,
    pub reset_ip: u32,
    pub reset_user: u32,
    pub window_seconds: u64,
}

impl From<&Config> for Limits {
    fn from(config: &Config) -> Self {
        Limits {
            login_user: config.rate_limit_login_user,
            login_ip: config.rate_limit_login_ip,
            signup_ip: config.rate_limit_signup_ip,
            reset_ip: config.rate_limit_reset_ip,
            reset_user: config.rate_limit_reset_user,
            window_seconds: config.rate_limit_window,
        }
    }
}

/// Counts attempts against the limits, in the database every instance shares.
#[derive(Clone)]
pub struct RateLimiter {
    db: DatabaseConnection,
    clock: Clock,
    limits: Limits,
}

/// An attempt admitted and counted. Call `succeeded` when it should stop counting.
#[must_use = "an attempt that succeeds must be told so, or it counts as a failure"]
pub struct Attempt {
    id: Option<Uuid>,
}

impl Attempt {
    /// A success is not a failure: this attempt stops counting (earlier failures stay).
    pub async fn succeeded(self, limiter: &RateLimiter) -> Result<(), AppError> {
        self.succeeded_in(&limiter.db).await
    }

    /// `succeeded`, on the transaction of the change the success makes.
    pub async fn succeeded_in(self, conn: &impl ConnectionTrait) -> Result<(), AppError> {
        if let Some(delete) = self.success() {
            conn.execute(conn.get_database_backend().build(&delete)).await?;
        }
        Ok(())
    }

    /// The statement that stops the attempt counting, to send with the others of the change
    /// the success makes; `None` when nothing was counted.
    pub fn success(&self) -> Option<DeleteStatement> {
        self.id.map(|id| attempt::Entity::delete_by_id(id).into_query())
    }
}

impl RateLimiter {
    pub fn new(db: DatabaseConnection, clock: Clock, limits: Limits) -> Self {
        RateLimiter { db, clock, limits }
    }

    /// Counts an attempt, or refuses it with `RateLimited` when it would go over a limit.
    ///
    /// The row is written before counting, so concurrent attempts (other requests, other
    /// instances) see each other: of racing attempts, the later ones are refused. A refused
    /// attempt's row is removed again, so refusals never extend a lockout.
    pub async fn admit(&self, action: Action, username: Option<&str>, ip: Option<IpAddr>) -> Result<Attempt, AppError> {
        let limits = &self.limits;
        let username_key = username.map(|u| u.to_lowercase().chars().take(MAX_KEY_CHARS).collect::<String>());
        let ip = ip.map(address_key);
        let (user_limit, ip_limit) = match action {
            Action::Login => (limits.login_user, limits.login_ip),
            Action::Signup => (0, limits.signup_ip),
            Action::Reset => (limits.reset_user, limits.reset_ip),
            Action::Verify => (limits.reset_user, 0),
        };
        // Each check: the column, the value to match and the limit; 0 turns a limit off.
        let mut checks = Vec::new();
        if let (Some(key), true) = (&username_key, user_limit > 0) {
            checks.push((attempt::Column::UsernameKey, key.clone(), user_limit));
        }
        if let (Some(ip), true) = (&ip, ip_limit > 0) {
            checks.push((attempt::Column::Ip, ip.clone(), ip_limit));
        }
        if checks.is_empty() {
            return Ok(Attempt { id: None });
        }

        let now = self.clock.now();
        let since = now - self.window();
        let id = Uuid::new_v4();
        let row = attempt::ActiveModel {
            id: Set(id),
            kind: Set(action.as_str().to_owned()),
            username_key: Set(username_key),
            ip: Set(ip),
            at: Set(now),
        };
        attempt::Entity::insert(row).exec_without_returning(&self.db).await?;

        for (column, value, limit) in checks {
            let counted = attempt::Entity::find()
                .filter(attempt::Column::Kind.eq(action.as_str()))
                .filter(column.eq(value.as_str()))
                .filter(attempt::Column::At.gt(since))
                .count(&self.db)
                .await?;
            if counted > u64::from(limit) {
                attempt::Entity::delete_by_id(id).exec(&self.db).await?;
                let retry_after = self.retry_after(action, column, &value, limit, since, now).await?;
                return Err(AppError::RateLimited { retry_after });
            }
        }
        Ok(Attempt { id: Some(id) })
    }

    /// Seconds until enough of the counted attempts have left the window for one more to fit:
    /// with `n` counted and `limit` allowed, the `(n - limit + 1)`th oldest must slide out.
    async fn retry_after(
        &self,
        action: Action,
        column: attempt::Column,
        value: &str,
        limit: u32,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, AppError> {
        let filter = || {
            attempt::Entity::find()
                .filter(attempt::Column::Kind.eq(action.as_str()))
                .filter(column.eq(value))
                .filter(attempt::Column::At.gt(since))
        };
        let counted = filter().count(&self.db).await?;
        let oldest_to_go: Option<DateTime<Utc>> = filter()
            .select_only()
            .column(attempt::Column::At)
            .order_by_asc(attempt::Column::At)
            .offset(counted.saturating_sub(u64::from(limit)))
            .limit(1)
            .into_tuple()
            .one(&self.db)
            .await?;
        let millis = oldest_to_go.map_or(0, |at| (at + self.window() - now).num_milliseconds());
        // Rounded up, and at least a second: retrying earlier would be refused again.
        Ok(u64::try_from(millis).unwrap_or(0).div_ceil(1000).max(1))
    }

    /// Deletes attempts that have left the window; returns how many.
    pub async fn delete_old(&self) -> Result<u64, AppError> {
        let since = self.clock.now() - self.window();
        let deleted = attempt::Entity::delete_many()
            .filter(attempt::Column::At.lte(since))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    fn window(&self) -> Duration {
        // `Config::validate` keeps the window within a year, far inside chrono's range.
        Duration::seconds(i64::try_from(self.limits.window_seconds).unwrap_or(MAX_WINDOW_SECONDS))
    }
}

/// The key an address is counted under: an IPv4 address itself, an IPv6 address by its /64.
/// One subscriber usually holds a whole /64, so counting single IPv6 addresses would let a
/// client step to a fresh address on every attempt.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{}/64", Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}
