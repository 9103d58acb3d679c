//! Startup: connect, apply pending migrations, load the signing key and make sure the
//! configured admin exists, then hand back the `AppState` the server runs on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

use crate::auth::jwk;
use crate::auth::password::PasswordHasher;
use crate::auth::refresh::ChainKey;
use crate::auth::seal::SealingKey;
use crate::auth::token::TokenKeys;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain;
use crate::domain::passkey::RelyingParty;
use crate::domain::rate_limit::{Limits, RateLimiter};
use crate::mail::Mailer;
use crate::oidc::Providers;
use crate::sessions::{Policy, SessionStore};
use crate::state::{AppState, Services};

/// How many stored hashes are read at startup to find the cost most accounts are at.
const DUMMY_COST_SAMPLE: u64 = 10_000;

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
    let mut passwords = PasswordHasher::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
    )?;
    let tokens = Arc::new(tokens);
    let clock = Clock::default();
    let chain_key = domain::setting::refresh_chain_key(&db)
        .await
        .context("loading the refresh-token key")?;
    let policy = Policy::from_seconds(config.session_ttl, config.session_idle_timeout, config.access_token_ttl);
    let sessions = SessionStore::new(
        db.clone(),
        clock.clone(),
        tokens.clone(),
        ChainKey::from_secret(&chain_key),
        policy,
    );
    if let (Some(username), Some(password)) = (&config.admin_username, &config.admin_password) {
        domain::account::ensure_admin(&sessions, &passwords, username, password)
            .await
            .map_err(|e| anyhow::anyhow!("ADMIN_USERNAME/ADMIN_PASSWORD: {e}"))?;
    }
    let sample = domain::account::password_hash_sample(&db, DUMMY_COST_SAMPLE)
        .await
        .context("reading password costs")?;
    passwords.match_dummy_to(sample.iter().map(String::as_str))?;
    let mailer = Mailer::from_config(&config)?;
    if matches!(mailer, Mailer::Log) && !config.bind.ip().is_loopback() {
        tracing::warn!(
            bind = %config.bind,
            "MAILER=log on an address reachable from other hosts: reset links are written to the log; set SMTP_URL"
        );
    }
    let sealing = sealing_key(&config, &db).await?;
    let oidc = Providers::new(config.oidc_settings().map_err(anyhow::Error::msg)?, &config.public_url)?;
    // A provider down now is retried in the background by `app::serve`; startup goes on.
    oidc.discover_missing().await;
    let decoy_key = domain::setting::passkey_decoy_key(&db)
        .await
        .context("loading the passkey decoy key")?;
    let passkeys = RelyingParty::new(&config.webauthn_rp_id, &config.webauthn_origin, decoy_key.as_bytes())?;
    Ok(AppState::new(Services {
        limiter: RateLimiter::new(db.clone(), clock.clone(), Limits::from(&config)),
        passkeys: Arc::new(passkeys),
        mailer,
        oidc: Arc::new(oidc),
        db,
        tokens,
        sealing,
        passwords,
        clock,
        sessions,
        metrics: None,
        config: Arc::new(config),
    }))
}

/// The key TOTP secrets are sealed with, from material that is not in the database: the
/// configured signing secret or key file, else a key file beside the SQLite database
/// (`data/gatehouse.key` for `data/gatehouse.db`). On PostgreSQL with neither configured,
/// the instances can share nothing else, so the key is kept in the database, with a warning.
async fn sealing_key(config: &Config, db: &DatabaseConnection) -> anyhow::Result<SealingKey> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(SealingKey::derive(secret.as_bytes()));
    }
    if let Some(path) = &config.jwt_private_key_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(SealingKey::derive(&pem));
    }
    if let Some(path) = sqlite_path(&config.database_url).filter(|_| config.is_sqlite()) {
        return Ok(SealingKey::derive(&key_file(&path.with_extension("key"))?));
    }
    tracing::warn!(
        "neither JWT_SECRET nor JWT_PRIVATE_KEY_FILE is set: TOTP secrets are sealed with a key kept in the database, so a copy of the database can open them"
    );
    let key = domain::setting::sealing_key(db)
        .await
        .context("loading the sealing key")?;
    Ok(SealingKey::derive(key.as_bytes()))
}

/// The random key in `path`, created (0600) on first use.
fn key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            let key: [u8; 32] = rand::random();
            std::io::Write::write_all(&mut file, &key).with_context(|| format!("writing {}", path.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    let key = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        key.len() >= 32,
        "{} holds no key: remove it to have one made",
        path.display()
    );
    Ok(key)
}

/// Rows a SQLite connection may have ready before its reader takes them (sqlx's default: 50).
const SQLITE_ROW_BUFFER: usize = 1024;

/// Opens the pool; for SQLite, creates the file's folder and turns on write-ahead logging
/// so readers do not wait for writers.
pub async fn connect_database(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let sqlite_file = sqlite_path(&config.database_url).filter(|_| config.is_sqlite());
    if let Some(path) = &sqlite_file {
        prepare_sqlite_file(path)?;
    }
    if config.is_sqlite() {
        configure_sqlite_memory();
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
        .sqlx_logging(false)
        // SQLite answers from a thread per connection, a row at a time over a channel: with
        // room for a whole page of rows that thread never stops to wait for the reader.
        .map_sqlx_sqlite_opts(|sqlite| sqlite.row_buffer_size(SQLITE_ROW_BUFFER));
    let db = Database::connect(options).await.context("connecting to the database")?;
    if config.is_sqlite() {
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    if let Some(path) = &sqlite_file {
        restrict_sqlite_files(path)?;
    }
    Ok(db)
}

/// SQLite's two process-wide memory settings. They only take before SQLite first
/// initialises; a later call is refused and changes nothing.
/// - Memory statistics off: SQLite keeps them under one process-wide mutex, taken on every
///   allocation and free, so every connection's thread and every dropped row contended for
///   it, and nothing here reads them (SQLite recommends turning them off).
/// - SQLite allocates through mimalloc, as the rest of the server does, instead of glibc's
///   malloc: sqlx copies every column value of every row it reads, so a page of rows is
///   hundreds of SQLite allocations and frees.
fn configure_sqlite_memory() {
    use libsqlite3_sys::{sqlite3_config, SQLITE_CONFIG_MALLOC, SQLITE_CONFIG_MEMSTATUS, SQLITE_OK};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let off: std::ffi::c_int = 0;
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int, SQLITE_CONFIG_MALLOC a pointer to
        // the methods, which SQLite copies. The server opens its SQLite connections only
        // after this returns, and `Once` makes it the only call; if SQLite was initialised
        // already, it refuses before touching anything.
        let statistics = unsafe { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, off) };
        let methods = sqlite_mimalloc::methods();
        let allocator = unsafe { sqlite3_config(SQLITE_CONFIG_MALLOC, std::ptr::from_ref(&methods)) };
        if statistics != SQLITE_OK || allocator != SQLITE_OK {
            tracing::debug!(
                statistics,
                allocator,
                "SQLite was initialised already: it keeps its memory statistics and glibc's malloc"
            );
        }
    });
}

/// SQLite's memory methods on mimalloc. SQLite asks for 8-byte alignment; mimalloc gives 16.
mod sqlite_mimalloc {
    use std::ffi::{c_int, c_void};

    use libmimalloc_sys::{mi_free, mi_good_size, mi_malloc, mi_realloc, mi_usable_size};
    use libsqlite3_sys::{sqlite3_mem_methods, SQLITE_OK};

    pub fn methods() -> sqlite3_mem_methods {
        sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        }
    }

    // SAFETY (all below): SQLite passes sizes it has checked to be positive and below
    // 2^31, and only pointers these methods returned.
    unsafe extern "C" fn malloc(size: c_int) -> *mut c_void {
        unsafe { mi_malloc(usize::try_from(size).unwrap_or(0)) }
    }

    unsafe extern "C" fn free(pointer: *mut c_void) {
        unsafe { mi_free(pointer) }
    }

    unsafe extern "C" fn realloc(pointer: *mut c_void, size: c_int) -> *mut c_void {
        unsafe { mi_realloc(pointer, usize::try_from(size).unwrap_or(0)) }
    }

    unsafe extern "C" fn size(pointer: *mut c_void) -> c_int {
        let usable = unsafe { mi_usable_size(pointer) };
        c_int::try_from(usable).unwrap_or(c_int::MAX)
    }

    /// The size mimalloc would hand out anyway, so SQLite may use all of it.
    unsafe extern "C" fn roundup(size: c_int) -> c_int {
        let good = unsafe { mi_good_size(usize::try_from(size).unwrap_or(0)) };
        c_int::try_from(good).unwrap_or(size)
    }

    unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        SQLITE_OK
    }

    unsafe extern "C" fn shutdown(_: *mut c_void) {}
}

/// The SQLite file holds the signing secret and the password hashes: a folder gatehouse
/// creates is the owner's alone (0700), and so is a database file it creates (0600). SQLite
/// gives the `-wal` and `-shm` files the database file's mode.
fn prepare_sqlite_file(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(())
}

/// Files of a database made before (or by another tool) are narrowed to 0600 as well.
fn restrict_sqlite_files(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", file.display()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}
