//! Integration tests: each test starts a real gatehouse on an ephemeral port and speaks HTTP.
//! SQLite by default; PostgreSQL when `TEST_DATABASE_URL` is set.

mod common;

mod admin;
mod audit;
mod auth_tokens;
mod cli;
mod client_docs;
mod document_limits;
mod email_verification;
mod failure;
mod fuzz;
mod gateway_nginx;
mod hardening;
mod http_surface;
mod jwks;
mod login;
mod observability;
mod oidc;
mod partial_results;
mod passkeys;
mod persisted_queries;
mod profile;
mod rate_limits;
mod renewal;
mod reset;
mod revocation;
mod revocation_model;
mod scale_out;
mod second_factor;
mod sessions;
mod signup;
mod site_members_model;
mod site_mutations;
mod sites;
mod smtp;
mod webhook;
