//! The audit log as admins read it: newest first (API.md §5). Recording is `crate::audit`.

use entity::audit_event;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

pub use crate::audit::{insert, record, Event, Kind};
use crate::domain::page::{self, Page, PageRequest};
use crate::error::AppError;
use crate::sessions::SessionStore;

/// Records a refused credential (a wrong password, code or passkey answer) and counts it in
/// the login-failure metric.
pub async fn record_refused(store: &SessionStore, event: Event<'_>) -> Result<(), AppError> {
    record(store.db(), store.now(), event).await?;
    metrics::counter!(crate::telemetry::LOGIN_FAILURES).increment(1);
    Ok(())
}

/// Events newest first, optionally those where `user_id` is the actor or the subject.
pub async fn list(
    db: &DatabaseConnection,
    request: &PageRequest,
    user_id: Option<Uuid>,
) -> Result<Page<audit_event::Model>, AppError> {
    let mut filter = Condition::all();
    if let Some(user_id) = user_id {
        filter = filter.add(
            Condition::any()
                .add(audit_event::Column::ActorId.eq(user_id))
                .add(audit_event::Column::SubjectId.eq(user_id)),
        );
    }
    let total = audit_event::Entity::find().filter(filter.clone()).count(db).await?;
    let mut query = audit_event::Entity::find().filter(filter);
    if let Some(after) = &request.after {
        let (at, id) = page::parse_time_key(after)?;
        query = query.filter(
            Condition::any().add(audit_event::Column::At.lt(at)).add(
                Condition::all()
                    .add(audit_event::Column::At.eq(at))
                    .add(audit_event::Column::Id.lt(id)),
            ),
        );
    }
    let rows = query
        .order_by_desc(audit_event::Column::At)
        .order_by_desc(audit_event::Column::Id)
        .limit(request.fetch())
        .all(db)
        .await?;
    Ok(Page::from_rows(request, rows, Some(total), |row| {
        page::time_key(row.at, row.id)
    }))
}
