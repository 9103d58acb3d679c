//! DataLoaders, created per request so nothing outlives it (a cached row could keep a
//! revoked role alive). One loader per key -> value shape; each `load` is one `IN (...)` query.
//! Within a request they cache, so the same row is read once however many fields ask for it.
//! A page of sites reads its members and their users here too, up front, and hands them to
//! its sites itself (`graphql::site`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use entity::{identity, passkey, site, site_member, user};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use uuid::Uuid;

use crate::error::AppError;

/// A membership as the API shows it: who, where, as what. When it began is not read: no
/// field shows it, and a page of sites reads a hundred of them.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Membership {
    pub site_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
}

/// Memberships, reading only the columns `Membership` holds.
fn memberships() -> Select<site_member::Entity> {
    site_member::Entity::find().select_only().columns([
        site_member::Column::SiteId,
        site_member::Column::UserId,
        site_member::Column::Role,
    ])
}

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
pub async fn users_by_id(
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
    type Value = Vec<Membership>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = members_of_sites(&self.0, keys).await?;
        Ok(group(rows, |row| row.site_id))
    }
}

/// The memberships of these sites, site by site, each in the order its members joined: the
/// order of the index `site_members_by_site`, which holds every column read, so the rows come
/// from it alone, unsorted.
pub async fn members_of_sites(conn: &impl ConnectionTrait, site_ids: &[Uuid]) -> Result<Vec<Membership>, AppError> {
    let query = memberships()
        .filter(site_member::Column::SiteId.is_in(site_ids.to_vec()))
        .order_by_asc(site_member::Column::SiteId)
        .order_by_asc(site_member::Column::JoinedAt)
        .order_by_asc(site_member::Column::UserId);
    Ok(query.into_model().all(conn).await?)
}

/// The memberships of each user, in the order they joined.
pub struct MembershipsByUser(pub DatabaseConnection);

impl Loader<Uuid> for MembershipsByUser {
    type Value = Vec<Membership>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = memberships()
            .filter(site_member::Column::UserId.is_in(keys.to_vec()))
            .order_by_asc(site_member::Column::JoinedAt)
            .order_by_asc(site_member::Column::SiteId)
            .into_model()
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
pub fn group<T>(rows: Vec<T>, key: impl Fn(&T) -> Uuid) -> HashMap<Uuid, Vec<T>> {
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
}
