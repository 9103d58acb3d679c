//! Thin handlers: GraphQL over HTTP and its GraphiQL page, the gateway webhook, the public keys,
//! social login, health checks; the router and its layers.

pub mod access_log;
pub mod documents;
pub mod graphiql;
pub mod graphql;
pub mod health;
pub mod identity;
pub mod jwks;
pub mod oidc;
pub mod persisted;
pub mod webhook;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::ValidationMode;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use tower::{Service, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::graphql::field_types::FieldTypes;
use crate::graphql::{self as schema, GatehouseSchema};
use crate::http::access_log::AccessLogLayer;
use crate::state::AppState;

/// What every handler gets: the application state and the schema built from its config.
/// One `Arc`, so that handing it to a request is one count, not one per field.
#[derive(Clone)]
pub struct HttpState(Arc<HttpShared>);

impl std::ops::Deref for HttpState {
    type Target = HttpShared;

    fn deref(&self) -> &HttpShared {
        &self.0
    }
}

pub struct HttpShared {
    pub app: AppState,
    pub schema: GatehouseSchema,
    /// The same schema validating only what depends on the variables, for documents that
    /// passed the full validation before (`documents`).
    pub validated_schema: GatehouseSchema,
    /// The schema's field types, for the document limits and the null pass.
    pub field_types: FieldTypes,
    /// Documents known by hash (Apollo's automatic persisted queries).
    pub persisted: persisted::PersistedQueries,
    /// Documents already parsed, by their text.
    pub documents: documents::Documents,
}

/// The application: the router inside its layers. The layers wrap the router once, rather
/// than each route (`Router::layer`), so a request clones one stack of layers, not a boxed
/// copy per layer.
pub fn app(
    state: AppState,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send + Sync + 'static
{
    let cors = cors_layer(&state);
    ServiceBuilder::new()
        // Browsers must take every answer as the type it says, never sniff one (JSON as HTML).
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .option_layer(cors)
        // One line per request (method, path without the query string, status, latency),
        // and a request id on every line the request logs and on its response: the
        // gateway's, or a fresh UUID.
        .layer(AccessLogLayer)
        .service(router(state))
}

fn router(state: AppState) -> Router {
    let schema = schema::build(&state.config, ValidationMode::Strict);
    let validated_schema = schema::build(&state.config, ValidationMode::Fast);
    let field_types = FieldTypes::from_sdl(&schema.sdl());
    let mut router = Router::new().route("/graphql", get(graphql::get).post(graphql::post));
    if state.config.graphiql {
        router = router.route("/graphql/assets/{file}", get(graphiql::asset));
    }
    let router = router
        .route("/auth/webhook", get(webhook::get).post(webhook::post))
        .route("/.well-known/jwks.json", get(jwks::get))
        .route("/auth/oidc/{provider}/start", get(oidc::start))
        .route("/auth/oidc/{provider}/callback", get(oidc::callback))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    // API.md §1 METRICS_BIND: with an address of its own, /metrics is served there only.
    let router = match state.config.metrics_address() {
        Some(_) => router,
        None => router.route("/metrics", get(health::metrics)),
    };
    router.with_state(HttpState(Arc::new(HttpShared {
        app: state,
        schema,
        validated_schema,
        field_types,
        persisted: Default::default(),
        documents: Default::default(),
    })))
}

/// An answer no one may cache (it may carry tokens, personal data or live roles). Its header
/// map is made with room for every header an answer ends with, up to the webhook's seven
/// (these two, the session variables, the length, the request id, `nosniff`): a map that
/// grows on the way costs as much again as making it.
pub(crate) fn uncached(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    *headers = HeaderMap::with_capacity(8);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The separate metrics listener's router (METRICS_BIND): `/metrics` and nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(health::metrics)).with_state(state)
}

impl axum::extract::FromRef<HttpState> for AppState {
    fn from_ref(http: &HttpState) -> AppState {
        http.app.clone()
    }
}

/// Credentialed CORS for the configured origins only: never a wildcard with cookies.
fn cors_layer(state: &AppState) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = state
        .config
        .cors_origins()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("apollo-require-preflight"),
                HeaderName::from_static("x-requested-with"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
