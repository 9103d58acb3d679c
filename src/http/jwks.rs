//! `/.well-known/jwks.json`: the public signing key for verifiers that read the JWT alone
//! (Hasura's `jwk_url`). Empty under the default shared secret, which must stay private.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::http::HttpState;

/// How long verifiers may cache the key set: the key only changes with a restart.
const CACHE_CONTROL: &str = "public, max-age=300";

pub async fn get(State(http): State<HttpState>) -> Response {
    let mut response = Json(http.app.tokens.jwks()).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    response
}
