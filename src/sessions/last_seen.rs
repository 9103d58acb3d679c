//! Last-seen times noted on the read path and written in batches, so checking a token
//! never writes to the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use entity::session;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::error::AppError;
use crate::IssuedKeyHasher;

#[derive(Clone, Default)]
pub struct LastSeen {
    pending: Arc<Mutex<HashMap<Uuid, DateTime<Utc>, IssuedKeyHasher>>>,
}

impl LastSeen {
    pub fn touch(&self, session_id: Uuid, at: DateTime<Utc>) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(session_id, at);
        }
    }

    /// A time noted but not yet written, newer than what the database holds.
    pub fn pending(&self, session_id: Uuid) -> Option<DateTime<Utc>> {
        self.pending.lock().ok()?.get(&session_id).copied()
    }

    /// Writes the noted times; sessions closed meanwhile are simply not found. A time stays
    /// noted until it is written, so `pending` never misses a use that the database does
    /// not hold yet (the idle check relies on it).
    pub async fn flush(&self, conn: &impl ConnectionTrait) -> Result<(), AppError> {
        let batch: Vec<_> = match self.pending.lock() {
            Ok(pending) => pending.iter().map(|(id, at)| (*id, *at)).collect(),
            Err(_) => return Ok(()),
        };
        for (session_id, at) in batch {
            session::Entity::update_many()
                .col_expr(session::Column::LastSeenAt, Expr::value(at))
                .filter(session::Column::Id.eq(session_id))
                .exec(conn)
                .await?;
            if let Ok(mut pending) = self.pending.lock() {
                // A newer use noted meanwhile stays for the next batch.
                if pending.get(&session_id) == Some(&at) {
                    pending.remove(&session_id);
                }
            }
        }
        Ok(())
    }
}
