//! The cache in front of session rows and the roles they carry. A cached session points at
//! its user's entry, and is believed only while that entry is still the one the cache holds
//! for the user: dropping a user's entry makes every cached session of that user a miss at
//! once, however many there are. A generation counter keeps a lookup that raced an
//! invalidation from caching what it read before the change.
//!
//! Beside them, for the lists a page of sites shows: each site's members, and the rows of
//! users as any field shows them. Every write to either goes through a `SessionChange`,
//! which names the site or the user, so they go stale by the same invalidation.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use entity::{site_member, user};
use moka::sync::Cache;
use sea_orm::{EntityTrait, FromQueryResult, QuerySelect, Select};
use uuid::Uuid;

use crate::IssuedKeyHasher;

/// Bounds on memory: least recently and least often used entries go first.
const MAX_SESSIONS: u64 = 200_000;
const MAX_USERS: u64 = 100_000;
/// Member lists are weighed by their length: at most this many memberships in all.
const MAX_MEMBERSHIPS: u64 = 1_000_000;
/// A backstop only: invalidation, not age, is what keeps entries exact.
const TIME_TO_LIVE: Duration = Duration::from_secs(600);

/// What the cache knows of one user: their row and the roles every session of theirs carries.
#[derive(Debug)]
pub struct UserEntry {
    pub user: Arc<user::Model>,
    pub roles: Arc<[String]>,
}

/// One session row, as far as checking a token needs it. Shared, not copied, by every
/// request that uses the session: a copy would cost every request one atomic count per
/// field it shares, on memory that every core writes.
#[derive(Debug)]
pub struct SessionEntry {
    pub user_id: Uuid,
    pub secret_hash: Box<[u8]>,
    pub expires_at: DateTime<Utc>,
    pub authenticated_at: DateTime<Utc>,
    /// The latest use this instance knows of (Unix milliseconds): the database's time when
    /// read, then every request here.
    pub last_seen: AtomicI64,
    pub user: Arc<UserEntry>,
}

impl SessionEntry {
    pub fn last_seen(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.last_seen.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// Notes a use at `at`; true when it is later than every use noted before. A session in
    /// heavy use is seen many times a millisecond, and the read alone leaves the memory
    /// shared between cores as it was.
    pub fn touch(&self, at: DateTime<Utc>) -> bool {
        let at = at.timestamp_millis();
        self.last_seen.load(Ordering::Relaxed) < at && self.last_seen.fetch_max(at, Ordering::Relaxed) < at
    }
}

/// What a session row contributes to its entry.
pub struct SessionFacts {
    pub secret_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub authenticated_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// A user's role on a site, as a site's member list holds it. When it began is not read: no
/// field shows it, and a page of sites reads a hundred of them.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Membership {
    pub site_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
}

impl Membership {
    /// Memberships, reading only the columns `Membership` holds.
    pub fn select() -> Select<site_member::Entity> {
        site_member::Entity::find().select_only().columns([
            site_member::Column::SiteId,
            site_member::Column::UserId,
            site_member::Column::Role,
        ])
    }
}

/// A site's members, in the order they joined.
pub type Members = Arc<[Arc<Membership>]>;

/// What a committed change made stale.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Stale {
    #[default]
    Nothing,
    /// The entries of these users (sessions, roles, rows) and the member lists of these sites.
    Named { users: Vec<Uuid>, sites: Sites },
    /// More than can be named: drop everything.
    All,
}

/// The sites whose member lists a change made stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sites {
    Named(Vec<Uuid>),
    All,
}

impl Stale {
    /// The entries of these users, and no site's member list.
    pub fn users(users: Vec<Uuid>) -> Self {
        Stale::Named {
            users,
            sites: Sites::Named(Vec::new()),
        }
    }

    fn named(&mut self) -> Option<(&mut Vec<Uuid>, &mut Sites)> {
        if *self == Stale::Nothing {
            *self = Stale::users(Vec::new());
        }
        match self {
            Stale::Named { users, sites } => Some((users, sites)),
            Stale::Nothing | Stale::All => None,
        }
    }

    pub fn add(&mut self, user_id: Uuid) {
        if let Some((users, _)) = self.named() {
            if !users.contains(&user_id) {
                users.push(user_id);
            }
        }
    }

    /// The site's member list changed.
    pub fn add_site(&mut self, site_id: Uuid) {
        if let Some((_, Sites::Named(sites))) = self.named() {
            if !sites.contains(&site_id) {
                sites.push(site_id);
            }
        }
    }

    /// Member lists changed that cannot be named (a user left every site they were on).
    pub fn add_every_site(&mut self) {
        if let Some((_, sites)) = self.named() {
            *sites = Sites::All;
        }
    }

    pub fn is_nothing(&self) -> bool {
        *self == Stale::Nothing
    }
}

pub struct SessionCache {
    sessions: Cache<Uuid, Arc<SessionEntry>, IssuedKeyHasher>,
    users: Cache<Uuid, Arc<UserEntry>, IssuedKeyHasher>,
    /// Sites' member lists, by site.
    members: Cache<Uuid, Members, IssuedKeyHasher>,
    /// Users' rows, by user, for fields that show other users (a site's members).
    user_rows: Cache<Uuid, Arc<user::Model>, IssuedKeyHasher>,
    generation: AtomicU64,
    /// Serialises inserts against invalidations, so the generation check and the insert are
    /// one step. Lookups do not take it.
    writes: Mutex<()>,
    trust: Trust,
}

impl SessionCache {
    /// `always_trusted` for a single instance (SQLite), which has nobody to hear from.
    pub fn new(always_trusted: bool) -> Self {
        SessionCache {
            sessions: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(TIME_TO_LIVE)
                .build_with_hasher(IssuedKeyHasher::default()),
            users: Cache::builder()
                .max_capacity(MAX_USERS)
                .time_to_live(TIME_TO_LIVE)
                .build_with_hasher(IssuedKeyHasher::default()),
            members: Cache::builder()
                .max_capacity(MAX_MEMBERSHIPS)
                .weigher(|_, members: &Members| u32::try_from(members.len()).unwrap_or(u32::MAX).saturating_add(1))
                .time_to_live(TIME_TO_LIVE)
                .build_with_hasher(IssuedKeyHasher::default()),
            user_rows: Cache::builder()
                .max_capacity(MAX_USERS)
                .time_to_live(TIME_TO_LIVE)
                .build_with_hasher(IssuedKeyHasher::default()),
            generation: AtomicU64::new(0),
            writes: Mutex::new(()),
            trust: Trust::new(always_trusted),
        }
    }

    pub fn is_trusted(&self) -> bool {
        self.trust.holds()
    }

    /// The cached session, when the cache is trusted and its user's entry is still current.
    pub fn get(&self, session_id: Uuid) -> Option<Arc<SessionEntry>> {
        if !self.is_trusted() {
            return None;
        }
        let session = self.sessions.get(&session_id)?;
        let user = self.users.get(&session.user_id)?;
        Arc::ptr_eq(&user, &session.user).then_some(session)
    }

    /// Take this before reading the database; `insert` refuses rows read before an invalidation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches a session row, its user's row and roles read at `read_at_generation`; returns
    /// the entry to answer with whether or not it was kept.
    pub fn insert(
        &self,
        session_id: Uuid,
        facts: SessionFacts,
        user: user::Model,
        roles: Vec<String>,
        read_at_generation: u64,
    ) -> Arc<SessionEntry> {
        let user_id = user.id;
        let fresh = || {
            Arc::new(UserEntry {
                user: Arc::new(user),
                roles: roles.into(),
            })
        };
        let Ok(_writes) = self.writes.lock() else {
            return session_entry(user_id, facts, fresh());
        };
        if !self.is_trusted() || self.generation() != read_at_generation {
            return session_entry(user_id, facts, fresh());
        }
        // The user's current entry, if any, was read after the last invalidation too.
        let user = self.users.get_with(user_id, fresh);
        let entry = session_entry(user_id, facts, user);
        self.sessions.insert(session_id, entry.clone());
        entry
    }

    /// The site's members, when the cache is trusted and holds them.
    pub fn members(&self, site_id: Uuid) -> Option<Members> {
        self.is_trusted().then(|| self.members.get(&site_id)).flatten()
    }

    /// The user's row, when the cache is trusted and holds it.
    pub fn user_row(&self, user_id: Uuid) -> Option<Arc<user::Model>> {
        self.is_trusted().then(|| self.user_rows.get(&user_id)).flatten()
    }

    /// Caches member lists read at `read_at_generation`, unless an invalidation came since.
    pub fn keep_members(&self, lists: impl IntoIterator<Item = (Uuid, Members)>, read_at_generation: u64) {
        self.keep_if_current(read_at_generation, || {
            lists
                .into_iter()
                .for_each(|(site_id, members)| self.members.insert(site_id, members));
        });
    }

    /// Caches user rows read at `read_at_generation`, unless an invalidation came since.
    pub fn keep_user_rows<'a>(&self, rows: impl IntoIterator<Item = &'a Arc<user::Model>>, read_at_generation: u64) {
        self.keep_if_current(read_at_generation, || {
            rows.into_iter()
                .for_each(|row| self.user_rows.insert(row.id, row.clone()));
        });
    }

    /// Runs `keep` under the write lock, if the cache is trusted and no invalidation came
    /// since `read_at_generation`.
    fn keep_if_current(&self, read_at_generation: u64, keep: impl FnOnce()) {
        let Ok(_writes) = self.writes.lock() else { return };
        if self.is_trusted() && self.generation() == read_at_generation {
            keep();
        }
    }

    /// Drops what `stale` names, here and now.
    pub fn invalidate(&self, stale: &Stale) {
        if stale.is_nothing() {
            return;
        }
        let _writes = self.writes.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        match stale {
            Stale::Nothing => {}
            Stale::Named { users, sites } => {
                for id in users {
                    self.users.invalidate(id);
                    self.user_rows.invalidate(id);
                }
                match sites {
                    Sites::Named(sites) => sites.iter().for_each(|id| self.members.invalidate(id)),
                    Sites::All => self.members.invalidate_all(),
                }
            }
            Stale::All => {
                self.users.invalidate_all();
                self.sessions.invalidate_all();
                self.members.invalidate_all();
                self.user_rows.invalidate_all();
            }
        }
    }

    /// The notification channel is up (or down); until a heartbeat is heard, nothing is trusted.
    pub fn set_connected(&self, connected: bool) {
        self.trust.connected.store(connected, Ordering::SeqCst);
        self.invalidate(&Stale::All);
    }

    /// This instance heard its own heartbeat: every notification sent before it has arrived.
    /// After a silence long enough to have lost trust, whatever was cached may have missed
    /// notifications, so the cache starts over before it is trusted again.
    pub fn heard_heartbeat(&self) {
        if !self.is_trusted() {
            self.invalidate(&Stale::All);
        }
        self.trust.heard();
    }
}

fn session_entry(user_id: Uuid, facts: SessionFacts, user: Arc<UserEntry>) -> Arc<SessionEntry> {
    Arc::new(SessionEntry {
        user_id,
        secret_hash: facts.secret_hash.into(),
        expires_at: facts.expires_at,
        authenticated_at: facts.authenticated_at,
        last_seen: AtomicI64::new(facts.last_seen.timestamp_millis()),
        user,
    })
}

/// Whether cached entries may be believed: always for a single instance; with peers, only
/// while the notification channel is connected and this instance's own heartbeat came back
/// through it recently, which proves notifications are arriving.
struct Trust {
    always: bool,
    connected: AtomicBool,
    started: Instant,
    /// Milliseconds after `started` when the last heartbeat was heard; 0 for never.
    last_heard_ms: AtomicU64,
}

/// How long without hearing its own heartbeat before an instance stops trusting its cache.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(2_000);

impl Trust {
    fn new(always: bool) -> Self {
        Trust {
            always,
            connected: AtomicBool::new(false),
            started: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        // At least 1, so that 0 keeps meaning "never heard".
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn holds(&self) -> bool {
        if self.always {
            return true;
        }
        let heard = self.last_heard_ms.load(Ordering::SeqCst);
        self.connected.load(Ordering::SeqCst)
            && heard != 0
            && self.elapsed_ms().saturating_sub(heard) < HEARTBEAT_TIMEOUT.as_millis() as u64
    }

    fn heard(&self) {
        self.last_heard_ms.store(self.elapsed_ms(), Ordering::SeqCst);
    }
}

/// A user row for tests that need one without a database.
#[cfg(test)]
pub(crate) fn sample_user() -> user::Model {
    let now = Utc::now();
    user::Model {
        id: Uuid::new_v4(),
        username_key: "sam".into(),
        username: "sam".into(),
        email_key: None,
        email: None,
        password_hash: String::new(),
        name: None,
        time_zone: None,
        language: None,
        theme: None,
        settings: None,
        created_at: now,
        updated_at: now,
        password_changed_at: None,
        email_verified_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_one(cache: &SessionCache, sid: Uuid, uid: Uuid, generation: u64) {
        let now = Utc::now();
        let user = user::Model {
            id: uid,
            ..sample_user()
        };
        let facts = SessionFacts {
            secret_hash: vec![1],
            expires_at: now,
            authenticated_at: now,
            last_seen: now,
        };
        cache.insert(sid, facts, user, vec!["user".into()], generation);
    }

    #[test]
    fn a_use_is_noted_only_when_later_than_every_use_before() {
        let cache = SessionCache::new(true);
        let (sid, uid) = (Uuid::new_v4(), Uuid::new_v4());
        cache_one(&cache, sid, uid, cache.generation());
        let entry = cache.get(sid).unwrap();
        let read = entry.last_seen();
        assert!(!entry.touch(read), "the same millisecond again");
        assert!(!entry.touch(read - chrono::Duration::seconds(1)), "an earlier one");
        assert_eq!(entry.last_seen(), read);
        let later = read + chrono::Duration::milliseconds(1);
        assert!(entry.touch(later));
        // Every lookup shares the entry, so the next request sees this use.
        assert_eq!(cache.get(sid).unwrap().last_seen(), later);
    }

    #[test]
    fn invalidating_a_user_drops_every_session_of_theirs() {
        let cache = SessionCache::new(true);
        let (a, b, other, uid, other_uid) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        for (sid, user) in [(a, uid), (b, uid), (other, other_uid)] {
            cache_one(&cache, sid, user, cache.generation());
        }
        assert_eq!(cache.get(a).unwrap().user.roles.as_ref(), ["user".to_string()]);
        cache.invalidate(&Stale::users(vec![uid]));
        assert!(cache.get(a).is_none() && cache.get(b).is_none());
        assert!(cache.get(other).is_some(), "another user's change leaves theirs");
        // A later lookup of b re-caches the user; a stays gone, not revived through the user.
        cache_one(&cache, b, uid, cache.generation());
        assert!(cache.get(b).is_some());
        assert!(cache.get(a).is_none(), "a closed session never comes back");
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_cached() {
        let cache = SessionCache::new(true);
        let (sid, uid) = (Uuid::new_v4(), Uuid::new_v4());
        let before = cache.generation();
        cache.invalidate(&Stale::users(vec![uid]));
        cache_one(&cache, sid, uid, before);
        assert!(cache.get(sid).is_none());
    }

    #[test]
    fn with_peers_trust_needs_the_channel_and_a_recent_heartbeat() {
        let cache = SessionCache::new(false);
        let (sid, uid) = (Uuid::new_v4(), Uuid::new_v4());
        cache_one(&cache, sid, uid, cache.generation());
        assert!(cache.get(sid).is_none(), "nothing is cached before the channel is up");
        cache.set_connected(true);
        cache_one(&cache, sid, uid, cache.generation());
        assert!(cache.get(sid).is_none(), "connected but no heartbeat heard yet");
        cache.heard_heartbeat();
        cache_one(&cache, sid, uid, cache.generation());
        assert!(cache.get(sid).is_some());
        cache.set_connected(false);
        assert!(cache.get(sid).is_none());
        cache.set_connected(true);
        cache.heard_heartbeat();
        assert!(cache.get(sid).is_none(), "a reconnect starts from an empty cache");
    }

    #[test]
    fn everything_goes_on_all() {
        let cache = SessionCache::new(true);
        let (sid, uid) = (Uuid::new_v4(), Uuid::new_v4());
        cache_one(&cache, sid, uid, cache.generation());
        cache.invalidate(&Stale::All);
        assert!(cache.get(sid).is_none());
    }

    #[test]
    fn stale_sets_grow_without_repeats() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut stale = Stale::Nothing;
        for id in [a, b, a] {
            stale.add(id);
        }
        assert_eq!(stale, Stale::users(vec![a, b]));
        stale.add_site(a);
        stale.add_site(a);
        let sites = Sites::Named(vec![a]);
        assert_eq!(
            stale,
            Stale::Named {
                users: vec![a, b],
                sites
            }
        );
        stale.add_every_site();
        stale.add_site(b);
        let sites = Sites::All;
        assert_eq!(
            stale,
            Stale::Named {
                users: vec![a, b],
                sites
            }
        );
        let mut all = Stale::All;
        all.add(a);
        all.add_site(a);
        assert_eq!(all, Stale::All);
    }

    fn row_of(id: Uuid) -> Arc<user::Model> {
        Arc::new(user::Model { id, ..sample_user() })
    }

    fn members_of(site_id: Uuid, users: &[Uuid]) -> Members {
        let member = |&user_id| {
            Arc::new(Membership {
                site_id,
                user_id,
                role: "user".into(),
            })
        };
        users.iter().map(member).collect()
    }

    #[test]
    fn a_member_list_goes_with_its_site_and_a_row_with_its_user() {
        let cache = SessionCache::new(true);
        let (site, other_site, uid) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let row = row_of(uid);
        let lists = [
            (site, members_of(site, &[uid])),
            (other_site, members_of(other_site, &[])),
        ];
        cache.keep_members(lists, cache.generation());
        cache.keep_user_rows([&row], cache.generation());
        assert_eq!(cache.members(site).unwrap()[0].user_id, uid);
        assert!(Arc::ptr_eq(&cache.user_row(uid).unwrap(), &row));

        // A user's change drops their row, not the lists they are on.
        cache.invalidate(&Stale::users(vec![uid]));
        assert!(cache.user_row(uid).is_none());
        assert!(cache.members(site).is_some());

        let mut stale = Stale::Nothing;
        stale.add_site(site);
        cache.invalidate(&stale);
        assert!(cache.members(site).is_none());
        assert!(cache.members(other_site).is_some(), "another site's list stays");

        stale.add_every_site();
        cache.invalidate(&stale);
        assert!(cache.members(other_site).is_none());
    }

    #[test]
    fn lists_and_rows_read_before_an_invalidation_are_not_cached() {
        let cache = SessionCache::new(true);
        let (site, uid) = (Uuid::new_v4(), Uuid::new_v4());
        let row = row_of(uid);
        let before = cache.generation();
        let mut stale = Stale::Nothing;
        stale.add_site(Uuid::new_v4());
        cache.invalidate(&stale);
        cache.keep_members([(site, members_of(site, &[uid]))], before);
        cache.keep_user_rows([&row], before);
        assert!(cache.members(site).is_none() && cache.user_row(uid).is_none());
    }

    #[test]
    fn lists_and_rows_are_believed_only_while_the_cache_is_trusted() {
        let cache = SessionCache::new(false);
        let (site, uid) = (Uuid::new_v4(), Uuid::new_v4());
        let row = row_of(uid);
        cache.keep_members([(site, members_of(site, &[uid]))], cache.generation());
        assert!(
            cache.members(site).is_none(),
            "nothing is kept before the channel is up"
        );
        cache.set_connected(true);
        cache.heard_heartbeat();
        cache.keep_members([(site, members_of(site, &[uid]))], cache.generation());
        cache.keep_user_rows([&row], cache.generation());
        assert!(cache.members(site).is_some() && cache.user_row(uid).is_some());
        cache.set_connected(false);
        assert!(cache.members(site).is_none() && cache.user_row(uid).is_none());
        cache.set_connected(true);
        cache.heard_heartbeat();
        assert!(cache.members(site).is_none(), "a reconnect starts from an empty cache");
        assert!(cache.user_row(uid).is_none(), "a reconnect starts from an empty cache");
    }
}
