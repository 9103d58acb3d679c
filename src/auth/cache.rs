//! The session cache: token checks skip the database while it is trusted. Revocation stays
//! exact: the instance making a change drops what it cached before answering, and tells the
//! others through PostgreSQL `LISTEN/NOTIFY`; while that channel is down nothing is cached.
//! A generation counter keeps a lookup that raced an invalidation from caching stale rows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use uuid::Uuid;

/// The channel every instance listens on.
pub const CHANNEL: &str = "gatehouse_invalidate";
/// More cached sessions than this and the cache starts over, bounding memory.
const MAX_SESSIONS: usize = 200_000;
/// How long to wait before reconnecting a lost notification channel.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct CachedSession {
    pub user_id: Uuid,
    pub secret_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

/// What a change makes stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    /// A user's sessions or roles changed.
    User(Uuid),
    /// Too much to list (a site and its members went): drop everything.
    All,
}

impl Stale {
    fn payload(self) -> String {
        match self {
            Stale::User(id) => format!("user:{id}"),
            Stale::All => "all".to_owned(),
        }
    }

    fn parse(payload: &str) -> Self {
        match payload.strip_prefix("user:").and_then(|id| id.parse().ok()) {
            Some(id) => Stale::User(id),
            // Anything unexpected is treated as the widest invalidation.
            None => Stale::All,
        }
    }
}

#[derive(Clone, Default)]
pub struct SessionCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: RwLock<HashMap<Uuid, CachedSession>>,
    /// Roles per user; a session whose user has no entry here is looked up again in full.
    roles: RwLock<HashMap<Uuid, Arc<Vec<String>>>>,
    generation: AtomicU64,
    trusted: AtomicBool,
}

impl SessionCache {
    /// A cache that is trusted from the start: for a single instance (SQLite).
    pub fn trusted() -> Self {
        let cache = SessionCache::default();
        cache.inner.trusted.store(true, Ordering::SeqCst);
        cache
    }

    pub fn is_trusted(&self) -> bool {
        self.inner.trusted.load(Ordering::SeqCst)
    }

    /// The session and its user's roles, when both are cached and the cache is trusted.
    pub fn get(&self, session_id: Uuid) -> Option<(CachedSession, Arc<Vec<String>>)> {
        if !self.is_trusted() {
            return None;
        }
        let session = self.inner.sessions.read().ok()?.get(&session_id)?.clone();
        let roles = self.inner.roles.read().ok()?.get(&session.user_id)?.clone();
        Some((session, roles))
    }

    /// Take this before reading the database; `insert` refuses rows read before an invalidation.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    pub fn insert(&self, session_id: Uuid, session: CachedSession, roles: Vec<String>, read_at_generation: u64) {
        if !self.is_trusted() {
            return;
        }
        let (Ok(mut sessions), Ok(mut all_roles)) = (self.inner.sessions.write(), self.inner.roles.write()) else {
            return;
        };
        // Checked under the write locks, which invalidation also takes.
        if self.generation() != read_at_generation {
            return;
        }
        if sessions.len() >= MAX_SESSIONS {
            sessions.clear();
            all_roles.clear();
        }
        all_roles.insert(session.user_id, Arc::new(roles));
        sessions.insert(session_id, session);
    }

    /// Drops what `stale` names, here and now.
    pub fn invalidate(&self, stale: Stale) {
        let (Ok(mut sessions), Ok(mut roles)) = (self.inner.sessions.write(), self.inner.roles.write()) else {
            return;
        };
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        match stale {
            Stale::User(user_id) => {
                roles.remove(&user_id);
            }
            Stale::All => {
                sessions.clear();
                roles.clear();
            }
        }
    }

    fn set_trusted(&self, trusted: bool) {
        if !trusted {
            self.inner.trusted.store(false, Ordering::SeqCst);
        }
        // Whatever was cached may have missed notifications: start empty either way.
        self.invalidate(Stale::All);
        if trusted {
            self.inner.trusted.store(true, Ordering::SeqCst);
        }
    }
}

/// Tells every instance (this one included) that `stale` changed. Call after the change
/// committed; on SQLite there is only this instance, which `invalidate` already covers.
pub async fn publish(db: &DatabaseConnection, stale: Stale) {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    let statement = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), stale.payload().into()],
    );
    if let Err(e) = db.execute(statement).await {
        // Other instances will not hear of it: their caches stay up to 0 ms stale only if
        // their channel is down too; log loudly.
        tracing::error!(error = %e, "could not publish a session invalidation");
    }
}

/// Keeps this instance listening for invalidations; the cache is trusted only while the
/// listener is connected. PostgreSQL only.
pub async fn listen(db: DatabaseConnection, cache: SessionCache) {
    let pool = db.get_postgres_connection_pool().clone();
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => {
                    cache.set_trusted(true);
                    tracing::info!("session cache on: listening for invalidations");
                    // `Ok(None)` or an error: the connection dropped and notifications may
                    // have been missed.
                    while let Ok(Some(notification)) = listener.try_recv().await {
                        cache.invalidate(Stale::parse(notification.payload()));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not LISTEN for invalidations"),
            },
            Err(e) => tracing::warn!(error = %e, "notification channel unavailable"),
        }
        cache.set_trusted(false);
        tracing::warn!("session cache off until the notification channel is back");
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user_id: Uuid) -> CachedSession {
        CachedSession {
            user_id,
            secret_hash: vec![1],
            expires_at: Utc::now(),
        }
    }

    #[test]
    fn hits_until_the_user_is_invalidated() {
        let cache = SessionCache::trusted();
        let (sid, uid) = (Uuid::new_v4(), Uuid::new_v4());
        cache.insert(sid, session(uid), vec!["user".into()], cache.generation());
        assert_eq!(cache.get(sid).unwrap().1.as_slice(), ["user".to_string()]);
        cache.invalidate(Stale::User(Uuid::new_v4()));
        assert!(cache.get(sid).is_some(), "another user's change leaves it");
        cache.invalidate(Stale::User(uid));
        assert!(cache.get(sid).is_none());
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_cached() {
        let cache = SessionCache::trusted();
        let (sid, uid) = (Uuid::new_v4(), Uuid::new_v4());
        let before = cache.generation();
        cache.invalidate(Stale::User(uid));
        cache.insert(sid, session(uid), vec![], before);
        assert!(cache.get(sid).is_none());
    }

    #[test]
    fn an_untrusted_cache_neither_answers_nor_stores() {
        let cache = SessionCache::default();
        let (sid, uid) = (Uuid::new_v4(), Uuid::new_v4());
        cache.insert(sid, session(uid), vec![], cache.generation());
        assert!(cache.get(sid).is_none());
        cache.set_trusted(true);
        cache.insert(sid, session(uid), vec![], cache.generation());
        assert!(cache.get(sid).is_some());
        cache.set_trusted(false);
        assert!(cache.get(sid).is_none());
    }

    #[test]
    fn payloads_round_trip() {
        let id = Uuid::new_v4();
        assert_eq!(Stale::parse(&Stale::User(id).payload()), Stale::User(id));
        assert_eq!(Stale::parse("all"), Stale::All);
        assert_eq!(Stale::parse("garbage"), Stale::All);
    }
}
