//! Business rules: accounts, sessions, roles, sites, administration, the audit log and the
//! gateway's role decision. No web crate here: GraphQL resolvers and HTTP handlers both call
//! these functions.

pub mod account;
pub mod admin;
pub mod audit;
pub mod gateway;
pub mod lock;
pub mod page;
pub mod passkey;
pub mod profile;
pub mod rate_limit;
pub mod reset;
pub mod role;
pub mod second_factor;
pub mod session;
pub mod setting;
pub mod site;
pub mod social;
pub mod verification;
