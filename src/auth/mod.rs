//! Credentials: tokens, password hashing, sessions as credentials, and who the caller is.
//! Only `guard` (GraphQL) and `cookie` (HTTP) touch a web crate.

pub mod cache;
pub mod cookie;
pub mod guard;
pub mod identity;
pub mod jwk;
pub mod password;
pub mod session;
pub mod token;
