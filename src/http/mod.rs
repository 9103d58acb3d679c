//! Thin HTTP handlers: GraphQL over HTTP and health checks.

pub mod graphql;
pub mod health;
