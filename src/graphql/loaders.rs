//! DataLoaders, created per request so nothing outlives it (a cached row could keep a
//! revoked role alive). One loader per key -> value shape; each `load` is one `IN (...)` query.
//! Within a request they cache, so a list resolver can load a whole page's children with one
//! `load_many` up front and the per-item resolvers find them there, whatever the timing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use entity::{identity, passkey, site, site_member, user};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::error::AppError;

pub struct UserById(pub DatabaseConnection);

impl Loader<Uuid> for UserById {
    /// Shared: each member of a page of sites hands its user out again.
    type Value = Arc<user::Model>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(users_by_id(&self.0, keys.iter().copied()).await?)
    }
}

/// The users with these ids, by id.
async fn users_by_id(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, Arc<user::Model>>, AppError> {
    let rows = user::Entity::find().filter(user::Column::Id.is_in(ids)).all(db).await?;
    Ok(rows.into_iter().map(|row| (row.id, Arc::new(row))).collect())
}

pub struct SiteById(pub DatabaseConnection);

impl Loader<Uuid> for SiteById {
    type Value = site::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = site::Entity::find()
            .filter(site::Column::Id.is_in(keys.to_vec()))
            .all(&self.0)
            .await;
        Ok(rows
            .map_err(AppError::from)?
            .into_iter()
            .map(|row| (row.id, row))
            .collect())
    }
}

/// The members of each site, in the order they joined.
pub struct MembershipsBySite(pub DatabaseConnection);

impl Loader<Uuid> for MembershipsBySite {
    type Value = Vec<site_member::Model>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = members_of_sites(&self.0, keys).await?;
        Ok(group(rows, |row| row.site_id))
    }
}

/// The memberships of these sites, in the order their members joined.
async fn members_of_sites(conn: &impl ConnectionTrait, site_ids: &[Uuid]) -> Result<Vec<site_member::Model>, AppError> {
    Ok(site_member::Entity::find()
        .filter(site_member::Column::SiteId.is_in(site_ids.to_vec()))
        .order_by_asc(site_member::Column::JoinedAt)
        .order_by_asc(site_member::Column::UserId)
        .all(conn)
        .await?)
}

/// The memberships of each user, in the order they joined.
pub struct MembershipsByUser(pub DatabaseConnection);

impl Loader<Uuid> for MembershipsByUser {
    type Value = Vec<site_member::Model>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = site_member::Entity::find()
            .filter(site_member::Column::UserId.is_in(keys.to_vec()))
            .order_by_asc(site_member::Column::JoinedAt)
            .order_by_asc(site_member::Column::SiteId)
            .all(&self.0)
            .await
            .map_err(AppError::from)?;
        Ok(group(rows, |row| row.user_id))
    }
}

/// Whether each user has TOTP on (a key missing from the answer: off).
pub struct TotpEnabledByUser(pub DatabaseConnection);

impl Loader<Uuid> for TotpEnabledByUser {
    type Value = bool;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let enabled = crate::domain::second_factor::enabled_among(&self.0, keys).await?;
        Ok(enabled.into_iter().map(|id| (id, true)).collect())
    }
}

/// The identities linked to each user, oldest first.
pub struct IdentitiesByUser(pub DatabaseConnection);

impl Loader<Uuid> for IdentitiesByUser {
    type Value = Vec<identity::Model>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = identity::Entity::find()
            .filter(identity::Column::UserId.is_in(keys.to_vec()))
            .order_by_asc(identity::Column::LinkedAt)
            .all(&self.0)
            .await
            .map_err(AppError::from)?;
        Ok(group(rows, |row| row.user_id))
    }
}

/// The passkeys of each user, oldest first.
pub struct PasskeysByUser(pub DatabaseConnection);

impl Loader<Uuid> for PasskeysByUser {
    type Value = Vec<passkey::Model>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = crate::domain::passkey::of_users(&self.0, keys).await?;
        Ok(group(rows, |row| row.user_id))
    }
}

fn group<T>(rows: Vec<T>, key: impl Fn(&T) -> Uuid) -> HashMap<Uuid, Vec<T>> {
    let mut groups: HashMap<Uuid, Vec<T>> = HashMap::new();
    for row in rows {
        groups.entry(key(&row)).or_default().push(row);
    }
    groups
}

/// A loader with a cache that lives as long as its request.
pub type Loaded<T> = DataLoader<T, HashMapCache>;

/// The request's loaders, each made on first use: most documents (`me`, a login) need none.
pub struct Loaders {
    db: DatabaseConnection,
    users: OnceLock<Loaded<UserById>>,
    sites: OnceLock<Loaded<SiteById>>,
    memberships_by_site: OnceLock<Loaded<MembershipsBySite>>,
    memberships_by_user: OnceLock<Loaded<MembershipsByUser>>,
    totp_enabled: OnceLock<Loaded<TotpEnabledByUser>>,
    identities_by_user: OnceLock<Loaded<IdentitiesByUser>>,
    passkeys_by_user: OnceLock<Loaded<PasskeysByUser>>,
}

fn fresh<T: Loader<Uuid>>(loader: T) -> Loaded<T> {
    DataLoader::with_cache(loader, tokio::spawn, HashMapCache::default())
}

impl Loaders {
    /// Fresh loaders for one request, so nothing cached outlives it.
    pub fn new(db: &DatabaseConnection) -> Self {
        Loaders {
            db: db.clone(),
            users: OnceLock::new(),
            sites: OnceLock::new(),
            memberships_by_site: OnceLock::new(),
            memberships_by_user: OnceLock::new(),
            totp_enabled: OnceLock::new(),
            identities_by_user: OnceLock::new(),
            passkeys_by_user: OnceLock::new(),
        }
    }

    pub fn users(&self) -> &Loaded<UserById> {
        self.users.get_or_init(|| fresh(UserById(self.db.clone())))
    }

    pub fn sites(&self) -> &Loaded<SiteById> {
        self.sites.get_or_init(|| fresh(SiteById(self.db.clone())))
    }

    pub fn memberships_by_site(&self) -> &Loaded<MembershipsBySite> {
        self.memberships_by_site
            .get_or_init(|| fresh(MembershipsBySite(self.db.clone())))
    }

    pub fn memberships_by_user(&self) -> &Loaded<MembershipsByUser> {
        self.memberships_by_user
            .get_or_init(|| fresh(MembershipsByUser(self.db.clone())))
    }

    pub fn totp_enabled(&self) -> &Loaded<TotpEnabledByUser> {
        self.totp_enabled
            .get_or_init(|| fresh(TotpEnabledByUser(self.db.clone())))
    }

    pub fn identities_by_user(&self) -> &Loaded<IdentitiesByUser> {
        self.identities_by_user
            .get_or_init(|| fresh(IdentitiesByUser(self.db.clone())))
    }

    pub fn passkeys_by_user(&self) -> &Loaded<PasskeysByUser> {
        self.passkeys_by_user
            .get_or_init(|| fresh(PasskeysByUser(self.db.clone())))
    }

    /// Loads the members of `site_ids` and, `with_users`, then their users, one statement
    /// each on `conn` (the connection the page itself was read on), and hands them to the
    /// loaders, so the per-site and per-member resolvers find them cached. Not a join: the
    /// same few users are members of many sites, and a joined row would carry the whole user
    /// again for each membership.
    pub async fn preload_members(
        &self,
        conn: &impl ConnectionTrait,
        site_ids: &[Uuid],
        with_users: bool,
    ) -> Result<(), AppError> {
        let rows = members_of_sites(conn, site_ids).await?;
        let user_ids: HashSet<Uuid> = match with_users {
            true => rows.iter().map(|member| member.user_id).collect(),
            false => HashSet::new(),
        };
        let mut members = group(rows, |member| member.site_id);
        // Every site of the page gets an entry, so one without members is not loaded again.
        for id in site_ids {
            members.entry(*id).or_default();
        }
        if !user_ids.is_empty() {
            self.users().feed_many(users_by_id(conn, user_ids).await?).await;
        }
        self.memberships_by_site().feed_many(members).await;
        Ok(())
    }
}
