//! The session store: the one owner of session rows, the roles a session carries (global
//! roles and site memberships) and the cache in front of them.
//!
//! Reads go through `SessionStore`; every write goes through a `SessionChange`, a transaction
//! that remembers whose sessions or roles it touched, except a login's opening of a session
//! (`open_unless`), which makes no cached entry stale. Committing a change announces those users to
//! the other instances inside the transaction itself, commits, and drops them from this
//! instance's cache, all in a task of its own: a request that is dropped half-way (a client
//! that disconnects, a proxy timeout) cannot stop the invalidation once the commit is under
//! way, and a change whose announcement fails is not made at all.

mod cache;
mod last_seen;
mod peers;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use entity::{session, site, site_member, user, user_role};
use sea_orm::sea_query::{
    Alias, CommonTableExpression, DeleteStatement, Expr, InsertStatement, OnConflict, SelectStatement, UnionType,
    UpdateStatement, WithClause,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Statement,
    TransactionTrait, TryInsertResult, TryIntoModel,
};
use uuid::Uuid;

use crate::audit::{self, Event, Kind};
use crate::auth::refresh::{ChainKey, RefreshToken};
use crate::auth::token::{self, Claims, TokenKeys};
use crate::client::ClientInfo;
use crate::clock::Clock;
use crate::error::AppError;
use crate::one_connection::{OneConnection, StatementObserver};
#[cfg(test)]
pub(crate) use cache::sample_user;
pub use cache::{Members, Membership, Sites, Stale, HEARTBEAT_TIMEOUT};
use cache::{SessionCache, SessionEntry, SessionFacts};
pub use last_seen::LastSeen;
pub use peers::Faults;

/// The signed-in caller of a request, with their account and the roles their session carries now.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    /// Shared with the session cache: guards read the caller on every field they sit on.
    pub roles: Arc<[String]>,
    pub user: Arc<user::Model>,
    /// When the session last proved a password or a factor.
    pub authenticated_at: DateTime<Utc>,
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

/// A session just opened or renewed, with the only copies of its tokens and the roles it carries.
pub struct IssuedSession {
    /// The bearer token: short-lived when the policy sets `access_ttl`.
    pub token: String,
    pub token_expires_at: DateTime<Utc>,
    /// For the session cookie, valid as long as the session; set when the session was just opened.
    pub cookie_token: Option<String>,
    /// Set when the policy sets `access_ttl`.
    pub refresh_token: Option<String>,
    pub session: session::Model,
    pub roles: Vec<String>,
}

/// How long sessions and their tokens live (API.md §1, §8).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Absolute lifetime after login.
    pub ttl: Duration,
    /// A session unused this long ends; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Lifetime of a bearer token; `None`: the session's. When set, sessions get refresh tokens.
    pub access_ttl: Option<Duration>,
}

/// A spent refresh token presented again within this long of being spent is a race between
/// tabs, not a replay (API.md §8).
pub const REFRESH_GRACE: Duration = Duration::seconds(10);
/// How far back along a chain a presented token is followed; an older one is refused without
/// closing the session.
const MAX_CHAIN_WALK: i64 = 100_000;

impl Policy {
    /// From settings in seconds, where 0 turns idle expiry and short tokens off.
    pub fn from_seconds(ttl: u64, idle_timeout: u64, access_ttl: u64) -> Self {
        let some = |seconds: u64| (seconds > 0).then(|| seconds_to_duration(seconds));
        Policy {
            ttl: seconds_to_duration(ttl),
            idle_timeout: some(idle_timeout),
            access_ttl: some(access_ttl),
        }
    }
}

/// Seconds as a duration, capped at a century (beyond that, "never" is what was meant).
pub fn seconds_to_duration(seconds: u64) -> Duration {
    const CENTURY: i64 = 100 * 366 * 24 * 3600;
    Duration::seconds(i64::try_from(seconds).unwrap_or(CENTURY).min(CENTURY))
}

#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    clock: Clock,
    tokens: Arc<TokenKeys>,
    chain_key: ChainKey,
    policy: Policy,
    cache: Arc<SessionCache>,
    faults: Arc<Faults>,
    last_seen: LastSeen,
    /// Sees the statements run on a held connection (tests count statements with it).
    statement_observer: OnceLock<StatementObserver>,
}

impl SessionStore {
    /// On SQLite there is one instance and the cache is always trusted; on PostgreSQL it is
    /// trusted only while `listen` hears the other instances.
    pub fn new(
        db: DatabaseConnection,
        clock: Clock,
        tokens: Arc<TokenKeys>,
        chain_key: ChainKey,
        policy: Policy,
    ) -> Self {
        let single_instance = db.get_database_backend() != sea_orm::DatabaseBackend::Postgres;
        SessionStore {
            inner: Arc::new(Inner {
                db,
                clock,
                tokens,
                chain_key,
                policy,
                cache: Arc::new(SessionCache::new(single_instance)),
                faults: Arc::default(),
                last_seen: LastSeen::default(),
                statement_observer: OnceLock::new(),
            }),
        }
    }

    /// The database the sessions live in, for reads that go with them.
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// One connection from the pool, held for several statements: one ping when it goes back
    /// instead of one per statement (`OneConnection`).
    pub async fn one_connection(&self) -> Result<OneConnection, sea_orm::DbErr> {
        OneConnection::acquire(&self.inner.db, self.inner.statement_observer.get()).await
    }

    /// Shows `observer` every statement run on a held connection; for tests that count them.
    #[doc(hidden)]
    pub fn observe_statements(&self, observer: StatementObserver) {
        // Set once, when the server starts: a second observer is ignored.
        let _ = self.inner.statement_observer.set(observer);
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

    /// Starts a change to sessions or roles, as a `begin_write` transaction.
    pub async fn begin(&self) -> Result<SessionChange, AppError> {
        let txn = begin_write(&self.inner.db).await?;
        Ok(SessionChange {
            txn,
            store: self.clone(),
            stale: Stale::Nothing,
        })
    }

    /// Turns a verified token into the caller: the session must exist, be unexpired, not idle
    /// and match the token's secret; the roles are the ones the user holds now, never the token's.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate(&self, claims: &Claims) -> Result<Caller, AppError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        // The database paths are boxed: kept inline, their futures would make every caller's
        // future several kilobytes, copied on each request although a cached session needs none.
        let (mut session, cached) = match inner.cache.get(claims.sid) {
            Some(session) => (session, true),
            None => (Box::pin(self.load(claims.sid)).await?, false),
        };
        let live = session.user_id == claims.sub && session.expires_at > now;
        if !live || !token::secret_matches(&claims.sk, &session.secret_hash) {
            return Err(AppError::InvalidToken);
        }
        if self.is_idle(&session, now) {
            // A cached entry knows the uses of this instance only; another instance may have
            // written a later one since it was read.
            if cached {
                session = Box::pin(self.load(claims.sid)).await?;
            }
            if self.is_idle(&session, now) {
                Box::pin(self.end_idle(session.user_id, claims.sid)).await?;
                return Err(AppError::InvalidToken);
            }
        }
        // A use no later than one already noted is already on its way to the database.
        if session.touch(now) {
            inner.last_seen.touch(claims.sid, now);
        }
        Ok(Caller {
            user_id: session.user_id,
            session_id: claims.sid,
            roles: session.user.roles.clone(),
            user: session.user.user.clone(),
            authenticated_at: session.authenticated_at,
        })
    }

    /// Reads a session with its user and roles, and caches them.
    async fn load(&self, session_id: Uuid) -> Result<Arc<SessionEntry>, AppError> {
        let inner = &self.inner;
        let generation = inner.cache.generation();
        let (row, user) = session::Entity::find_by_id(session_id)
            .find_also_related(user::Entity)
            .one(&inner.db)
            .await?
            .ok_or(AppError::InvalidToken)?;
        let user = user.ok_or(AppError::InvalidToken)?;
        let roles = roles_of(&inner.db, row.user_id).await?;
        let facts = SessionFacts {
            last_seen: self.last_use(&row),
            authenticated_at: authenticated_at(&row),
            secret_hash: row.secret_hash,
            expires_at: row.expires_at,
        };
        Ok(inner.cache.insert(session_id, facts, user, roles, generation))
    }

    /// The latest use of a session that this instance knows of: the database's, or a newer
    /// one noted here and not written yet.
    fn last_use(&self, row: &session::Model) -> DateTime<Utc> {
        let written = row.last_seen_at.unwrap_or(row.created_at);
        self.inner
            .last_seen
            .pending(row.id)
            .map_or(written, |noted| noted.max(written))
    }

    fn is_idle(&self, session: &SessionEntry, now: DateTime<Utc>) -> bool {
        self.inner
            .policy
            .idle_timeout
            .is_some_and(|idle| now - session.last_seen() >= idle)
    }

    fn is_idle_row(&self, row: &session::Model, now: DateTime<Utc>) -> bool {
        self.inner
            .policy
            .idle_timeout
            .is_some_and(|idle| now - self.last_use(row) >= idle)
    }

    /// Ends a session found idle, everywhere and for good: a later use noted on another
    /// instance before it heard of this cannot bring it back.
    async fn end_idle(&self, user_id: Uuid, session_id: Uuid) -> Result<(), AppError> {
        let mut change = self.begin().await?;
        if change.end_idle(user_id, session_id).await? {
            change.commit().await?;
        }
        Ok(())
    }

    /// The members of each of `site_ids`, in the order they joined: from the cache where it
    /// holds them, the rest read on `conn` in one statement and cached. `conn` must see only
    /// committed rows (not a transaction that writes): what it reads is kept for everyone.
    pub async fn site_members(
        &self,
        conn: &impl ConnectionTrait,
        site_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Members>, AppError> {
        let cache = &self.inner.cache;
        let generation = cache.generation();
        let (mut lists, missing) = cached_or_missing(site_ids.iter().copied(), |id| cache.members(id));
        if missing.is_empty() {
            return Ok(lists);
        }
        let mut read: HashMap<Uuid, Vec<Arc<Membership>>> = missing.iter().map(|&id| (id, Vec::new())).collect();
        for member in members_of_sites(conn, &missing).await? {
            if let Some(list) = read.get_mut(&member.site_id) {
                list.push(Arc::new(member));
            }
        }
        let read: Vec<(Uuid, Members)> = read.into_iter().map(|(id, list)| (id, list.into())).collect();
        cache.keep_members(read.iter().cloned(), generation);
        lists.extend(read);
        Ok(lists)
    }

    /// The rows of these users, by id: from the cache where it holds them, the rest read on
    /// `conn` in one statement and cached, as `site_members` does. Users that do not exist
    /// are left out.
    pub async fn user_rows(
        &self,
        conn: &impl ConnectionTrait,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<HashMap<Uuid, Arc<user::Model>>, AppError> {
        let cache = &self.inner.cache;
        let generation = cache.generation();
        let (mut rows, missing) = cached_or_missing(ids, |id| cache.user_row(id));
        if missing.is_empty() {
            return Ok(rows);
        }
        let read = user::Entity::find()
            .filter(user::Column::Id.is_in(missing))
            .all(conn)
            .await?;
        let read: Vec<Arc<user::Model>> = read.into_iter().map(Arc::new).collect();
        cache.keep_user_rows(&read, generation);
        rows.extend(read.into_iter().map(|row| (row.id, row)));
        Ok(rows)
    }

    /// The roles `user_id` holds now, read from the database.
    pub async fn roles(&self, user_id: Uuid) -> Result<Vec<String>, AppError> {
        roles_of(&self.inner.db, user_id).await
    }

    /// Live sessions of a user, newest first, with last-seen times not yet written merged in.
    pub async fn list(&self, user_id: Uuid) -> Result<Vec<session::Model>, AppError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut sessions = live_of(user_id, now)
            .order_by_desc(session::Column::CreatedAt)
            .order_by_desc(session::Column::Id)
            .all(&inner.db)
            .await?;
        for s in &mut sessions {
            s.last_seen_at = Some(self.last_use(s));
        }
        if let Some(idle) = inner.policy.idle_timeout {
            sessions.retain(|s| s.last_seen_at.is_some_and(|seen| now - seen < idle));
        }
        Ok(sessions)
    }

    pub async fn count(&self, user_id: Uuid) -> Result<u64, AppError> {
        if self.inner.policy.idle_timeout.is_some() {
            // Idle is decided with the uses noted here, which the database may not hold yet.
            return Ok(self.list(user_id).await?.len() as u64);
        }
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
    /// Expired sessions are refused already, so no cache needs to hear of it. Idle ones go
    /// too once idle by more than `idle_margin` beyond the timeout: by then no instance has
    /// a use of theirs left to write, and every instance refuses them.
    pub async fn delete_expired(&self, batch: u64, idle_margin: Duration) -> Result<u64, AppError> {
        let db = &self.inner.db;
        let now = self.inner.clock.now();
        let mut ended = sea_orm::Condition::any().add(session::Column::ExpiresAt.lte(now));
        if let Some(idle) = self.inner.policy.idle_timeout {
            ended = ended.add(session::Column::LastSeenAt.lt(now - idle - idle_margin));
        }
        let ids: Vec<Uuid> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(ended)
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

/// What a refresh token was exchanged for.
pub enum Renewal {
    /// A new token pair for the same session, and its user.
    Renewed(Box<(IssuedSession, user::Model)>),
    /// The session was closed (a replayed token, or idle): commit, and refuse the caller.
    Ended,
}

impl SessionStore {
    /// Opens a session for `user_id` together with `writes` (what else the opening changes: its
    /// audit row, ...), unless `blocker` finds a row; then nothing is written and the answer is
    /// `None`.
    ///
    /// On PostgreSQL, after the blocker's read, the writes, the session and the read of its
    /// roles are one statement, each write a data-modifying `WITH` part: atomic by itself, so
    /// it needs no `BEGIN` and `COMMIT`, and each write costs no round trip of its own. SQLite
    /// has no such statements; there they run in a transaction, whose statements are hand-offs
    /// to the connection's thread rather than round trips.
    pub async fn open_unless(
        &self,
        blocker: SelectStatement,
        user_id: Uuid,
        client: &ClientInfo,
        writes: Vec<Write>,
    ) -> Result<Option<IssuedSession>, AppError> {
        let backend = self.inner.db.get_database_backend();
        if backend != DatabaseBackend::Postgres {
            let mut change = self.begin().await?;
            if change.txn().query_one(backend.build(&blocker)).await?.is_some() {
                return Ok(None);
            }
            for write in &writes {
                change.txn().execute(write.statement(backend)).await?;
            }
            let issued = change.open(user_id, client).await?;
            change.commit().await?;
            return Ok(Some(issued));
        }
        let conn = self.one_connection().await?;
        if conn.query_one(backend.build(&blocker)).await?.is_some() {
            return Ok(None);
        }
        let Opening { row, secret, refresh } = self.opening(user_id, client);
        let mut parts = WithClause::new();
        parts.cte(Write::Insert(session::Entity::insert(row.clone()).into_query()).part("opened".into()));
        for (n, write) in writes.into_iter().enumerate() {
            parts.cte(write.part(format!("write_{n}")));
        }
        let rows = conn
            .query_all(backend.build(&parts.query(roles_query(user_id))))
            .await?;
        let session = row.try_into_model()?;
        self.issue_opened(session, &secret, refresh, roles_from(rows)?)
            .map(Some)
    }

    /// The row of a session about to open, and its secrets.
    fn opening(&self, user_id: Uuid, client: &ClientInfo) -> Opening {
        let inner = &self.inner;
        // To the microsecond, as PostgreSQL keeps it: the row as issued is the row read back.
        let now = inner.clock.now().trunc_subsecs(6);
        let (secret, secret_hash) = token::new_secret();
        let id = Uuid::new_v4();
        let refresh = inner.policy.access_ttl.map(|_| RefreshToken::first(id, &secret));
        let row = session::ActiveModel {
            id: Set(id),
            user_id: Set(user_id),
            secret_hash: Set(secret_hash),
            created_at: Set(now),
            expires_at: Set(now + inner.policy.ttl),
            last_seen_at: Set(Some(now)),
            user_agent: Set(client.user_agent.clone()),
            ip: Set(client.ip.map(|ip| ip.to_string())),
            authenticated_at: Set(Some(now)),
            refresh_hash: Set(refresh.as_ref().map(RefreshToken::hash)),
            refresh_generation: Set(0),
            refreshed_at: Set(None),
        };
        Opening { row, secret, refresh }
    }

    /// The tokens of a session just opened: the bearer token and the cookie's.
    fn issue_opened(
        &self,
        session: session::Model,
        secret: &str,
        refresh: Option<RefreshToken>,
        roles: Vec<String>,
    ) -> Result<IssuedSession, AppError> {
        let mut issued = self.issue(session, secret, refresh, roles)?;
        issued.cookie_token = Some(match self.inner.policy.access_ttl {
            Some(_) => self.sign(&issued.session, secret, &issued.roles, issued.session.expires_at)?,
            None => issued.token.clone(),
        });
        Ok(issued)
    }

    /// Signs a bearer token for `session` (and hands on its refresh token): valid for
    /// `access_ttl` when set, never beyond the session.
    fn issue(
        &self,
        session: session::Model,
        secret: &str,
        refresh: Option<RefreshToken>,
        roles: Vec<String>,
    ) -> Result<IssuedSession, AppError> {
        let now = self.now();
        let token_expires_at = match self.inner.policy.access_ttl {
            Some(access_ttl) => (now + access_ttl).min(session.expires_at),
            None => session.expires_at,
        };
        let token = self.sign(&session, secret, &roles, token_expires_at)?;
        Ok(IssuedSession {
            token,
            token_expires_at,
            cookie_token: None,
            refresh_token: refresh.map(|r| r.encode()),
            session,
            roles,
        })
    }

    fn sign(
        &self,
        session: &session::Model,
        secret: &str,
        roles: &[String],
        expires_at: DateTime<Utc>,
    ) -> Result<String, AppError> {
        let claims = Claims::new(
            session.user_id,
            session.id,
            secret.to_owned(),
            self.now().timestamp(),
            expires_at.timestamp(),
            roles,
        );
        Ok(self.inner.tokens.sign(&claims)?)
    }
}

/// When a session last proved a password or a factor; rows from before this was recorded
/// count from their opening.
pub fn authenticated_at(row: &session::Model) -> DateTime<Utc> {
    row.authenticated_at.unwrap_or(row.created_at)
}

fn live_of(user_id: Uuid, now: DateTime<Utc>) -> sea_orm::Select<session::Entity> {
    session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::ExpiresAt.gt(now))
}

/// Every role of a user, sorted: global roles, then site roles as `<siteId>:<role>`. One
/// statement reads both tables: one round trip, and one view of the roles.
pub async fn roles_of(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<String>, AppError> {
    let rows = conn
        .query_all(conn.get_database_backend().build(&roles_query(user_id)))
        .await?;
    roles_from(rows)
}

fn roles_query(user_id: Uuid) -> SelectStatement {
    let mut held = user_role::Entity::find()
        .select_only()
        .column(user_role::Column::Role)
        .expr_as(Expr::value(sea_orm::Value::Uuid(None)), "site_id")
        .filter(user_role::Column::UserId.eq(user_id))
        .into_query();
    let on_sites = site_member::Entity::find()
        .select_only()
        .column(site_member::Column::Role)
        .column(site_member::Column::SiteId)
        .filter(site_member::Column::UserId.eq(user_id))
        .into_query();
    held.union(UnionType::All, on_sites);
    held
}

fn roles_from(rows: Vec<QueryResult>) -> Result<Vec<String>, AppError> {
    let (mut roles, mut site_roles) = (Vec::new(), Vec::new());
    for row in rows {
        let role: String = row.try_get("", "role")?;
        match row.try_get::<Option<Uuid>>("", "site_id")? {
            None => roles.push(role),
            Some(site) => site_roles.push(format!("{site}:{role}")),
        }
    }
    roles.sort();
    site_roles.sort();
    roles.extend(site_roles);
    Ok(roles)
}

/// A session about to open (`SessionStore::opening`).
struct Opening {
    row: session::ActiveModel,
    secret: String,
    refresh: Option<RefreshToken>,
}

/// A write that lands with the session `SessionStore::open_unless` opens.
pub enum Write {
    Insert(InsertStatement),
    Update(UpdateStatement),
    Delete(DeleteStatement),
}

impl Write {
    fn statement(&self, backend: DatabaseBackend) -> Statement {
        match self {
            Write::Insert(write) => backend.build(write),
            Write::Update(write) => backend.build(write),
            Write::Delete(write) => backend.build(write),
        }
    }

    /// The write as a named part of a `WITH` statement (PostgreSQL only).
    fn part(self, name: String) -> CommonTableExpression {
        let mut part = CommonTableExpression::new();
        match self {
            Write::Insert(write) => part.query(write),
            Write::Update(write) => part.query(write),
            Write::Delete(write) => part.query(write),
        };
        part.table_name(Alias::new(name)).to_owned()
    }
}

/// A transaction that changes sessions or roles. Writes to those tables happen only through
/// its methods, each of which notes whose entries it makes stale; `commit` invalidates them.
/// Dropped without `commit`, it rolls back and nothing needs invalidating.
pub struct SessionChange {
    txn: DatabaseTransaction,
    store: SessionStore,
    stale: Stale,
}

/// What `cached` holds of `ids`, by id, and the ids it lacks.
fn cached_or_missing<V>(
    ids: impl IntoIterator<Item = Uuid>,
    cached: impl Fn(Uuid) -> Option<V>,
) -> (HashMap<Uuid, V>, Vec<Uuid>) {
    let mut found = HashMap::new();
    let mut missing = Vec::new();
    for id in ids {
        match cached(id) {
            Some(value) => {
                found.insert(id, value);
            }
            None => missing.push(id),
        }
    }
    (found, missing)
}

/// The memberships of these sites, site by site, each in the order its members joined: the
/// order of the index `site_members_by_site`, which holds every column read, so the rows come
/// from it alone, unsorted.
async fn members_of_sites(conn: &impl ConnectionTrait, site_ids: &[Uuid]) -> Result<Vec<Membership>, AppError> {
    let query = Membership::select()
        .filter(site_member::Column::SiteId.is_in(site_ids.to_vec()))
        .order_by_asc(site_member::Column::SiteId)
        .order_by_asc(site_member::Column::JoinedAt)
        .order_by_asc(site_member::Column::UserId);
    Ok(query.into_model().all(conn).await?)
}

/// Begins a transaction that will write. On SQLite it takes the writer lock at once (a write
/// that changes nothing): a transaction that read first and wrote later would be refused its
/// write, not made to wait, had another writer committed between.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, AppError> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
        txn.execute_unprepared("UPDATE server_settings SET value = value WHERE 0")
            .await?;
    }
    Ok(txn)
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

    /// Inserts a session for `user_id`, opened by proving a password or a factor, and signs
    /// its tokens.
    pub async fn open(&mut self, user_id: Uuid, client: &ClientInfo) -> Result<IssuedSession, AppError> {
        let Opening { row, secret, refresh } = self.store.opening(user_id, client);
        let session = session::Entity::insert(row).exec_with_returning(&self.txn).await?;
        let roles = roles_of(&self.txn, user_id).await?;
        self.store.issue_opened(session, &secret, refresh, roles)
    }

    /// Updates a user's row (profile, password): cached copies of it go with the change.
    pub async fn update_user(&mut self, row: user::ActiveModel) -> Result<user::Model, sea_orm::DbErr> {
        if let sea_orm::ActiveValue::Set(id) | sea_orm::ActiveValue::Unchanged(id) = &row.id {
            self.stale.add(*id);
        }
        sea_orm::ActiveModelTrait::update(row, &self.txn).await
    }

    /// Marks the user's e-mail address verified, if it is still `email_key`; false otherwise.
    pub async fn mark_email_verified(&mut self, user_id: Uuid, email_key: &str) -> Result<bool, AppError> {
        self.stale.add(user_id);
        let updated = user::Entity::update_many()
            .col_expr(user::Column::EmailVerifiedAt, Expr::value(self.now()))
            .filter(user::Column::Id.eq(user_id))
            .filter(user::Column::EmailKey.eq(email_key))
            .exec(&self.txn)
            .await?;
        Ok(updated.rows_affected == 1)
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
        self.drop_idle(user_id).await?;
        let deleted = session::Entity::delete_many()
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::ExpiresAt.gt(self.store.inner.clock.now()))
            .exec(&self.txn)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Closes every live session of `user_id` but `keep`; returns how many.
    pub async fn close_others(&mut self, user_id: Uuid, keep: Uuid) -> Result<u64, AppError> {
        self.stale.add(user_id);
        self.drop_idle(user_id).await?;
        let deleted = session::Entity::delete_many()
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::Id.ne(keep))
            .filter(session::Column::ExpiresAt.gt(self.store.inner.clock.now()))
            .exec(&self.txn)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Deletes the user's sessions that are idle already, uncounted, so that a close that
    /// follows counts only sessions the user could still use (those `countSessions` shows).
    async fn drop_idle(&mut self, user_id: Uuid) -> Result<(), AppError> {
        let Some(idle) = self.store.inner.policy.idle_timeout else {
            return Ok(());
        };
        let now = self.now();
        let rows = live_of(user_id, now).all(&self.txn).await?;
        let idle_ids: Vec<Uuid> = rows
            .iter()
            .filter(|row| now - self.store.last_use(row) >= idle)
            .map(|row| row.id)
            .collect();
        if !idle_ids.is_empty() {
            session::Entity::delete_many()
                .filter(session::Column::Id.is_in(idle_ids))
                .exec(&self.txn)
                .await?;
        }
        Ok(())
    }

    /// Closes a session found idle and records why; false when it was already gone.
    async fn end_idle(&mut self, user_id: Uuid, session_id: Uuid) -> Result<bool, AppError> {
        if !self.close(user_id, session_id).await? {
            return Ok(false);
        }
        let event = Event {
            kind: Kind::SessionClosed,
            actor: None,
            subject: Some(user_id),
            client: &ClientInfo::default(),
            detail: Some(serde_json::json!({ "sessionId": session_id, "reason": "idle" })),
        };
        audit::record(&self.txn, self.now(), event).await?;
        Ok(true)
    }

    /// Marks a session as having just proved a password or a factor; false when it is gone.
    pub async fn mark_authenticated(&mut self, user_id: Uuid, session_id: Uuid) -> Result<bool, AppError> {
        self.stale.add(user_id);
        let updated = session::Entity::update_many()
            .col_expr(session::Column::AuthenticatedAt, Expr::value(self.now()))
            .filter(session::Column::Id.eq(session_id))
            .filter(session::Column::UserId.eq(user_id))
            .exec(&self.txn)
            .await?;
        Ok(updated.rows_affected > 0)
    }

    /// Exchanges a refresh token for a new token pair of the same session (API.md §8). The
    /// current token rotates; the one it replaced, presented within `REFRESH_GRACE` of its
    /// rotation, gets the pair that replaced it (two tabs racing); any older token of the
    /// chain closes the session (recorded as `refresh_token_reused`), as does an idle session.
    pub async fn refresh(&mut self, presented: &str, client: &ClientInfo) -> Result<Renewal, AppError> {
        let inner = &self.store.inner;
        if inner.policy.access_ttl.is_none() {
            return Err(AppError::InvalidToken);
        }
        let presented = RefreshToken::parse(presented).ok_or(AppError::InvalidToken)?;
        let now = self.now();
        // Rotating comes first, so the row is locked before anything is read: of racing
        // refreshes, the loser waits and then reads what the winner wrote.
        let next = presented.next(&inner.chain_key);
        let rotated = session::Entity::update_many()
            .col_expr(session::Column::RefreshHash, Expr::value(next.hash()))
            .col_expr(session::Column::RefreshGeneration, Expr::value(next.generation))
            .col_expr(session::Column::RefreshedAt, Expr::value(now))
            .filter(session::Column::Id.eq(presented.session_id))
            .filter(session::Column::RefreshGeneration.eq(presented.generation))
            .filter(session::Column::RefreshHash.eq(presented.hash()))
            .filter(session::Column::SecretHash.eq(token::secret_hash(&presented.session_secret)))
            .filter(session::Column::ExpiresAt.gt(now))
            .exec(&self.txn)
            .await?
            .rows_affected
            == 1;
        let (row, user) = session::Entity::find_by_id(presented.session_id)
            .find_also_related(user::Entity)
            .one(&self.txn)
            .await?
            .ok_or(AppError::InvalidToken)?;
        let user = user.ok_or(AppError::InvalidToken)?;
        let issued_to = match rotated {
            true => next,
            false => {
                // Perhaps a token the chain has moved past: walk it forward to the current one.
                let stored_hash = row.refresh_hash.as_deref().unwrap_or_default();
                let behind = row.refresh_generation - presented.generation;
                let ours = token::secret_matches(&presented.session_secret, &row.secret_hash)
                    && row.expires_at > now
                    && (1..=MAX_CHAIN_WALK).contains(&behind);
                if !ours {
                    return Err(AppError::InvalidToken);
                }
                let current = (0..behind).fold(presented.clone(), |token, _| token.next(&inner.chain_key));
                if !current.matches(stored_hash) {
                    // Not of this chain: a guess, not a replay.
                    return Err(AppError::InvalidToken);
                }
                let racing = behind == 1 && row.refreshed_at.is_some_and(|at| now - at <= REFRESH_GRACE);
                if !racing && !self.store.is_idle_row(&row, now) {
                    self.close(row.user_id, row.id).await?;
                    let event = Event {
                        kind: Kind::RefreshTokenReused,
                        actor: None,
                        subject: Some(row.user_id),
                        client,
                        detail: Some(serde_json::json!({ "sessionId": row.id })),
                    };
                    audit::record(&self.txn, now, event).await?;
                    return Ok(Renewal::Ended);
                }
                current
            }
        };
        if self.store.is_idle_row(&row, now) {
            self.end_idle(row.user_id, row.id).await?;
            return Ok(Renewal::Ended);
        }
        self.store.inner.last_seen.touch(row.id, now);
        let roles = roles_of(&self.txn, row.user_id).await?;
        let secret = presented.session_secret.clone();
        let issued = self.store.issue(row, &secret, Some(issued_to), roles)?;
        Ok(Renewal::Renewed(Box::new((issued, user))))
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
        self.stale.add_site(site_id);
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
        self.stale.add_site(site_id);
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
        // Their memberships go too, on sites that cannot be listed reliably while they may
        // still be joining more.
        self.stale.add_every_site();
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
    let policy = Policy::from_seconds(3600, 0, 0);
    SessionStore::new(
        db,
        Clock::default(),
        tokens,
        ChainKey::from_secret("test chain key"),
        policy,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use super::*;

    /// A user named `name` holding the global `roles`.
    async fn user_with_roles(store: &SessionStore, name: &str, roles: &[&str]) -> Uuid {
        let now = store.now();
        let row = user::ActiveModel {
            id: Set(Uuid::new_v4()),
            username_key: Set(name.into()),
            username: Set(name.into()),
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
            email_verified_at: Set(None),
        };
        let mut change = store.begin().await.unwrap();
        let user = user::Entity::insert(row)
            .exec_with_returning(change.txn())
            .await
            .unwrap();
        change.grant(user.id, roles, now).await.unwrap();
        change.commit().await.unwrap();
        user.id
    }

    async fn user_with_session(store: &SessionStore) -> (Uuid, Claims) {
        let user_id = user_with_roles(store, "sam", &["user"]).await;
        let mut change = store.begin().await.unwrap();
        let issued = change.open(user_id, &ClientInfo::default()).await.unwrap();
        change.commit().await.unwrap();
        let claims = store
            .inner
            .tokens
            .verify(&issued.token, store.now().timestamp())
            .unwrap();
        (user_id, Claims::clone(&claims))
    }

    #[tokio::test]
    async fn roles_are_global_ones_then_site_ones_each_sorted() {
        let store = in_memory().await;
        let (user_id, _) = user_with_session(&store).await;
        // A second user, whose roles must not show among the first's.
        let other_id = user_with_roles(&store, "kim", &["auditor"]).await;
        let db = store.db();
        let mut change = store.begin().await.unwrap();
        change.grant(user_id, &["zebra", "admin"], store.now()).await.unwrap();
        change.commit().await.unwrap();
        let mut sites = Vec::new();
        for (name, role) in [("b", "user"), ("a", "admin")] {
            let id = Uuid::new_v4();
            site::Entity::insert(site::ActiveModel {
                id: Set(id),
                name: Set(name.into()),
                description: Set(None),
                code: Set(format!("code-{name}")),
                created_by: Set(None),
                created_at: Set(store.now()),
                updated_at: Set(store.now()),
            })
            .exec_without_returning(db)
            .await
            .unwrap();
            for member in [user_id, other_id] {
                site_member::Entity::insert(site_member::ActiveModel {
                    site_id: Set(id),
                    user_id: Set(member),
                    role: Set(role.into()),
                    joined_at: Set(store.now()),
                })
                .exec_without_returning(db)
                .await
                .unwrap();
            }
            sites.push(format!("{id}:{role}"));
        }
        sites.sort();
        let mut expected: Vec<String> = ["admin", "user", "zebra"].map(String::from).into();
        expected.extend(sites);
        assert_eq!(roles_of(db, user_id).await.unwrap(), expected);
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
        assert_eq!(*store.authenticate(&claims).await.unwrap().roles, ["user"]);
        let mut change = store.begin().await.unwrap();
        change.grant(user_id, &["editor"], store.now()).await.unwrap();
        change.commit().await.unwrap();
        assert_eq!(*store.authenticate(&claims).await.unwrap().roles, ["editor", "user"]);
        let mut change = store.begin().await.unwrap();
        change.revoke(user_id, &["editor".to_string()]).await.unwrap();
        drop(change);
        assert_eq!(
            *store.authenticate(&claims).await.unwrap().roles,
            ["editor", "user"],
            "a change dropped before its commit changes nothing"
        );
    }
}
