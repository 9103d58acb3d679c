//! Business rules: accounts, sessions and server settings. No web crate here: GraphQL
//! resolvers and HTTP handlers both call these functions.

pub mod account;
pub mod session;
pub mod setting;
