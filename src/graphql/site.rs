//! Sites: multi-tenant workspaces, site-scoped roles, invitation codes (API.md §5).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, Result};
use entity::{site as site_row, user as user_row};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::domain::page::PageRequest;
use crate::domain::site::{self, SiteRole as DomainSiteRole};
use crate::error::AppError;
use crate::graphql::connection::SiteConnection;
use crate::graphql::guard::{RequireRole, SiteRoleAtLeast};
use crate::graphql::types::User;
use crate::graphql::{change, ContextExt};
use crate::sessions::{Membership, SessionStore};

/// A role on a site.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SiteRole {
    /// Manages the site, its code and its members.
    Admin,
    /// Edits the site and sees its members.
    Manager,
    /// Belongs to the site.
    User,
}

impl From<DomainSiteRole> for SiteRole {
    fn from(role: DomainSiteRole) -> Self {
        match role {
            DomainSiteRole::Admin => SiteRole::Admin,
            DomainSiteRole::Manager => SiteRole::Manager,
            DomainSiteRole::User => SiteRole::User,
        }
    }
}

impl From<SiteRole> for DomainSiteRole {
    fn from(role: SiteRole) -> Self {
        match role {
            SiteRole::Admin => DomainSiteRole::Admin,
            SiteRole::Manager => DomainSiteRole::Manager,
            SiteRole::User => DomainSiteRole::User,
        }
    }
}

pub struct Site {
    row: site_row::Model,
    /// The members, when the page that holds the site read them up front.
    members: Option<Vec<SiteMembership>>,
}

impl Site {
    pub fn new(row: site_row::Model) -> Self {
        Site { row, members: None }
    }
}

/// A site (a tenant, a workspace); roles on it read `<id>:admin`, `<id>:manager`, `<id>:user`.
#[Object]
impl Site {
    /// The site's id; roles on it read `<id>:admin`, `<id>:manager`, `<id>:user`.
    async fn id(&self) -> Uuid {
        self.row.id
    }

    /// The site's name.
    async fn name(&self) -> &str {
        &self.row.name
    }

    /// A longer description.
    async fn description(&self) -> Option<&str> {
        self.row.description.as_deref()
    }

    /// When the site was created.
    async fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.row.created_at
    }

    /// The invitation code for `joinSite`; site admins and global admins only.
    #[graphql(guard = "SiteRoleAtLeast::new(self.row.id, DomainSiteRole::Admin).or_global_admin()")]
    async fn code(&self) -> Option<&str> {
        // Nullable although every site has one: a refusal leaves `null` (API.md §2, §5).
        Some(&self.row.code)
    }

    /// Everyone with a role on the site; site admins, managers and global admins only.
    #[graphql(guard = "SiteRoleAtLeast::new(self.row.id, DomainSiteRole::Manager).or_global_admin()")]
    async fn members(&self, ctx: &Context<'_>) -> Result<Option<Vec<SiteMembership>>> {
        // Nullable: a refusal leaves `null` and the rest of the site resolves (API.md §2).
        if let Some(members) = &self.members {
            return Ok(Some(members.clone()));
        }
        let members = ctx.loaders().memberships_by_site().load_one(self.row.id).await?;
        let members = members.iter().flat_map(|members| members.iter());
        Ok(Some(members.map(|row| SiteMembership::shared(row.clone())).collect()))
    }

    /// The caller's roles on this site.
    async fn my_roles(&self, ctx: &Context<'_>) -> Vec<SiteRole> {
        let identity = ctx.identity();
        let role = identity.caller().and_then(|caller| site::role_on(caller, self.row.id));
        role.into_iter().map(SiteRole::from).collect()
    }
}

pub struct SitePreview {
    row: site_row::Model,
}

/// What a holder of an invitation code may see before joining.
#[Object]
impl SitePreview {
    /// The site's id.
    async fn id(&self) -> Uuid {
        self.row.id
    }

    /// The site's name.
    async fn name(&self) -> &str {
        &self.row.name
    }
}

#[derive(Clone)]
pub struct SiteMembership {
    row: Arc<Membership>,
    /// The member's account, when the page that holds the membership read it up front.
    user: Option<Arc<user_row::Model>>,
}

impl SiteMembership {
    pub fn new(row: Membership) -> Self {
        Self::shared(Arc::new(row))
    }

    fn shared(row: Arc<Membership>) -> Self {
        SiteMembership { row, user: None }
    }

    pub fn site_id(&self) -> Uuid {
        self.row.site_id
    }
}

/// A user's role on a site.
#[Object]
impl SiteMembership {
    /// The site.
    async fn site(&self, ctx: &Context<'_>) -> Result<Site> {
        let site = ctx.loaders().sites().load_one(self.row.site_id).await?;
        Ok(Site::new(site.ok_or(AppError::NotFound)?))
    }

    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        if let Some(user) = &self.user {
            return Ok(User::new(user.clone(), None));
        }
        let user = ctx.loaders().users().load_one(self.row.user_id).await?;
        Ok(User::new(user.ok_or(AppError::NotFound)?, None))
    }

    /// The member's role on the site.
    async fn role(&self) -> Result<SiteRole> {
        let role = DomainSiteRole::parse(&self.row.role)
            .ok_or_else(|| anyhow::anyhow!("stored site role `{}`", self.row.role));
        Ok(role.map_err(AppError::from)?.into())
    }
}

#[derive(Default)]
pub struct SiteQuery;

#[Object]
impl SiteQuery {
    /// Sites the caller holds a role on (all sites for admins), oldest first.
    #[graphql(guard = "RequireRole::user()")]
    async fn sites(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size, at most 100.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<SiteConnection> {
        let request = PageRequest::new(first, after.as_deref())?;
        let count = ctx.look_ahead().field("totalCount").exists();
        // The page, its members and their users are read on one connection: one return to
        // the pool, and so one ping, instead of one for each statement.
        let state = ctx.state();
        let conn = state.sessions.one_connection().await.map_err(AppError::from)?;
        let page = site::list(&conn, &ctx.caller()?, &request, count).await?;
        // The page's members and their users are asked for up front (from the session cache,
        // or one statement each) and handed to the sites (API.md §5: statements do not grow
        // with the page).
        let members = ctx.look_ahead().field("edges").field("node").field("members");
        let mut members_by_site = match members.exists() {
            true => {
                let site_ids: Vec<Uuid> = page.items.iter().map(|(row, _)| row.id).collect();
                members_of_page(&state.sessions, &conn, &site_ids, members.field("user").exists()).await?
            }
            false => HashMap::new(),
        };
        Ok(SiteConnection::from_page(page, |row| Site {
            members: members_by_site.remove(&row.id),
            row,
        }))
    }

    /// A site the caller holds a role on (any site for admins); null otherwise.
    #[graphql(guard = "RequireRole::user()")]
    async fn site(&self, ctx: &Context<'_>, #[graphql(desc = "The site's id.")] id: Uuid) -> Result<Option<Site>> {
        if !site::can_see(&ctx.caller()?, id) {
            return Ok(None);
        }
        Ok(site::find(&ctx.state().db, id).await?.map(Site::new))
    }

    /// Looks a site up by its invitation code, before joining it.
    #[graphql(guard = "RequireRole::user()")]
    async fn site_by_code(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "An invitation code, as handed out by a site admin.")] code: String,
    ) -> Result<Option<SitePreview>> {
        Ok(site::find_by_code(&ctx.state().db, &code)
            .await?
            .map(|row| SitePreview { row }))
    }
}

/// The members of each of `site_ids`, each with its account `with_users`, from the session
/// store: what its cache lacks is read on `conn`, one statement for the members and one for
/// the users. Not a join: the same few users are members of many sites, and a joined row
/// would carry the whole user again for each membership.
async fn members_of_page(
    store: &SessionStore,
    conn: &impl ConnectionTrait,
    site_ids: &[Uuid],
    with_users: bool,
) -> Result<HashMap<Uuid, Vec<SiteMembership>>, AppError> {
    let lists = store.site_members(conn, site_ids).await?;
    let users = match with_users {
        true => {
            let user_ids: HashSet<Uuid> = lists.values().flat_map(|list| list.iter().map(|m| m.user_id)).collect();
            store.user_rows(conn, user_ids).await?
        }
        false => HashMap::new(),
    };
    let members = |list: &[Arc<Membership>]| -> Vec<SiteMembership> {
        let member = |row: &Arc<Membership>| SiteMembership {
            user: users.get(&row.user_id).cloned(),
            row: row.clone(),
        };
        list.iter().map(member).collect()
    };
    Ok(lists.iter().map(|(&site_id, list)| (site_id, members(list))).collect())
}

/// A new site.
#[derive(InputObject)]
pub struct CreateSiteInput {
    /// 1 to 200 characters.
    pub name: String,
    /// At most 2000 characters.
    pub description: Option<String>,
}

/// Site fields to change: omitted fields stay; a null description clears it.
#[derive(InputObject)]
pub struct UpdateSiteInput {
    /// 1 to 200 characters.
    pub name: Option<String>,
    /// At most 2000 characters.
    pub description: MaybeUndefined<String>,
}

#[derive(Default)]
pub struct SiteMutation;

#[Object]
impl SiteMutation {
    /// Creates a site; the caller becomes its admin.
    #[graphql(guard = "RequireRole::user()")]
    async fn create_site(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new site.")] input: CreateSiteInput,
    ) -> Result<Site> {
        let row = site::create(
            &ctx.state().sessions,
            &ctx.caller()?,
            &input.name,
            input.description,
            ctx.client(),
        )
        .await?;
        ctx.refresh_roles().await?;
        Ok(Site::new(row))
    }

    /// Changes a site's name or description; site admins and managers.
    #[graphql(guard = "SiteRoleAtLeast::new(id, DomainSiteRole::Manager)")]
    async fn update_site(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The site's id.")] id: Uuid,
        #[graphql(desc = "The fields to change.")] input: UpdateSiteInput,
    ) -> Result<Site> {
        Ok(Site::new(
            site::update(&ctx.state().sessions, id, input.name, change(input.description)).await?,
        ))
    }

    /// Deletes a site and every membership on it; site admins and global admins.
    #[graphql(guard = "SiteRoleAtLeast::new(id, DomainSiteRole::Admin).or_global_admin()")]
    async fn delete_site(&self, ctx: &Context<'_>, #[graphql(desc = "The site's id.")] id: Uuid) -> Result<bool> {
        site::delete(&ctx.state().sessions, &ctx.caller()?, id, ctx.client()).await?;
        Ok(true)
    }

    /// Replaces the site's invitation code; the old one stops working at once. Site admins.
    #[graphql(guard = "SiteRoleAtLeast::new(id, DomainSiteRole::Admin)")]
    async fn generate_site_code(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The site's id.")] id: Uuid,
    ) -> Result<String> {
        Ok(site::regenerate_code(&ctx.state().sessions, id).await?)
    }

    /// Joins the site with this invitation code as `user`; joining twice changes nothing.
    #[graphql(guard = "RequireRole::user()")]
    async fn join_site(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The site's invitation code.")] code: String,
    ) -> Result<Site> {
        let row = site::join(&ctx.state().sessions, &ctx.caller()?, &code, ctx.client()).await?;
        ctx.refresh_roles().await?;
        Ok(Site::new(row))
    }

    /// Drops the caller's role on the site; the last admin cannot leave.
    #[graphql(guard = "SiteRoleAtLeast::new(id, DomainSiteRole::User)")]
    async fn leave_site(&self, ctx: &Context<'_>, #[graphql(desc = "The site's id.")] id: Uuid) -> Result<bool> {
        let caller = ctx.caller()?;
        site::set_role(&ctx.state().sessions, &caller, id, caller.user_id, None, ctx.client()).await?;
        ctx.refresh_roles().await?;
        Ok(true)
    }

    /// Gives a user a role on the site, or removes them with `role: null`; a site keeps at least one admin.
    /// Site admins.
    #[graphql(guard = "SiteRoleAtLeast::new(site_id, DomainSiteRole::Admin)")]
    async fn set_site_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The site's id.")] site_id: Uuid,
        #[graphql(desc = "The user given the role.")] user_id: Uuid,
        #[graphql(desc = "The role on the site; null removes the user from it.")] role: Option<SiteRole>,
    ) -> Result<bool> {
        let role = role.map(DomainSiteRole::from);
        site::set_role(
            &ctx.state().sessions,
            &ctx.caller()?,
            site_id,
            user_id,
            role,
            ctx.client(),
        )
        .await?;
        ctx.refresh_roles().await?;
        Ok(true)
    }
}
