//! Instances sharing one PostgreSQL database tell each other what they changed through
//! `LISTEN/NOTIFY` on one channel. A change announces itself inside its own transaction, so
//! the notification goes out exactly when the change commits, and a change whose notification
//! cannot be sent does not happen. Each instance also sends itself a heartbeat through the
//! channel: hearing it proves notifications are arriving, and while it is not heard the cache
//! is not trusted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use uuid::Uuid;

use super::cache::{SessionCache, Sites, Stale};
use crate::error::AppError;

/// The channel every instance listens on.
pub const CHANNEL: &str = "gatehouse_invalidate";
/// How often an instance sends itself a heartbeat; `cache::HEARTBEAT_TIMEOUT` is several times this.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(400);
/// How long to wait before reconnecting a lost notification channel.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// NOTIFY payloads stop at 8000 bytes; past this many users and sites a change says "all".
const MAX_NAMED: usize = 100;

/// Faults a test can switch on to see what a lost notification does.
#[derive(Default)]
pub struct Faults {
    /// Announcements fail, as a broken connection would make them.
    pub fail_announcements: AtomicBool,
    /// Everything arriving on the channel is ignored, heartbeats included, as on a channel
    /// that silently stopped delivering.
    pub deaf: AtomicBool,
}

enum Message {
    Heartbeat(Uuid),
    Stale(Stale),
}

/// `users:<id>,<id>;sites:<id>,<id>` (or `sites:all`), or `all`.
fn payload(stale: &Stale) -> String {
    let listed = |ids: &[Uuid]| ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(",");
    let Stale::Named { users, sites } = stale else {
        return "all".to_owned();
    };
    let sites = match sites {
        Sites::Named(sites) if users.len() + sites.len() <= MAX_NAMED => listed(sites),
        Sites::All if users.len() <= MAX_NAMED => "all".to_owned(),
        _ => return "all".to_owned(),
    };
    format!("users:{};sites:{sites}", listed(users))
}

fn ids(listed: &str) -> Option<Vec<Uuid>> {
    listed
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| id.parse().ok())
        .collect()
}

fn parse(payload: &str) -> Message {
    if let Some(id) = payload.strip_prefix("heartbeat:").and_then(|id| id.parse().ok()) {
        return Message::Heartbeat(id);
    }
    let named = payload.strip_prefix("users:").and_then(|listed| {
        let (users, sites) = match listed.split_once(";sites:") {
            Some((users, "all")) => (ids(users)?, Sites::All),
            Some((users, sites)) => (ids(users)?, Sites::Named(ids(sites)?)),
            // From an instance that names no sites, whose changes may still touch some.
            None => (ids(listed)?, Sites::All),
        };
        Some(Stale::Named { users, sites })
    });
    // Anything unexpected is taken as the widest change.
    Message::Stale(named.unwrap_or(Stale::All))
}

/// Announces `stale` to every instance, on the change's own transaction: PostgreSQL delivers
/// it when, and only if, that transaction commits. Nothing to do on SQLite (one instance).
pub async fn announce(conn: &impl ConnectionTrait, faults: &Faults, stale: &Stale) -> Result<(), AppError> {
    if stale.is_nothing() || conn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let channel = match faults.fail_announcements.load(Ordering::SeqCst) {
        // An empty channel name makes PostgreSQL itself refuse the statement.
        true => "",
        false => CHANNEL,
    };
    notify(conn, channel, payload(stale)).await
}

async fn notify(conn: &impl ConnectionTrait, channel: &str, payload: String) -> Result<(), AppError> {
    let statement = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    );
    conn.execute(statement).await?;
    Ok(())
}

/// Keeps this instance listening: applies every announced change to `cache`, and keeps the
/// cache trusted only while the channel is up and this instance's heartbeats come back.
pub async fn listen(db: DatabaseConnection, cache: Arc<SessionCache>, faults: Arc<Faults>) {
    let pool = db.get_postgres_connection_pool().clone();
    let me = Uuid::new_v4();
    // A task of its own: receiving is not safe to interrupt half-way through a message.
    let _heartbeats = AbortOnDrop(tokio::spawn(send_heartbeats(db, me)));
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => {
                    cache.set_connected(true);
                    tracing::info!("session cache on: listening for changes");
                    // `Ok(None)` or an error: the connection dropped and notifications may
                    // have been missed.
                    while let Ok(Some(notification)) = listener.try_recv().await {
                        if faults.deaf.load(Ordering::SeqCst) {
                            continue;
                        }
                        match parse(notification.payload()) {
                            Message::Heartbeat(id) if id == me => cache.heard_heartbeat(),
                            Message::Heartbeat(_) => {}
                            Message::Stale(stale) => cache.invalidate(&stale),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not LISTEN for changes"),
            },
            Err(e) => tracing::warn!(error = %e, "notification channel unavailable"),
        }
        cache.set_connected(false);
        tracing::warn!("session cache off until the notification channel is back");
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn send_heartbeats(db: DatabaseConnection, me: Uuid) {
    let heartbeat = format!("heartbeat:{me}");
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        every.tick().await;
        if let Err(e) = notify(&db, CHANNEL, heartbeat.clone()).await {
            tracing::warn!(error = %e, "could not send a heartbeat");
        }
    }
}

/// Stops the heartbeats when the listener itself is stopped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let (a, b, site) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut with_site = Stale::users(vec![a, b]);
        with_site.add_site(site);
        let mut every_site = Stale::Nothing;
        every_site.add_every_site();
        for stale in [Stale::users(vec![a, b]), with_site, every_site] {
            let Message::Stale(heard) = parse(&payload(&stale)) else {
                panic!("not a change");
            };
            assert_eq!(heard, stale);
        }
        let me = Uuid::new_v4();
        assert!(matches!(parse(&format!("heartbeat:{me}")), Message::Heartbeat(id) if id == me));
        for widest in ["all", "garbage", "users:not-a-uuid", "users:;sites:not-a-uuid"] {
            assert!(matches!(parse(widest), Message::Stale(Stale::All)), "{widest}");
        }
        let many: Vec<Uuid> = (0..=MAX_NAMED).map(|_| Uuid::new_v4()).collect();
        assert_eq!(payload(&Stale::users(many.clone())), "all");
        // Deleting many users drops every list: still too many users to name.
        let mut deleted = Stale::users(many);
        deleted.add_every_site();
        assert_eq!(payload(&deleted), "all");
        let mut sites = Stale::Nothing;
        (0..=MAX_NAMED).for_each(|_| sites.add_site(Uuid::new_v4()));
        assert_eq!(payload(&sites), "all");
    }

    #[test]
    fn a_change_that_names_no_sites_may_have_touched_any() {
        let a = Uuid::new_v4();
        let Message::Stale(heard) = parse(&format!("users:{a}")) else {
            panic!("not a change");
        };
        let sites = Sites::All;
        assert_eq!(heard, Stale::Named { users: vec![a], sites });
    }
}
