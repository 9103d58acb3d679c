//! The GraphQL schema (API.md §5): one file per domain, merged here, plus the error pass
//! that gives every error its API.md §7 code.

mod account;
mod admin;
pub mod connection;
pub mod field_types;
pub mod guard;
pub mod limits;
pub mod loaders;
pub mod partial;
pub mod passkey;
pub(crate) mod second_factor;
mod session;
pub mod site;
pub mod social;
pub mod types;

use async_graphql::{Context, EmptySubscription, MergedObject, Response, Schema, ServerError, ValidationMode};

use crate::client::ClientInfo;
use crate::config::Config;
use crate::error::AppError;
use crate::graphql::guard::{IdentityRef, RequestIdentity};
use crate::graphql::loaders::Loaders;
use crate::sessions::Caller;
use crate::state::AppState;

/// What can be read: the caller, their sessions and sites, and (for admins) users and the audit log.
#[derive(MergedObject, Default)]
pub struct Query(
    account::AccountQuery,
    session::SessionQuery,
    site::SiteQuery,
    social::SocialQuery,
    admin::AdminQuery,
);

/// What can be changed: accounts, sessions, sites, and (for admins) users and roles.
#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    session::SessionMutation,
    second_factor::SecondFactorMutation,
    passkey::PasskeyMutation,
    site::SiteMutation,
    social::SocialMutation,
    admin::AdminMutation,
);

pub type GatehouseSchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema as configured. Document limits are checked before async-graphql sees the
/// document, by `limits`; `partial` makes field errors leave `null` behind.
pub fn build(config: &Config, validation: ValidationMode) -> GatehouseSchema {
    let mut builder =
        Schema::build(Query::default(), Mutation::default(), EmptySubscription).validation_mode(validation);
    if !config.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder.finish()
}

/// The SDL that `gatehouse schema` prints and `schema.graphql` holds.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .finish()
        .sdl()
}

/// What a request hands its resolvers and guards, as one entry of async-graphql's per-request
/// data: each entry is a boxed insert into a map that grows as it fills, and four of them were
/// about 1.5% of the instructions of a `me` request.
pub struct RequestData {
    pub state: AppState,
    pub identity: RequestIdentity,
    pub client: ClientInfo,
    pub loaders: Loaders,
}

/// What resolvers read from the request.
pub(crate) trait ContextExt {
    fn state(&self) -> &AppState;
    fn identity(&self) -> IdentityRef<'_>;
    fn client(&self) -> &ClientInfo;
    fn loaders(&self) -> &Loaders;
    /// The signed-in caller; guards have already refused anonymous callers where one is needed.
    fn caller(&self) -> Result<Caller, AppError> {
        self.identity().caller().cloned().ok_or(AppError::Unauthenticated)
    }
    /// Reloads the caller's roles after a mutation changed them, for the rest of the request.
    async fn refresh_roles(&self) -> Result<(), AppError>;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> &AppState {
        &self.data_unchecked::<RequestData>().state
    }

    fn identity(&self) -> IdentityRef<'_> {
        crate::graphql::guard::identity(self)
    }

    fn client(&self) -> &ClientInfo {
        &self.data_unchecked::<RequestData>().client
    }

    fn loaders(&self) -> &Loaders {
        &self.data_unchecked::<RequestData>().loaders
    }

    async fn refresh_roles(&self) -> Result<(), AppError> {
        if let (Ok(caller), Some(request)) = (self.caller(), self.data_opt::<RequestData>()) {
            request
                .identity
                .set_roles(self.state().sessions.roles(caller.user_id).await?);
        }
        Ok(())
    }
}

/// An optional input field as a domain change: omitted keeps, `null` clears, a value sets.
pub(crate) fn change<T>(value: async_graphql::MaybeUndefined<T>) -> crate::domain::profile::Change<T> {
    use crate::domain::profile::Change;
    match value {
        async_graphql::MaybeUndefined::Undefined => Change::Keep,
        async_graphql::MaybeUndefined::Null => Change::Clear,
        async_graphql::MaybeUndefined::Value(value) => Change::Set(value),
    }
}

/// How a finished response should be reported over HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Executed (possibly with field errors).
    Executed,
    /// The document failed validation and nothing ran.
    Invalid,
}

/// Gives every error a code (API.md §7): errors raised through `AppError` already carry one;
/// errors from before execution are validation failures; input coercion errors are bad input;
/// anything else is an internal error whose message is replaced.
pub fn finish_errors(response: &mut Response) -> Outcome {
    let nothing_ran = response.data == async_graphql::Value::Null;
    let mut outcome = Outcome::Executed;
    for error in &mut response.errors {
        if error.extensions.as_ref().is_some_and(|e| e.get("code").is_some()) {
            continue;
        }
        let code = if nothing_ran && error.path.is_empty() {
            outcome = Outcome::Invalid;
            "GRAPHQL_VALIDATION_FAILED"
        } else if is_input_error(error) {
            "BAD_USER_INPUT"
        } else {
            tracing::error!(message = %error.message, "uncoded GraphQL error");
            error.message = "internal server error".into();
            "INTERNAL_SERVER_ERROR"
        };
        error.extensions.get_or_insert_with(Default::default).set("code", code);
    }
    outcome
}

/// async-graphql reports arguments and variables it cannot coerce with these messages.
fn is_input_error(error: &ServerError) -> bool {
    ["Failed to parse", "Invalid value", "Expected input type"]
        .iter()
        .any(|start| error.message.starts_with(start))
}
