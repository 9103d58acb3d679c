//! gatehouse: a GraphQL authentication, session and authorization server.

/// Routes, layers and serving.
pub mod app;
/// Audit events and how they are recorded.
pub mod audit;
/// Credentials: tokens, passwords, sessions, identity, guards, cookies.
pub mod auth;
/// Client address and user agent of a request.
pub mod client;
/// The server's clock, movable in tests.
pub mod clock;
/// Settings from environment variables and flags.
pub mod config;
/// Business rules, free of web crates.
pub mod domain;
/// `AppError` and its mapping to API codes.
pub mod error;
/// The GraphQL schema and resolvers.
pub mod graphql;
/// HTTP handlers.
pub mod http;
/// The text of a log line.
pub mod log_format;
/// Where log lines go: a buffer written out by a thread of its own.
pub mod log_writer;
/// Outgoing mail (password reset links).
pub mod mail;
/// OpenID Connect providers for social login: discovery, PKCE, ID token checks.
pub mod oidc;
/// Statements on one connection held from the pool.
pub mod one_connection;
/// The session store: sessions, the roles they carry, and the cache in front of them.
pub mod sessions;
/// Startup: database, migrations, keys, the configured admin.
pub mod startup;
/// Shared state: database pool, keys, hasher.
pub mod state;
/// Prometheus metrics.
pub mod telemetry;

pub use config::Config;
pub use state::AppState;

/// The hasher of the caches every request reads whose keys the server issued (verified
/// tokens, session and user ids): a client cannot pick keys that collide, so a fast seeded
/// hash is enough. Caches keyed by what a client sends keep the standard library's SipHash.
pub(crate) type IssuedKeyHasher = foldhash::fast::RandomState;

/// The hasher of tables built once at startup from the schema's names (its fields, the
/// metrics' operations) and only looked up after: a client's names can probe them but not
/// grow them, so a fast seeded hash is enough.
pub(crate) type SchemaNameHasher = foldhash::fast::RandomState;
