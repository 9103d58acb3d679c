//! Integration tests: each test starts a real gatehouse on an ephemeral port and speaks HTTP.
//! SQLite by default; PostgreSQL when `TEST_DATABASE_URL` is set.

mod common;

mod admin;
mod audit;
mod auth_tokens;
mod cli;
mod client_docs;
mod gateway_nginx;
mod http_surface;
mod jwks;
mod login;
mod profile;
mod reset;
mod sessions;
mod signup;
mod site_mutations;
mod smtp;
mod webhook;
