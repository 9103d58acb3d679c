//! Thin handlers: GraphQL over HTTP, the gateway webhook, health checks.

pub mod graphql;
pub mod health;
pub mod webhook;
