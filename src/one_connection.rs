//! Statements run one after another on one connection taken from the pool, without a
//! transaction. sqlx pings a connection every time it goes back to the pool (a round trip to
//! PostgreSQL, a hand-off to a SQLite connection's thread), so statements that each took a
//! connection of their own paid one ping each.

use std::sync::Arc;

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, Executor, Postgres, Sqlite};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};
use sea_query_binder::SqlxValues;
use tokio::sync::Mutex;

/// Sees every statement a `OneConnection` runs. sea-orm's metric callback sees only those
/// run through the pool, and cannot be read back to be called from here.
pub type StatementObserver = Arc<dyn Fn(&Statement) + Send + Sync>;

/// One pooled connection, held until dropped. Statements wait for each other.
pub struct OneConnection {
    conn: Held,
    observer: Option<StatementObserver>,
}

enum Held {
    Postgres(Mutex<PoolConnection<Postgres>>),
    Sqlite(Mutex<PoolConnection<Sqlite>>),
}

impl OneConnection {
    pub async fn acquire(db: &DatabaseConnection, observer: Option<&StatementObserver>) -> Result<Self, DbErr> {
        let conn = match db.get_database_backend() {
            DbBackend::Postgres => {
                let conn = db.get_postgres_connection_pool().acquire().await;
                Held::Postgres(Mutex::new(conn.map_err(acquire_error)?))
            }
            DbBackend::Sqlite => {
                let conn = db.get_sqlite_connection_pool().acquire().await;
                Held::Sqlite(Mutex::new(conn.map_err(acquire_error)?))
            }
            other => return Err(DbErr::Custom(format!("no pool for {other:?}"))),
        };
        Ok(OneConnection {
            conn,
            observer: observer.cloned(),
        })
    }

    fn observe(&self, stmt: &Statement) {
        if let Some(observer) = &self.observer {
            observer(stmt);
        }
    }
}

/// As sea-orm words a failed checkout, so callers see the same errors from either path.
fn acquire_error(error: sqlx::Error) -> DbErr {
    match error {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Conn(RuntimeErr::SqlxError(other)),
    }
}

fn exec_error(error: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(error))
}

fn query_error(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(error))
}

#[async_trait::async_trait]
impl ConnectionTrait for OneConnection {
    fn get_database_backend(&self) -> DbBackend {
        match self.conn {
            Held::Postgres(_) => DbBackend::Postgres,
            Held::Sqlite(_) => DbBackend::Sqlite,
        }
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.observe(&stmt);
        let done = match &self.conn {
            Held::Postgres(conn) => query(&stmt).execute(&mut **conn.lock().await).await.map(Into::into),
            Held::Sqlite(conn) => query(&stmt).execute(&mut **conn.lock().await).await.map(Into::into),
        };
        done.map_err(exec_error)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.observe(&Statement::from_string(self.get_database_backend(), sql));
        let done = match &self.conn {
            Held::Postgres(conn) => conn.lock().await.execute(sql).await.map(Into::into),
            Held::Sqlite(conn) => conn.lock().await.execute(sql).await.map(Into::into),
        };
        done.map_err(exec_error)
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.observe(&stmt);
        let row = match &self.conn {
            Held::Postgres(conn) => query(&stmt)
                .fetch_optional(&mut **conn.lock().await)
                .await
                .map(|row| row.map(Into::into)),
            Held::Sqlite(conn) => query(&stmt)
                .fetch_optional(&mut **conn.lock().await)
                .await
                .map(|row| row.map(Into::into)),
        };
        row.map_err(query_error)
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.observe(&stmt);
        let rows = match &self.conn {
            Held::Postgres(conn) => query(&stmt).fetch_all(&mut **conn.lock().await).await.map(into_results),
            Held::Sqlite(conn) => query(&stmt).fetch_all(&mut **conn.lock().await).await.map(into_results),
        };
        rows.map_err(query_error)
    }
}

/// The statement with its values bound, as sea-orm's own pools prepare it.
fn query<DB: sqlx::Database>(stmt: &Statement) -> sqlx::query::Query<'_, DB, SqlxValues>
where
    SqlxValues: for<'q> sqlx::IntoArguments<'q, DB>,
{
    let values = stmt.values.clone().unwrap_or(sea_orm::sea_query::Values(Vec::new()));
    sqlx::query_with(&stmt.sql, SqlxValues(values))
}

fn into_results<Row: Into<QueryResult>>(rows: Vec<Row>) -> Vec<QueryResult> {
    rows.into_iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use sea_orm::{ConnectOptions, Database};

    use super::*;

    /// A pool of one connection to a private in-memory database: a connection not given back
    /// would make the next checkout wait out the acquire timeout.
    async fn pool_of_one() -> DatabaseConnection {
        let mut options = ConnectOptions::new("sqlite::memory:");
        options
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .sqlx_logging(false);
        Database::connect(options).await.expect("in-memory SQLite")
    }

    fn sql(text: &str) -> Statement {
        Statement::from_string(DbBackend::Sqlite, text)
    }

    #[tokio::test]
    async fn statements_run_on_the_held_connection_and_it_goes_back_to_the_pool() {
        let db = pool_of_one().await;
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let record = seen.clone();
        let observer: StatementObserver =
            Arc::new(move |stmt: &Statement| record.lock().unwrap().push(stmt.sql.clone()));
        let conn = OneConnection::acquire(&db, Some(&observer)).await.unwrap();
        conn.execute_unprepared("CREATE TEMP TABLE t (n INTEGER)")
            .await
            .unwrap();
        let inserted = conn
            .execute(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO t VALUES (?), (?)",
                [1.into(), 2.into()],
            ))
            .await
            .unwrap();
        assert_eq!(inserted.rows_affected(), 2);
        // A temporary table lives on its connection only: finding it proves one connection.
        let rows = conn.query_all(sql("SELECT n FROM t ORDER BY n")).await.unwrap();
        let numbers: Vec<i32> = rows.iter().map(|row| row.try_get("", "n").unwrap()).collect();
        assert_eq!(numbers, [1, 2]);
        assert!(conn
            .query_one(sql("SELECT n FROM t WHERE n > 5"))
            .await
            .unwrap()
            .is_none());
        assert_eq!(seen.lock().unwrap().len(), 4);
        drop(conn);
        // The pool's only connection is free again (after sqlx's ping on return).
        let again = OneConnection::acquire(&db, None).await.unwrap();
        let rows = again.query_all(sql("SELECT n FROM t")).await.unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[tokio::test]
    async fn a_failed_statement_is_an_error_and_the_connection_stays_usable() {
        let db = pool_of_one().await;
        let conn = OneConnection::acquire(&db, None).await.unwrap();
        let failed = conn.query_all(sql("SELECT * FROM no_such_table")).await;
        assert!(
            matches!(failed, Err(DbErr::Query(RuntimeErr::SqlxError(_)))),
            "{failed:?}"
        );
        let failed = conn.execute(sql("INSERT INTO no_such_table VALUES (1)")).await;
        assert!(
            matches!(failed, Err(DbErr::Exec(RuntimeErr::SqlxError(_)))),
            "{failed:?}"
        );
        let one = conn.query_one(sql("SELECT 1 AS n")).await.unwrap().unwrap();
        assert_eq!(one.try_get::<i32>("", "n").unwrap(), 1);
    }

    #[tokio::test]
    async fn a_pool_with_every_connection_held_answers_with_sea_orms_timeout() {
        let db = pool_of_one().await;
        let _held = OneConnection::acquire(&db, None).await.unwrap();
        let waited = OneConnection::acquire(&db, None).await;
        assert!(
            matches!(waited, Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))),
            "{:?}",
            waited.err()
        );
    }
}
