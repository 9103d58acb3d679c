//! The session store: the one owner of session rows, the roles a session carries (global
//! roles and site memberships) and the cache in front of them.
//!
//! Reads go through `SessionStore`; every write goes through a `SessionChange`, a transaction
//! that remembers whose sessions or roles it touched. Committing it announces those users to
//! the other instances inside the transaction itself, commits, and drops them from this
//! instance's cache, all in a task of its own: a request that is dropped half-way (a client
//! that disconnects, a proxy timeout) cannot stop the invalidation once the commit is under
//! way, and a change whose announcement fails is not made at all.

mod cache;
mod last_seen;
mod peers;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use entity::{session, site, site_member, user, user_role};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

use crate::auth::token::{self, Claims, TokenKeys};
use crate::client::ClientInfo;
use crate::clock::Clock;
use crate::error::AppError;
use cache::SessionCache;
pub use cache::{Stale, HEARTBEAT_TIMEOUT};
pub use last_seen::LastSeen;
pub use peers::Faults;

/// The signed-in caller of a request, with their account and the roles their session carries now.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub roles: Vec<String>,
    pub user: Arc<user::Model>,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Who a request runs as.
#[derive(Clone, Debug)]
pub enum Identity {
    Anonymous,
    User(Caller),
}

impl Identity {
    pub fn caller(&self) -> Option<&Caller> {
        match self {
            Identity::Anonymous => None,
            Identity::User(caller) => Some(caller),
        }
    }
}

/// A session just opened, with the only copy of its token and the roles it carries.
pub struct IssuedSession {
    pub token: String,
    pub session: session::Model,
    pub roles: Vec<String>,
}

#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    clock: Clock,
    tokens: Arc<TokenKeys>,
    ttl: Duration,
    cache: Arc<SessionCache>,
    faults: Arc<Faults>,
    last_seen: LastSeen,
}

impl SessionStore {
    /// On SQLite there is one instance and the cache is always trusted; on PostgreSQL it is
    /// trusted only while `listen` hears the other instances.
    pub fn new(db: DatabaseConnection, clock: Clock, tokens: Arc<TokenKeys>, ttl_seconds: u64) -> Self {
        let single_instance = db.get_database_backend() != sea_orm::DatabaseBackend::Postgres;
        SessionStore {
            inner: Arc::new(Inner {
                db,
                clock,
                tokens,
                ttl: Duration::seconds(i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 1000)),
                cache: Arc::new(SessionCache::new(single_instance)),
                faults: Arc::default(),
                last_seen: LastSeen::default(),
            }),
        }
    }

    /// The database the sessions live in, for reads that go with them.
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// The store's clock: the one sessions expire by.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Whether token checks may be answered from the cache right now.
    pub fn is_trusted(&self) -> bool {
        self.inner.cache.is_trusted()
    }

    /// Switches for tests that break the notification channel on purpose.
    #[doc(hidden)]
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Listens for the other instances' changes, for as long as the returned future runs;
    /// `None` on SQLite, which has no other instances.
    pub fn listen(&self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let inner = &self.inner;
        (inner.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres)
            .then(|| peers::listen(inner.db.clone(), inner.cache.clone(), inner.faults.clone()))
    }

    /// Starts a change to sessions or roles.
    pub async fn begin(&self) -> Result<SessionChange, AppError> {
        Ok(SessionChange {
            txn: self.inner.db.begin().await?,
            store: self.clone(),
            stale: Stale::Nothing,
        })
    }

    /// Turns a verified token into the caller: the session must exist, be unexpired and match
    /// the token's secret; the roles are the ones the user holds now, never the token's.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, claims: &Claims) -> Result<Caller, AppError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let session = match inner.cache.get(claims.sid) {
            Some(session) => session,
            None => {
                let generation = inner.cache.generation();
                let (row, user) = session::Entity::find_by_id(claims.sid)
                    .find_also_related(user::Entity)
                    .one(&inner.db)
                    .await?
                    .ok_or(AppError::InvalidToken)?;
                let user = user.ok_or(AppError::InvalidToken)?;
                let roles = roles_of(&inner.db, row.user_id).await?;
                inner
                    .cache
                    .insert(claims.sid, row.secret_hash, row.expires_at, user, roles, generation)
            }
        };
        let live = session.user_id == claims.sub && session.expires_at > now;
        if !live || !token::secret_matches(&claims.sk, &session.secret_hash) {
            return Err(AppError::InvalidToken);
        }
        inner.last_seen.touch(claims.sid, now);
        Ok(Caller {
            user_id: session.user_id,
            session_id: claims.sid,
            roles: session.user.roles.to_vec(),
            user: session.user.user.clone(),
        })
    }

    /// The roles `user_id` holds now, read from the database.
    pub async fn roles(&self, user_id: Uuid) -> Result<Vec<String>, AppError> {
        roles_of(&self.inner.db, user_id).await
    }

    /// Live sessions of a user, newest first, with last-seen times not yet written merged in.
    pub async fn list(&self, user_id: Uuid) -> Result<Vec<session::Model>, AppError> {
        let inner = &self.inner;
        let mut sessions = live_of(user_id, inner.clock.now())
            .order_by_desc(session::Column::CreatedAt)
            .order_by_desc(session::Column::Id)
            .all(&inner.db)
            .await?;
        for s in &mut sessions {
            if let Some(at) = inner.last_seen.pending(s.id) {
                s.last_seen_at = Some(s.last_seen_at.map_or(at, |seen| seen.max(at)));
            }
        }
        Ok(sessions)
    }

    pub async fn count(&self, user_id: Uuid) -> Result<u64, AppError> {
        Ok(live_of(user_id, self.inner.clock.now()).count(&self.inner.db).await?)
    }

    /// Live sessions of every user (the `live sessions` metric).
    pub async fn count_live(&self) -> Result<u64, AppError> {
        Ok(session::Entity::find()
            .filter(session::Column::ExpiresAt.gt(self.inner.clock.now()))
            .count(&self.inner.db)
            .await?)
    }

    /// Deletes up to `batch` expired sessions; returns how many, so the caller can loop.
    /// Expired sessions are refused already, so no cache needs to hear of it.
    pub async fn delete_expired(&self, batch: u64) -> Result<u64, AppError> {
        let db = &self.inner.db;
        let ids: Vec<Uuid> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::ExpiresAt.lte(self.inner.clock.now()))
            .limit(batch)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = session::Entity::delete_many()
            .filter(session::Column::Id.is_in(ids))
            .exec(db)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Writes the last-seen times noted since the previous call.
    pub async fn flush_last_seen(&self) -> Result<(), AppError> {
        self.inner.last_seen.flush(&self.inner.db).await
    }
}

fn live_of(user_id: Uuid, now: DateTime<Utc>) -> sea_orm::Select<session::Entity> {
    session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::ExpiresAt.gt(now))
}

/// Every role of a user, sorted: global roles, then site roles as `<siteId>:<role>`.
pub async fn roles_of(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<String>, AppError> {
    let mut roles: Vec<String> = user_role::Entity::find()
        .select_only()
        .column(user_role::Column::Role)
        .filter(user_role::Column::UserId.eq(user_id))
        .order_by_asc(user_role::Column::Role)
        .into_tuple()
        .all(conn)
        .await?;
    let memberships: Vec<(Uuid, String)> = site_member::Entity::find()
        .select_only()
        .column(site_member::Column::SiteId)
        .column(site_member::Column::Role)
        .filter(site_member::Column::UserId.eq(user_id))
        .into_tuple()
        .all(conn)
        .await?;
    let mut site_roles: Vec<String> = memberships
        .into_iter()
        .map(|(site, role)| format!("{site}:{role}"))
        .collect();
    site_roles.sort();
    roles.extend(site_roles);
    Ok(roles)
}

/// A transaction that changes sessions or roles. Writes to those tables happen only through
/// its methods, each of which notes whose entries it makes stale; `commit` invalidates them.
/// Dropped without `commit`, it rolls back and nothing needs invalidating.
pub struct SessionChange {
    txn: DatabaseTransaction,
    store: SessionStore,
    stale: Stale,
}

impl SessionChange {
    /// The store's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.store.now()
    }

    /// The transaction, for the other writes that belong with the change (audit rows, users).
    pub fn txn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Commits, tells the other instances and empties this instance's cache of whatever the
    /// change touched, in a task that runs to the end even if the request is dropped.
    pub async fn commit(self) -> Result<(), AppError> {
        let SessionChange { txn, store, stale } = self;
        let task = tokio::spawn(async move {
            let inner = &store.inner;
            peers::announce(&txn, &inner.faults, &stale).await?;
            let committed = txn.commit().await;
            // Even a commit whose answer was lost may have landed.
            inner.cache.invalidate(&stale);
            Ok(committed?)
        });
        task.await.map_err(|e| AppError::Internal(e.into()))?
    }

    /// Inserts a session for `user_id` and signs its token.
    pub async fn open(&mut self, user_id: Uuid, client: &ClientInfo) -> Result<IssuedSession, AppError> {
        let inner = &self.store.inner;
        let now = inner.clock.now();
        let expires_at = now + inner.ttl;
        let (secret, secret_hash) = token::new_session_secret();
        let row = session::ActiveModel {
            id: Set(Uuid::new_v4()),
            user_id: Set(user_id),
            secret_hash: Set(secret_hash),
            created_at: Set(now),
            expires_at: Set(expires_at),
            last_seen_at: Set(Some(now)),
            user_agent: Set(client.user_agent.clone()),
            ip: Set(client.ip.map(|ip| ip.to_string())),
        };
        let session = session::Entity::insert(row).exec_with_returning(&self.txn).await?;
        let roles = roles_of(&self.txn, user_id).await?;
        let claims = Claims::new(
            user_id,
            session.id,
            secret,
            now.timestamp(),
            expires_at.timestamp(),
            &roles,
        );
        let token = inner.tokens.sign(&claims)?;
        Ok(IssuedSession { token, session, roles })
    }

    /// Updates a user's row (profile, password): cached copies of it go with the change.
    pub async fn update_user(&mut self, row: user::ActiveModel) -> Result<user::Model, sea_orm::DbErr> {
        if let sea_orm::ActiveValue::Set(id) | sea_orm::ActiveValue::Unchanged(id) = &row.id {
            self.stale.add(*id);
        }
        sea_orm::ActiveModelTrait::update(row, &self.txn).await
    }

    /// Closes one live session of `user_id`; false when there is none by that id.
    pub async fn close(&mut self, user_id: Uuid, session_id: Uuid) -> Result<bool, AppError> {
        self.stale.add(user_id);
        let deleted = session::Entity::delete_many()
            .filter(session::Column::Id.eq(session_id))
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::ExpiresAt.gt(self.store.inner.clock.now()))
            .exec(&self.txn)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Closes every live session of `user_id`; returns how many. Expired ones are refused
    /// already and left to the sweep.
    pub async fn close_all(&mut self, user_id: Uuid) -> Result<u64, AppError> {
        self.stale.add(user_id);
        let deleted = session::Entity::delete_many()
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::ExpiresAt.gt(self.store.inner.clock.now()))
            .exec(&self.txn)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Adds global roles; roles already held stay as they are.
    pub async fn grant(&mut self, user_id: Uuid, roles: &[&str], now: DateTime<Utc>) -> Result<(), AppError> {
        self.stale.add(user_id);
        let rows = roles.iter().map(|role| user_role::ActiveModel {
            user_id: Set(user_id),
            role: Set((*role).to_owned()),
            granted_at: Set(now),
        });
        user_role::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([user_role::Column::UserId, user_role::Column::Role])
                    .do_nothing()
                    .to_owned(),
            )
            .do_nothing()
            .exec(&self.txn)
            .await?;
        Ok(())
    }

    /// Removes global roles.
    pub async fn revoke(&mut self, user_id: Uuid, roles: &[String]) -> Result<(), AppError> {
        self.stale.add(user_id);
        user_role::Entity::delete_many()
            .filter(user_role::Column::UserId.eq(user_id))
            .filter(user_role::Column::Role.is_in(roles.iter().cloned()))
            .exec(&self.txn)
            .await?;
        Ok(())
    }

    /// Gives `user_id` the role `role` on a site, replacing any role they had there; with
    /// `keep_existing`, a member keeps the role they have. Returns whether a row was written.
    pub async fn put_site_member(
        &mut self,
        site_id: Uuid,
        user_id: Uuid,
        role: &str,
        keep_existing: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        self.stale.add(user_id);
        let row = site_member::ActiveModel {
            site_id: Set(site_id),
            user_id: Set(user_id),
            role: Set(role.to_owned()),
            joined_at: Set(now),
        };
        let mut conflict = OnConflict::columns([site_member::Column::SiteId, site_member::Column::UserId]);
        let conflict = match keep_existing {
            true => conflict.do_nothing().to_owned(),
            false => conflict.update_column(site_member::Column::Role).to_owned(),
        };
        let inserted = site_member::Entity::insert(row)
            .on_conflict(conflict)
            .do_nothing()
            .exec_without_returning(&self.txn)
            .await?;
        Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
    }

    /// Removes `user_id` from a site; false when they were not a member.
    pub async fn remove_site_member(&mut self, site_id: Uuid, user_id: Uuid) -> Result<bool, AppError> {
        self.stale.add(user_id);
        let removed = site_member::Entity::delete_by_id((site_id, user_id))
            .exec(&self.txn)
            .await?;
        Ok(removed.rows_affected > 0)
    }

    /// Deletes a site and with it every membership; false when there was no such site.
    pub async fn delete_site(&mut self, site_id: Uuid) -> Result<bool, AppError> {
        // Its members cannot be listed reliably while others may still be joining: a rare
        // operation, so every cached entry goes.
        self.stale = Stale::All;
        let deleted = site::Entity::delete_by_id(site_id).exec(&self.txn).await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Deletes users; their sessions and roles go with them (foreign keys).
    pub async fn delete_users(&mut self, ids: &[Uuid]) -> Result<(), AppError> {
        ids.iter().for_each(|id| self.stale.add(*id));
        user::Entity::delete_many()
            .filter(user::Column::Id.is_in(ids.iter().copied()))
            .exec(&self.txn)
            .await?;
        Ok(())
    }
}

/// A store on a private in-memory SQLite database, for testing rules without a server.
#[cfg(test)]
pub(crate) async fn in_memory() -> SessionStore {
    use migration::{Migrator, MigratorTrait};
    // One connection: every connection to `:memory:` would be a database of its own.
    let mut options = sea_orm::ConnectOptions::new("sqlite::memory:");
    options.max_connections(1).sqlx_logging(false);
    let db = sea_orm::Database::connect(options).await.expect("in-memory SQLite");
    Migrator::up(&db, None).await.expect("migrations");
    let tokens = Arc::new(TokenKeys::hs256(b"an in-memory test secret of some length"));
    SessionStore::new(db, Clock::default(), tokens, 3600)
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use super::*;

    async fn user_with_session(store: &SessionStore) -> (Uuid, Claims) {
        let now = store.now();
        let row = user::ActiveModel {
            id: Set(Uuid::new_v4()),
            username_key: Set("sam".into()),
            username: Set("sam".into()),
            email_key: Set(None),
            email: Set(None),
            password_hash: Set(String::new()),
            name: Set(None),
            time_zone: Set(None),
            language: Set(None),
            theme: Set(None),
            settings: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            password_changed_at: Set(None),
        };
        let mut change = store.begin().await.unwrap();
        let user = user::Entity::insert(row)
            .exec_with_returning(change.txn())
            .await
            .unwrap();
        change.grant(user.id, &["user"], now).await.unwrap();
        let issued = change.open(user.id, &ClientInfo::default()).await.unwrap();
        change.commit().await.unwrap();
        let claims = store
            .inner
            .tokens
            .verify(&issued.token, store.now().timestamp())
            .unwrap();
        (user.id, claims)
    }

    #[tokio::test]
    async fn a_close_whose_caller_goes_away_still_empties_the_cache() {
        let store = in_memory().await;
        let (user_id, claims) = user_with_session(&store).await;
        store.authenticate(&claims).await.expect("live, and now cached");

        let mut change = store.begin().await.unwrap();
        assert!(change.close(user_id, claims.sid).await.unwrap());
        // Polled once, then dropped, as a disconnecting client's request would be.
        let mut commit = Box::pin(change.commit());
        assert!(futures::poll!(commit.as_mut()).is_pending(), "the commit is under way");
        drop(commit);

        let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
        while store.count(user_id).await.unwrap() != 0 {
            assert!(std::time::Instant::now() < deadline, "the commit never finished");
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        assert!(matches!(store.authenticate(&claims).await, Err(AppError::InvalidToken)));
    }

    #[tokio::test]
    async fn roles_granted_in_a_change_apply_to_cached_sessions() {
        let store = in_memory().await;
        let (user_id, claims) = user_with_session(&store).await;
        assert_eq!(store.authenticate(&claims).await.unwrap().roles, ["user"]);
        let mut change = store.begin().await.unwrap();
        change.grant(user_id, &["editor"], store.now()).await.unwrap();
        change.commit().await.unwrap();
        assert_eq!(store.authenticate(&claims).await.unwrap().roles, ["editor", "user"]);
        let mut change = store.begin().await.unwrap();
        change.revoke(user_id, &["editor".to_string()]).await.unwrap();
        drop(change);
        assert_eq!(
            store.authenticate(&claims).await.unwrap().roles,
            ["editor", "user"],
            "a change dropped before its commit changes nothing"
        );
    }
}
