//! Startup: connect, apply pending migrations, load the signing key and make sure the
//! configured admin exists, then hand back the `AppState` the server runs on.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

use crate::auth::jwk;
use crate::auth::password::PasswordHasher;
use crate::auth::token::TokenKeys;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain;
use crate::domain::rate_limit::{Limits, RateLimiter};
use crate::mail::Mailer;
use crate::sessions::SessionStore;
use crate::state::{AppState, Services};

/// Connects, applies pending migrations, loads the signing key and ensures the admin.
pub async fn start(config: Config) -> anyhow::Result<AppState> {
    // The key file is read before the database is touched, so a bad one writes nothing.
    let private_key = (config.jwt_private_key_file.as_deref())
        .map(jwk::load)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let db = connect_database(&config).await?;
    Migrator::up(&db, None).await.context("applying migrations")?;
    let tokens = match (private_key, &config.jwt_secret) {
        (Some(key), _) => TokenKeys::asymmetric(key),
        (None, Some(secret)) => TokenKeys::hs256(secret.as_bytes()),
        (None, None) => {
            let secret = domain::setting::jwt_secret(&db)
                .await
                .context("loading the JWT secret")?;
            TokenKeys::hs256(secret.as_bytes())
        }
    };
    let passwords = PasswordHasher::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
    )?;
    let tokens = Arc::new(tokens);
    let clock = Clock::default();
    let sessions = SessionStore::new(db.clone(), clock.clone(), tokens.clone(), config.session_ttl);
    if let (Some(username), Some(password)) = (&config.admin_username, &config.admin_password) {
        domain::account::ensure_admin(&sessions, &passwords, username, password)
            .await
            .map_err(|e| anyhow::anyhow!("ADMIN_USERNAME/ADMIN_PASSWORD: {e}"))?;
    }
    Ok(AppState::new(Services {
        limiter: RateLimiter::new(db.clone(), clock.clone(), Limits::from(&config)),
        mailer: Mailer::from_config(&config)?,
        db,
        tokens,
        passwords,
        clock,
        sessions,
        metrics: None,
        config: Arc::new(config),
    }))
}

/// Opens the pool; for SQLite, creates the file's folder and turns on write-ahead logging
/// so readers do not wait for writers.
pub async fn connect_database(config: &Config) -> anyhow::Result<DatabaseConnection> {
    if config.is_sqlite() {
        if let Some(dir) = sqlite_path(&config.database_url).and_then(|p| p.parent().map(|d| d.to_path_buf())) {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            }
        }
    }
    let timeout = Duration::from_secs(config.database_timeout);
    let mut options = ConnectOptions::new(config.database_url.clone());
    options
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        .max_connections(if config.is_sqlite() { 8 } else { 16 })
        // A dead connection fails its statement and is replaced; pinging each checkout would
        // double the round trips of every request.
        .test_before_acquire(false)
        .sqlx_logging(false);
    let db = Database::connect(options).await.context("connecting to the database")?;
    if config.is_sqlite() {
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
}

fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}
