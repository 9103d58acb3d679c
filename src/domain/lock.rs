//! Rows a transaction decides on (the last admin of the server or of a site) must not change
//! under it: PostgreSQL locks them with `FOR UPDATE`; SQLite has a single writer, and a first
//! write, even one that changes nothing, takes its lock for the rest of the transaction.

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, QuerySelect};

use crate::error::AppError;

/// `query`, made to lock what it reads until `txn` ends.
pub async fn for_update<Q: QuerySelect>(txn: &DatabaseTransaction, query: Q) -> Result<Q, AppError> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        return Ok(query.lock_exclusive());
    }
    txn.execute_unprepared("UPDATE server_settings SET value = value WHERE 0")
        .await?;
    Ok(query)
}
