//! Sites (API.md §5): multi-tenant workspaces with one role per member (`admin`, `manager`,
//! `user`), invitation codes, and the rule that a site never loses its last admin. Who may
//! call what is decided by the field guards; this module keeps the data rules.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{site, site_member, user};
use sea_orm::sea_query::{Expr, SelectStatement, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr,
    EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait,
};
use uuid::Uuid;

use crate::client::ClientInfo;
use crate::domain::audit::{self, Event, Kind};
use crate::domain::lock;
use crate::domain::page::{self, Page, PageRequest};
use crate::domain::profile::Change;
use crate::domain::role;
use crate::error::{on_unique, AppError};
use crate::sessions::{Caller, SessionChange, SessionStore};

const MAX_SITE_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Invitation codes carry 128 bits from the OS CSPRNG (API.md §3 asks for at least 64).
const CODE_BYTES: usize = 16;

/// A role on a site, ordered: `User < Manager < Admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SiteRole {
    User,
    Manager,
    Admin,
}

impl SiteRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteRole::User => "user",
            SiteRole::Manager => "manager",
            SiteRole::Admin => "admin",
        }
    }

    pub fn parse(role: &str) -> Option<Self> {
        match role {
            "user" => Some(SiteRole::User),
            "manager" => Some(SiteRole::Manager),
            "admin" => Some(SiteRole::Admin),
            _ => None,
        }
    }

    /// The role as it appears in `User.roles`: `<siteId>:<role>`.
    pub fn qualified(self, site_id: Uuid) -> String {
        format!("{site_id}:{}", self.as_str())
    }
}

/// The caller's role on a site, read from the roles loaded for this request.
pub fn role_on(caller: &Caller, site_id: Uuid) -> Option<SiteRole> {
    // Spelled as `qualified` spells it, on the stack: guards ask this for every site of a page.
    let mut spelled = Uuid::encode_buffer();
    let site = site_id.hyphenated().encode_lower(&mut spelled);
    caller
        .roles
        .iter()
        .filter_map(|r| r.strip_prefix(&*site)?.strip_prefix(':'))
        .filter_map(SiteRole::parse)
        .max()
}

/// The site a role is on, for a site role (`<siteId>:<role>`); `None` for a global role.
pub fn site_of_role(role: &str) -> Option<Uuid> {
    let (site_id, role) = role.split_once(':')?;
    SiteRole::parse(role)?;
    site_id.parse().ok()
}

/// Whether the caller may see the site at all: a role on it, or global admin.
pub fn can_see(caller: &Caller, site_id: Uuid) -> bool {
    caller.has_role(role::ADMIN) || role_on(caller, site_id).is_some()
}

fn check_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_SITE_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "name",
            "name must be 1 to 200 printable characters",
        ));
    }
    Ok(name.to_owned())
}

fn check_description(description: &str) -> Result<(), AppError> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(AppError::bad_input(
            "description",
            "description must be at most 2000 characters",
        ));
    }
    Ok(())
}

fn new_code() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut bytes = [0u8; CODE_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Sites in creation order: those the caller holds a role on, or all of them for an admin;
/// counted in full only when `count` asks for it. The count rides on the page's statement as
/// a column; only an empty page needs a statement of its own for it.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    request: &PageRequest,
    count: bool,
) -> Result<Page<site::Model>, AppError> {
    let mut filter = Condition::all();
    if !caller.has_role(role::ADMIN) {
        let mine = site_member::Entity::find()
            .select_only()
            .column(site_member::Column::SiteId)
            .filter(site_member::Column::UserId.eq(caller.user_id))
            .into_query();
        filter = filter.add(site::Column::Id.in_subquery(mine));
    }
    let mut query = site::Entity::find().filter(filter);
    if let Some(after) = &request.after {
        let (at, id) = page::parse_time_key(after)?;
        query = query.filter(
            Condition::any().add(site::Column::CreatedAt.gt(at)).add(
                Condition::all()
                    .add(site::Column::CreatedAt.eq(at))
                    .add(site::Column::Id.gt(id)),
            ),
        );
    }
    let query = query
        .order_by_asc(site::Column::CreatedAt)
        .order_by_asc(site::Column::Id)
        .limit(request.fetch());
    let (rows, total) = match count {
        false => (query.all(db).await?, None),
        true => {
            let total = SimpleExpr::SubQuery(None, Box::new(counted(caller).into_sub_query_statement()));
            let rows = query.column_as(total, "total").into_model::<Counted>().all(db).await?;
            let total = match rows.first() {
                Some(first) => first.total,
                None => {
                    let alone = db.get_database_backend().build(&counted(caller));
                    let row = db.query_one(alone).await?;
                    row.map(|row| row.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0)
                }
            };
            let total = u64::try_from(total).unwrap_or(0);
            (rows.into_iter().map(|row| row.site).collect(), Some(total))
        }
    };
    Ok(Page::from_rows(request, rows, total, |row| {
        page::time_key(row.created_at, row.id)
    }))
}

/// How many sites `list` lists for `caller`, as one statement: a column of the page's, or
/// alone for an empty page. A caller's sites are as many as their
/// memberships: one per site (the primary key), each of a site that exists (the foreign
/// key), so counting them reads one index and no site.
fn counted(caller: &Caller) -> SelectStatement {
    if caller.has_role(role::ADMIN) {
        return site::Entity::find()
            .select_only()
            .expr(Expr::val(1).count())
            .into_query();
    }
    site_member::Entity::find()
        .select_only()
        .expr(Expr::val(1).count())
        .filter(site_member::Column::UserId.eq(caller.user_id))
        .into_query()
}

/// A site row, with the count of all the sites of the list.
struct Counted {
    site: site::Model,
    total: i64,
}

impl FromQueryResult for Counted {
    fn from_query_result(row: &QueryResult, prefix: &str) -> Result<Self, DbErr> {
        Ok(Counted {
            site: site::Model::from_query_result(row, prefix)?,
            total: row.try_get(prefix, "total")?,
        })
    }
}

pub async fn find(conn: &impl ConnectionTrait, site_id: Uuid) -> Result<Option<site::Model>, AppError> {
    Ok(site::Entity::find_by_id(site_id).one(conn).await?)
}

pub async fn find_by_code(db: &impl ConnectionTrait, code: &str) -> Result<Option<site::Model>, AppError> {
    Ok(site::Entity::find()
        .filter(site::Column::Code.eq(code.trim()))
        .one(db)
        .await?)
}

/// `createSite`: the site and the caller's admin membership, in one transaction.
pub async fn create(
    store: &SessionStore,
    caller: &Caller,
    name: &str,
    description: Option<String>,
    client: &ClientInfo,
) -> Result<site::Model, AppError> {
    let name = check_name(name)?;
    if let Some(description) = &description {
        check_description(description)?;
    }
    let now = store.now();
    let mut change = store.begin().await?;
    let row = site::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(name),
        description: Set(description),
        code: Set(new_code()),
        created_by: Set(Some(caller.user_id)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let site = site::Entity::insert(row)
        .exec_with_returning(change.txn())
        .await
        .map_err(on_unique(&["code"]))?;
    put_member(&mut change, site.id, caller.user_id, SiteRole::Admin, now).await?;
    let event = Event::own(Kind::SiteCreated, caller.user_id, client);
    audit::record(
        change.txn(),
        now,
        Event {
            subject: Some(site.id),
            ..event
        },
    )
    .await?;
    change.commit().await?;
    Ok(site)
}

/// `updateSite`: name and description.
pub async fn update(
    store: &SessionStore,
    site_id: Uuid,
    name: Option<String>,
    description: Change<String>,
) -> Result<site::Model, AppError> {
    let site = find(store.db(), site_id).await?.ok_or(AppError::NotFound)?;
    let mut row: site::ActiveModel = site.into();
    if let Some(name) = name {
        row.name = Set(check_name(&name)?);
    }
    match description {
        Change::Keep => {}
        Change::Clear => row.description = Set(None),
        Change::Set(description) => {
            check_description(&description)?;
            row.description = Set(Some(description));
        }
    }
    row.updated_at = Set(store.now());
    Ok(row.update(store.db()).await?)
}

/// `deleteSite`: the site and every membership (foreign keys cascade).
pub async fn delete(store: &SessionStore, caller: &Caller, site_id: Uuid, client: &ClientInfo) -> Result<(), AppError> {
    let now = store.now();
    let mut change = store.begin().await?;
    if !change.delete_site(site_id).await? {
        return Err(AppError::NotFound);
    }
    let event = Event::own(Kind::SiteDeleted, caller.user_id, client);
    audit::record(
        change.txn(),
        now,
        Event {
            subject: Some(site_id),
            ..event
        },
    )
    .await?;
    change.commit().await
}

/// `generateSiteCode`: a fresh code; the old one stops working at once.
pub async fn regenerate_code(store: &SessionStore, site_id: Uuid) -> Result<String, AppError> {
    let code = new_code();
    let updated = site::Entity::update_many()
        .col_expr(site::Column::Code, Expr::value(code.clone()))
        .col_expr(site::Column::UpdatedAt, Expr::value(store.now()))
        .filter(site::Column::Id.eq(site_id))
        .exec(store.db())
        .await
        .map_err(on_unique(&["code"]))?;
    if updated.rows_affected == 0 {
        return Err(AppError::NotFound);
    }
    Ok(code)
}

/// `joinSite`: grants `user` on the site with this code; a member keeps the role they have.
pub async fn join(
    store: &SessionStore,
    caller: &Caller,
    code: &str,
    client: &ClientInfo,
) -> Result<site::Model, AppError> {
    let site = find_by_code(store.db(), code).await?.ok_or(AppError::NotFound)?;
    let now = store.now();
    let mut change = store.begin().await?;
    let joined = change
        .put_site_member(site.id, caller.user_id, SiteRole::User.as_str(), true, now)
        .await?;
    if joined {
        let detail = serde_json::json!({ "siteId": site.id, "role": "user" });
        audit::record(
            change.txn(),
            now,
            Event::own(Kind::SiteRoleChanged, caller.user_id, client).with_detail(detail),
        )
        .await?;
    }
    change.commit().await?;
    Ok(site)
}

/// `leaveSite` and `setSiteRole`: gives `user_id` the role `role` on the site, or removes
/// them with `None`. Refused when it would leave the site without an admin.
pub async fn set_role(
    store: &SessionStore,
    actor: &Caller,
    site_id: Uuid,
    user_id: Uuid,
    role: Option<SiteRole>,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let now = store.now();
    let mut change = store.begin().await?;
    find(change.txn(), site_id).await?.ok_or(AppError::NotFound)?;
    user::Entity::find_by_id(user_id)
        .one(change.txn())
        .await?
        .ok_or(AppError::NotFound)?;
    let admins = lock_admins(change.txn(), site_id).await?;
    if role != Some(SiteRole::Admin) && admins == [user_id] {
        return Err(AppError::bad_input("role", "a site keeps at least one admin"));
    }
    match role {
        Some(role) => put_member(&mut change, site_id, user_id, role, now).await?,
        None => {
            if !change.remove_site_member(site_id, user_id).await? {
                return Err(AppError::NotFound);
            }
        }
    }
    let detail = serde_json::json!({ "siteId": site_id, "role": role.map(SiteRole::as_str) });
    let event = Event {
        kind: Kind::SiteRoleChanged,
        actor: Some(actor.user_id),
        subject: Some(user_id),
        client,
        detail: Some(detail),
    };
    audit::record(change.txn(), now, event).await?;
    change.commit().await
}

async fn put_member(
    change: &mut SessionChange,
    site_id: Uuid,
    user_id: Uuid,
    role: SiteRole,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    change
        .put_site_member(site_id, user_id, role.as_str(), false, now)
        .await?;
    Ok(())
}

/// Whether deleting `users` would leave a site without an admin. The admins of every site one
/// of them administers are locked until the transaction ends, so a demotion racing the
/// deletion cannot slip past the last-admin rule.
pub async fn deleting_leaves_a_site_without_admin(txn: &DatabaseTransaction, users: &[Uuid]) -> Result<bool, AppError> {
    let administered = site_member::Entity::find()
        .select_only()
        .column(site_member::Column::SiteId)
        .filter(site_member::Column::UserId.is_in(users.iter().copied()))
        .filter(site_member::Column::Role.eq(SiteRole::Admin.as_str()))
        .into_query();
    let admins = site_member::Entity::find()
        .select_only()
        .column(site_member::Column::SiteId)
        .column(site_member::Column::UserId)
        .filter(site_member::Column::Role.eq(SiteRole::Admin.as_str()))
        .filter(site_member::Column::SiteId.in_subquery(administered));
    let admins: Vec<(Uuid, Uuid)> = lock::for_update(txn, admins).await?.into_tuple().all(txn).await?;
    let mut staying: HashMap<Uuid, usize> = HashMap::new();
    for (site_id, user_id) in admins {
        *staying.entry(site_id).or_default() += usize::from(!users.contains(&user_id));
    }
    Ok(staying.values().any(|&n| n == 0))
}

/// The site's admins, locked until the transaction ends so two demotions cannot race past
/// the last-admin rule.
async fn lock_admins(txn: &DatabaseTransaction, site_id: Uuid) -> Result<Vec<Uuid>, AppError> {
    let admins = site_member::Entity::find()
        .select_only()
        .column(site_member::Column::UserId)
        .filter(site_member::Column::SiteId.eq(site_id))
        .filter(site_member::Column::Role.eq(SiteRole::Admin.as_str()));
    let query = lock::for_update(txn, admins).await?;
    Ok(query.into_tuple().all(txn).await?)
}
