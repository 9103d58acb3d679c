//! Business rules: accounts, sessions, server settings and the gateway's role decision.
//! No web crate here: GraphQL resolvers and HTTP handlers both call these functions.

pub mod account;
pub mod gateway;
pub mod session;
pub mod setting;
