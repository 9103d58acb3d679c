//! Administration (role `admin`): list, create and delete users, grant and revoke global
//! roles. The last admin can neither be deleted nor lose `admin`, and no deletion leaves a
//! site without an admin.

use entity::{user, user_role};
use sea_orm::sea_query::{Expr, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::auth::password::PasswordHasher;
use crate::client::ClientInfo;
use crate::domain::account::{self, NewAccount};
use crate::domain::audit::{self, Event, Kind};
use crate::domain::lock;
use crate::domain::page::{Page, PageRequest};
use crate::domain::role::{self, check_global_roles};
use crate::domain::site;
use crate::error::AppError;
use crate::sessions::{self, Caller, SessionStore};

/// Users by username (case-folded), optionally those whose username or email contains `search`.
pub async fn list_users(
    db: &DatabaseConnection,
    request: &PageRequest,
    search: Option<&str>,
) -> Result<Page<user::Model>, AppError> {
    let mut filter = Condition::all();
    if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        filter = filter.add(
            Condition::any()
                .add(Expr::col(user::Column::UsernameKey).like(LikeExpr::new(pattern.clone()).escape('\\')))
                .add(Expr::col(user::Column::EmailKey).like(LikeExpr::new(pattern).escape('\\'))),
        );
    }
    let total = user::Entity::find().filter(filter.clone()).count(db).await?;
    let mut query = user::Entity::find().filter(filter);
    if let Some(after) = &request.after {
        query = query.filter(user::Column::UsernameKey.gt(after.as_str()));
    }
    let rows = query
        .order_by_asc(user::Column::UsernameKey)
        .limit(request.fetch())
        .all(db)
        .await?;
    Ok(Page::from_rows(request, rows, Some(total), |row| {
        row.username_key.clone()
    }))
}

/// `createUser`: an account with role `user` plus `roles`, created by an admin.
pub async fn create_user(
    store: &SessionStore,
    passwords: &PasswordHasher,
    admin: &Caller,
    new: NewAccount,
    roles: &[String],
    client: &ClientInfo,
) -> Result<(user::Model, Vec<String>), AppError> {
    let email = account::check_new_account(&new)?;
    let extra = check_global_roles(roles)?;
    let password_hash = passwords.hash(&new.password).await?;
    let now = store.now();
    let mut change = store.begin().await?;
    let user = account::insert_user(&mut change, new, email, password_hash, &extra, now).await?;
    let roles = sessions::roles_of(change.txn(), user.id).await?;
    let event = Event {
        kind: Kind::UserCreated,
        actor: Some(admin.user_id),
        subject: Some(user.id),
        client,
        detail: None,
    }
    .with_detail(serde_json::json!({ "roles": roles }));
    audit::record(change.txn(), now, event).await?;
    change.commit().await?;
    Ok((user, roles))
}

/// `deleteUsers`: deletes the users that exist and returns their ids; sessions go with them
/// (foreign keys), so their tokens stop working at once. Refused when it would remove the
/// last admin of the server or of a site.
pub async fn delete_users(
    store: &SessionStore,
    admin: &Caller,
    ids: &[Uuid],
    client: &ClientInfo,
) -> Result<Vec<Uuid>, AppError> {
    let mut ids = ids.to_vec();
    ids.dedup();
    let now = store.now();
    let mut change = store.begin().await?;
    let admins = lock_admins(change.txn()).await?;
    if !admins.is_empty() && admins.iter().all(|a| ids.contains(a)) {
        return Err(AppError::bad_input("ids", "the last admin cannot be deleted"));
    }
    if site::deleting_leaves_a_site_without_admin(change.txn(), &ids).await? {
        return Err(AppError::bad_input("ids", "a site keeps at least one admin"));
    }
    let existing: Vec<Uuid> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .filter(user::Column::Id.is_in(ids.clone()))
        .into_tuple()
        .all(change.txn())
        .await?;
    let deleted: Vec<Uuid> = ids.into_iter().filter(|id| existing.contains(id)).collect();
    change.delete_users(&deleted).await?;
    for id in &deleted {
        let event = Event {
            kind: Kind::UserDeleted,
            actor: Some(admin.user_id),
            subject: Some(*id),
            client,
            detail: None,
        };
        audit::record(change.txn(), now, event).await?;
    }
    change.commit().await?;
    Ok(deleted)
}

/// `grantRoles`: adds global roles; effective on the user's next request.
pub async fn grant_roles(
    store: &SessionStore,
    admin: &Caller,
    user_id: Uuid,
    roles: &[String],
    client: &ClientInfo,
) -> Result<(user::Model, Vec<String>), AppError> {
    let roles = check_global_roles(roles)?;
    let now = store.now();
    let mut change = store.begin().await?;
    let user = account::find(change.txn(), user_id).await?.ok_or(AppError::NotFound)?;
    let names: Vec<&str> = roles.iter().map(String::as_str).collect();
    change.grant(user_id, &names, now).await?;
    let event = Event {
        kind: Kind::RolesGranted,
        actor: Some(admin.user_id),
        subject: Some(user_id),
        client,
        detail: None,
    }
    .with_detail(serde_json::json!({ "roles": roles }));
    audit::record(change.txn(), now, event).await?;
    let held = sessions::roles_of(change.txn(), user_id).await?;
    change.commit().await?;
    Ok((user, held))
}

/// `revokeRoles`: removes global roles. Every account keeps `user`; the last admin keeps `admin`.
pub async fn revoke_roles(
    store: &SessionStore,
    admin: &Caller,
    user_id: Uuid,
    roles: &[String],
    client: &ClientInfo,
) -> Result<(user::Model, Vec<String>), AppError> {
    let roles = check_global_roles(roles)?;
    if roles.iter().any(|r| r == role::USER) {
        return Err(AppError::bad_input("roles", "every account keeps the role user"));
    }
    let now = store.now();
    let mut change = store.begin().await?;
    let user = account::find(change.txn(), user_id).await?.ok_or(AppError::NotFound)?;
    if roles.iter().any(|r| r == role::ADMIN) && lock_admins(change.txn()).await? == [user_id] {
        return Err(AppError::bad_input(
            "roles",
            "the last admin cannot lose the role admin",
        ));
    }
    change.revoke(user_id, &roles).await?;
    let event = Event {
        kind: Kind::RolesRevoked,
        actor: Some(admin.user_id),
        subject: Some(user_id),
        client,
        detail: None,
    }
    .with_detail(serde_json::json!({ "roles": roles }));
    audit::record(change.txn(), now, event).await?;
    let held = sessions::roles_of(change.txn(), user_id).await?;
    change.commit().await?;
    Ok((user, held))
}

/// The ids of all admins, locked for the rest of the transaction so two admins removing
/// each other at once cannot both succeed.
async fn lock_admins(txn: &sea_orm::DatabaseTransaction) -> Result<Vec<Uuid>, AppError> {
    let query = user_role::Entity::find()
        .select_only()
        .column(user_role::Column::UserId)
        .filter(user_role::Column::Role.eq(role::ADMIN));
    let query = lock::for_update(txn, query).await?;
    Ok(query.into_tuple().all(txn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::in_memory;

    #[tokio::test]
    async fn the_last_admin_keeps_admin_until_there_is_another() {
        let store = in_memory().await;
        let passwords = PasswordHasher::new(64, 1, 1).unwrap();
        account::ensure_admin(&store, &passwords, "root", "a long admin password")
            .await
            .unwrap();
        let root = account::find_by_username(store.db(), "root").await.unwrap().unwrap();
        let caller = Caller {
            user_id: root.id,
            session_id: Uuid::new_v4(),
            roles: vec![role::ADMIN.into(), role::USER.into()].into(),
            user: std::sync::Arc::new(root.clone()),
            authenticated_at: store.now(),
        };
        let client = ClientInfo::default();
        let admin = vec![role::ADMIN.to_string()];

        let refused = revoke_roles(&store, &caller, root.id, &admin, &client).await;
        assert!(matches!(refused, Err(AppError::BadUserInput { field: "roles", .. })));

        let new = NewAccount {
            username: "deputy".into(),
            password: "another long password".into(),
            email: None,
            name: None,
        };
        let (deputy, _) = create_user(&store, &passwords, &caller, new, &admin, &client)
            .await
            .unwrap();
        let (_, held) = revoke_roles(&store, &caller, root.id, &admin, &client).await.unwrap();
        assert_eq!(held, [role::USER]);
        let refused = revoke_roles(&store, &caller, deputy.id, &admin, &client).await;
        assert!(refused.is_err(), "now the deputy is the last admin");
    }
}
