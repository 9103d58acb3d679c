//! Credentials: token signing, password hashing, signing keys and the session cookie. No
//! web framework here, and nothing of the database.

pub mod cookie;
pub mod jwk;
pub mod password;
pub mod refresh;
pub mod seal;
pub mod token;
