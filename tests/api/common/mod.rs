//! `TestServer`: a gatehouse on 127.0.0.1:0 over a fresh database, shut down on drop,
//! plus helpers that keep tests short.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use gatehouse::mail::Mailer;
use gatehouse::{app, AppState, Config};
use reqwest::header::HeaderMap;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A strong password that passes every rule.
pub const PASSWORD: &str = "correct horse battery staple";
pub const ADMIN_PASSWORD: &str = "admin password for tests";

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub http: reqwest::Client,
    /// The admin's token, for servers started with one.
    pub admin_token: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    cleanup: Cleanup,
    _watched: watchdog::Watched,
}

enum Cleanup {
    SqliteFile(std::path::PathBuf),
    PostgresSchema { base_url: String, schema: String },
    Shared,
}

impl TestServer {
    /// Waits until the server answers from its session cache: on PostgreSQL, once it hears its
    /// own heartbeat.
    pub async fn wait_for_cache(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.state.sessions.is_trusted() {
            assert!(
                std::time::Instant::now() < deadline,
                "the session cache never came into use"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub async fn start(config: Config) -> TestServer {
        let (config, cleanup) = isolate_database(config).await;
        Self::start_on(config, cleanup, |_| {}).await
    }

    /// A server on a listener bound beforehand (its address goes into the config first).
    pub async fn start_on_listener(listener: TcpListener, config: Config) -> TestServer {
        let (config, cleanup) = isolate_database(config).await;
        Self::start_listening(listener, config, cleanup, |_| {}).await
    }

    /// A server on exactly `config.database_url`, left in place afterwards.
    pub async fn start_exactly(config: Config) -> TestServer {
        Self::start_on(config, Cleanup::Shared, |_| {}).await
    }

    /// A server whose state is adjusted before it serves.
    pub async fn start_preparing(config: Config, prepare: impl FnOnce(&mut AppState)) -> TestServer {
        let (config, cleanup) = isolate_database(config).await;
        Self::start_on(config, cleanup, prepare).await
    }

    /// A server on PostgreSQL whatever the suite runs on: `TEST_DATABASE_URL`, or the local
    /// server `.ci/run` provides.
    pub async fn start_postgres(config: Config) -> TestServer {
        let base_url = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|url| url.starts_with("postgres"))
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
        let (config, cleanup) = postgres_schema(config, base_url).await;
        Self::start_on(config, cleanup, |_| {}).await
    }

    /// A server whose mails land in an in-memory outbox (`server.state.mailer.sent()`).
    pub async fn start_with_outbox(config: Config) -> TestServer {
        let (config, cleanup) = isolate_database(config).await;
        Self::start_on(config, cleanup, |state| state.mailer = Mailer::outbox()).await
    }

    /// A server that records the SQL of every statement it executes.
    pub async fn start_recording_statements(config: Config) -> (TestServer, Arc<Mutex<Vec<String>>>) {
        let (config, cleanup) = isolate_database(config).await;
        let log = Arc::new(Mutex::new(Vec::new()));
        let recorder = log.clone();
        let server = Self::start_on(config, cleanup, move |state| {
            let record = move |statement: &Statement| {
                if let Ok(mut log) = recorder.lock() {
                    log.push(statement.sql.clone());
                }
            };
            state.sessions.observe_statements(Arc::new(record.clone()));
            state.db.set_metric_callback(move |info| record(info.statement))
        })
        .await;
        (server, log)
    }

    /// Another server on the same database as `self` (restarts, several instances).
    pub async fn start_sharing(&self, config: Config) -> TestServer {
        Self::start_on(self.sharing(config), Cleanup::Shared, |_| {}).await
    }

    /// Like `start_sharing`, with mails landing in an outbox (`server.state.mailer.sent()`).
    pub async fn start_sharing_with_outbox(&self, config: Config) -> TestServer {
        Self::start_on(self.sharing(config), Cleanup::Shared, |state| {
            state.mailer = Mailer::outbox()
        })
        .await
    }

    /// `config` pointed at `self`'s database.
    fn sharing(&self, config: Config) -> Config {
        Config {
            database_url: self.state.config.database_url.clone(),
            ..config
        }
    }

    async fn start_on(config: Config, cleanup: Cleanup, prepare: impl FnOnce(&mut AppState)) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_listening(listener, config, cleanup, prepare).await
    }

    async fn start_listening(
        listener: TcpListener,
        config: Config,
        cleanup: Cleanup,
        prepare: impl FnOnce(&mut AppState),
    ) -> TestServer {
        let addr = listener.local_addr().expect("local addr");
        let mut state = gatehouse::startup::start(config).await.expect("start gatehouse");
        prepare(&mut state);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            state,
            http: reqwest::Client::new(),
            admin_token: None,
            shutdown: Some(tx),
            task: Some(task),
            cleanup,
            _watched: watchdog::Watched::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a GraphQL request, with a bearer token when given.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Reply {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::from(request.send().await.expect("request")).await
    }

    /// POSTs a GraphQL request carrying the session cookie.
    pub async fn gql_with_cookie(&self, token: &str, query: &str, variables: Value) -> Reply {
        let cookie = format!("{}={}", self.state.config.cookie_name, token);
        let request = self
            .http
            .post(self.url("/graphql"))
            .header("cookie", cookie)
            .json(&json!({ "query": query, "variables": variables }));
        Reply::from(request.send().await.expect("request")).await
    }

    /// Signs a new, uniquely named user up; returns (token, user id, username).
    pub async fn signup(&self, name: &str) -> (String, String, String) {
        let username = unique(name);
        let reply = self
            .gql(
                None,
                "mutation($u: String!, $p: String!) { signup(input: {username: $u, password: $p}) { token user { id } } }",
                json!({ "u": username, "p": PASSWORD }),
            )
            .await;
        let payload = reply.data("signup");
        (str_at(&payload, "/token"), str_at(&payload, "/user/id"), username)
    }

    /// Starts a server with an admin account and returns it with the admin's token.
    pub async fn start_with_admin(config: Config) -> (TestServer, String) {
        let name = unique("admin");
        let config = Config {
            admin_username: Some(name.clone()),
            admin_password: Some(ADMIN_PASSWORD.into()),
            ..config
        };
        let server = TestServer::start_with_outbox(config).await;
        server.sign_in_admin(name).await
    }

    /// `start_with_admin` on a stopped clock, which the test moves (`state.clock.advance`).
    pub async fn start_with_admin_on_a_stopped_clock(config: Config) -> (TestServer, String) {
        let (server, admin) = TestServer::start_with_admin(config).await;
        server.state.clock.freeze_at(chrono::Utc::now());
        (server, admin)
    }

    /// Like `start_with_admin`, on PostgreSQL whatever the suite runs on.
    pub async fn start_with_admin_on_postgres(config: Config) -> (TestServer, String) {
        let name = unique("admin");
        let config = Config {
            admin_username: Some(name.clone()),
            admin_password: Some(ADMIN_PASSWORD.into()),
            ..config
        };
        TestServer::start_postgres(config).await.sign_in_admin(name).await
    }

    async fn sign_in_admin(mut self, name: String) -> (TestServer, String) {
        let server = &self;
        let login = server
            .gql(
                None,
                "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }",
                json!({ "u": name, "p": ADMIN_PASSWORD }),
            )
            .await
            .data("login");
        let token = str_at(&login, "/token");
        self.admin_token = Some(token.clone());
        (self, token)
    }

    /// The mails sent so far, but for the e-mail verification links that every signup with an
    /// address sends in the background (servers started with an outbox).
    pub fn mails_but_verification(&self) -> Vec<gatehouse::mail::Mail> {
        self.state
            .mailer
            .sent()
            .into_iter()
            .filter(|mail| mail.subject != "Verify your e-mail address")
            .collect()
    }

    /// Stops the server, letting in-flight requests finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match std::mem::replace(&mut self.cleanup, Cleanup::Shared) {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::PostgresSchema { base_url, schema } => {
                // Drop runs inside the test's runtime, which waits here: clean up from a thread
                // of our own. A task of the server still in a transaction (a background mail,
                // say) holds locks that DROP SCHEMA would wait for, and it cannot finish while
                // its runtime waits, so the server's connections are ended first; the lock
                // timeout bounds the wait on anything else.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        if let Ok(db) = Database::connect(base_url).await {
                            let _ = db
                                .execute_unprepared(&format!(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                     WHERE application_name = '{schema}' AND pid <> pg_backend_pid()"
                                ))
                                .await;
                            // One string, so both run on the same connection.
                            let _ = db
                                .execute_unprepared(&format!(
                                    "SET lock_timeout = '30s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                                ))
                                .await;
                        }
                    });
                })
                .join();
            }
            Cleanup::Shared => {}
        }
    }
}

/// Gives each server its own database: a fresh SQLite file, or a fresh PostgreSQL schema.
async fn isolate_database(config: Config) -> (Config, Cleanup) {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(base_url) if !base_url.is_empty() => postgres_schema(config, base_url).await,
        _ => {
            let path = std::env::temp_dir().join(format!("gatehouse-test-{}.db", uuid::Uuid::new_v4()));
            let url = format!("sqlite://{}?mode=rwc", path.display());
            (
                Config {
                    database_url: url,
                    ..config
                },
                Cleanup::SqliteFile(path),
            )
        }
    }
}

/// A fresh schema in the PostgreSQL database at `base_url`, dropped with the server.
async fn postgres_schema(config: Config, base_url: String) -> (Config, Cleanup) {
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let db = Database::connect(base_url.as_str())
        .await
        .expect("connect to PostgreSQL");
    db.execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .expect("create schema");
    db.close().await.expect("close");
    let separator = if base_url.contains('?') { '&' } else { '?' };
    // The schema's name as application_name too, so the cleanup can find the server's
    // connections.
    let url = format!("{base_url}{separator}options=-c%20search_path%3D{schema}&application_name={schema}");
    (
        Config {
            database_url: url,
            ..config
        },
        Cleanup::PostgresSchema { base_url, schema },
    )
}

/// What came back: status, headers and the JSON body.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        Reply { status, headers, body }
    }

    /// `data.<field>`, failing the test when the reply has errors.
    pub fn data(&self, field: &str) -> Value {
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        assert_eq!(self.status, 200, "{}", self.body);
        self.body["data"][field].clone()
    }

    /// The code of the first error, asserting there is one.
    pub fn code(&self) -> String {
        let code = &self.body["errors"][0]["extensions"]["code"];
        code.as_str()
            .unwrap_or_else(|| panic!("expected an error code in {}", self.body))
            .to_owned()
    }

    pub fn assert_code(&self, code: &str) {
        assert_eq!(self.code(), code, "{}", self.body);
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    /// Asserts a 401 refusal as API.md §3 describes it.
    pub fn assert_unauthorized(&self) {
        assert_eq!(self.status, 401, "{}", self.body);
        assert_eq!(
            self.header("www-authenticate").as_deref(),
            Some("Bearer error=\"invalid_token\"")
        );
        self.assert_code("UNAUTHENTICATED");
        assert!(self.body.get("data").is_none(), "nothing may run: {}", self.body);
    }
}

/// The PostgreSQL database the suite was given (`TEST_DATABASE_URL`), if any: tests that
/// need PostgreSQL run whenever it is set.
pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

/// The seed `GATEHOUSE_MODEL_SEED` names, or `count` fresh ones, for the model-based tests;
/// each run prints its seed so that a failure can be replayed.
pub fn model_seeds(count: u64) -> Vec<u64> {
    match std::env::var("GATEHOUSE_MODEL_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("GATEHOUSE_MODEL_SEED must be a u64")],
        Err(_) => {
            let first: u64 = rand::random();
            (0..count).map(|i| first.wrapping_add(i)).collect()
        }
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

pub fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
        .to_owned()
}

/// A test that hangs would hold CI until its time runs out and tell nothing. A server still up
/// after `LIMIT` names its test, prints every thread's stack (with gdb, where installed) and
/// ends the run.
mod watchdog {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, Once};
    use std::time::{Duration, Instant};

    const LIMIT: Duration = Duration::from_secs(300);

    static SERVERS: Mutex<BTreeMap<u64, (String, Instant)>> = Mutex::new(BTreeMap::new());
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: Once = Once::new();

    pub struct Watched(u64);

    impl Watched {
        pub fn new() -> Watched {
            START.call_once(|| {
                std::thread::spawn(watch);
            });
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            if let Ok(mut servers) = SERVERS.lock() {
                servers.insert(id, (test, Instant::now()));
            }
            Watched(id)
        }
    }

    impl Drop for Watched {
        fn drop(&mut self) {
            if let Ok(mut servers) = SERVERS.lock() {
                servers.remove(&self.0);
            }
        }
    }

    fn watch() {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            let stuck = SERVERS.lock().ok().and_then(|servers| {
                servers
                    .values()
                    .find(|(_, since)| since.elapsed() > LIMIT)
                    .map(|(test, _)| test.clone())
            });
            if let Some(test) = stuck {
                // Straight to stderr: `eprintln!` here would go to the capture of the test that
                // started this thread.
                let _ = writeln!(
                    std::io::stderr(),
                    "watchdog: {test} has had a server up for over {LIMIT:?}; every thread's stack follows"
                );
                let _ = std::process::Command::new("gdb")
                    .args([
                        "-p",
                        &std::process::id().to_string(),
                        "-batch",
                        "-ex",
                        "thread apply all bt",
                    ])
                    .status();
                std::process::exit(101);
            }
        }
    }
}
