//! Thin handlers: GraphQL over HTTP and its GraphiQL page, the gateway webhook, the public keys,
//! health checks.

pub mod graphiql;
pub mod graphql;
pub mod health;
pub mod jwks;
pub mod webhook;
