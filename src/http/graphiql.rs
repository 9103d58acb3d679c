//! The GraphiQL page and the files it loads, embedded in the binary so the page works offline
//! and names no other host. `assets/graphiql/README.md` says where the vendored files come from.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The page; its scripts and styles are relative `graphql/assets/...` URLs, so they follow the
/// page if a proxy mounts gatehouse under a prefix.
const PAGE: &str = include_str!("../../assets/graphiql/index.html");

/// Vendored files carry their version in the name, so a year of caching is safe.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// gatehouse's own files keep their names across releases: browsers check them each time.
const REVALIDATE: &str = "no-cache";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// (file name, content type, cache policy, bytes)
const ASSETS: &[(&str, &str, &str, &[u8])] = &[
    (
        "graphiql-3.8.3.min.js",
        JS,
        IMMUTABLE,
        include_bytes!("../../assets/graphiql/graphiql-3.8.3.min.js"),
    ),
    (
        "graphiql-3.8.3.min.css",
        CSS,
        IMMUTABLE,
        include_bytes!("../../assets/graphiql/graphiql-3.8.3.min.css"),
    ),
    (
        "react-18.3.1.production.min.js",
        JS,
        IMMUTABLE,
        include_bytes!("../../assets/graphiql/react-18.3.1.production.min.js"),
    ),
    (
        "react-dom-18.3.1.production.min.js",
        JS,
        IMMUTABLE,
        include_bytes!("../../assets/graphiql/react-dom-18.3.1.production.min.js"),
    ),
    (
        "gatehouse-graphiql.js",
        JS,
        REVALIDATE,
        include_bytes!("../../assets/graphiql/gatehouse-graphiql.js"),
    ),
    (
        "gatehouse-graphiql.css",
        CSS,
        REVALIDATE,
        include_bytes!("../../assets/graphiql/gatehouse-graphiql.css"),
    ),
];

/// The GraphiQL page, for a browser's `GET /graphql`.
pub fn page() -> Response {
    let mut response = Html(PAGE).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    response
}

/// `GET /graphql/assets/{file}`: one of the embedded files, or 404.
pub async fn asset(Path(file): Path<String>) -> Response {
    let Some((_, content_type, cache, bytes)) = ASSETS.iter().find(|(name, ..)| *name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = (StatusCode::OK, *bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
