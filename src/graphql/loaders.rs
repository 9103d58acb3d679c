//! DataLoaders, created per request so nothing outlives it (a cached row could keep a
//! revoked role alive). One loader per key -> value shape; each `load` is one `IN (...)` query.
//! Within a request they cache, so the same row is read once however many fields ask for it.
//! Sites' members and users' rows come from the session store, which also keeps them across
//! requests until a change makes them stale; a page of sites asks it for its members and
//! their users up front, and hands them to its sites itself (`graphql::site`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use entity::{identity, passkey, site, site_member, user};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::error::AppError;
use crate::sessions::{Members, Membership, SessionStore};

/// Users' rows, through the session store's cache.
pub struct UserById(pub SessionStore);

impl Loader<Uuid> for UserById {
    /// Shared: each member of a page of sites hands its user out again.
    type Value = Arc<user::Model>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let store = &self.0;
        Ok(store.user_rows(store.db(), keys.iter().copied()).await?)
    }
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

/// The members of each site, in the order they joined, through the session store's cache.
pub struct MembershipsBySite(pub SessionStore);

impl Loader<Uuid> for MembershipsBySite {
    type Value = Members;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let store = &self.0;
        Ok(store.site_members(store.db(), keys).await?)
    }
}

/// The memberships of each user, in the order they joined.
pub struct MembershipsByUser(pub DatabaseConnection);

impl Loader<Uuid> for MembershipsByUser {
    type Value = Vec<Membership>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = Membership::select()
            .filter(site_member::Column::UserId.is_in(keys.to_vec()))
            .order_by_asc(site_member::Column::JoinedAt)
            .order_by_asc(site_member::Column::SiteId)
            .into_model::<Membership>()
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

/// Rows by the id `key` reads from each, in their order.
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
    store: SessionStore,
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
    pub fn new(store: &SessionStore) -> Self {
        Loaders {
            store: store.clone(),
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
        self.users.get_or_init(|| fresh(UserById(self.store.clone())))
    }

    pub fn sites(&self) -> &Loaded<SiteById> {
        self.sites.get_or_init(|| fresh(SiteById(self.store.db().clone())))
    }

    pub fn memberships_by_site(&self) -> &Loaded<MembershipsBySite> {
        self.memberships_by_site
            .get_or_init(|| fresh(MembershipsBySite(self.store.clone())))
    }

    pub fn memberships_by_user(&self) -> &Loaded<MembershipsByUser> {
        self.memberships_by_user
            .get_or_init(|| fresh(MembershipsByUser(self.store.db().clone())))
    }

    pub fn totp_enabled(&self) -> &Loaded<TotpEnabledByUser> {
        self.totp_enabled
            .get_or_init(|| fresh(TotpEnabledByUser(self.store.db().clone())))
    }

    pub fn identities_by_user(&self) -> &Loaded<IdentitiesByUser> {
        self.identities_by_user
            .get_or_init(|| fresh(IdentitiesByUser(self.store.db().clone())))
    }

    pub fn passkeys_by_user(&self) -> &Loaded<PasskeysByUser> {
        self.passkeys_by_user
            .get_or_init(|| fresh(PasskeysByUser(self.store.db().clone())))
    }
}
