//! Business rules: accounts, sessions, roles, administration, the audit log. No web crate
//! here: GraphQL resolvers and HTTP handlers both call these functions.

pub mod account;
pub mod admin;
pub mod audit;
pub mod page;
pub mod profile;
pub mod reset;
pub mod role;
pub mod session;
pub mod setting;
pub mod site;
