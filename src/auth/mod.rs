//! Credentials: tokens, password hashing, sessions as credentials, and who the caller is.
//! Only `guard` (GraphQL) and `cookie` (HTTP) touch a web crate.

pub mod cookie;
pub mod guard;
pub mod identity;
pub mod jwk;
pub mod password;
pub mod token;
