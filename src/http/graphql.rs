//! GraphQL over HTTP (API.md §2): body and content-type rules, identity before execution
//! (API.md §3), document limits, then execution and the response's status and headers.

use std::net::SocketAddr;

use std::time::Instant;

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use async_graphql::ServerError;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::auth::cookie;
use crate::client::ClientInfo;
use crate::error::error_body;
use crate::graphql::guard::RequestIdentity;
use crate::graphql::limits::{self, Limits};
use crate::graphql::loaders::Loaders;
use crate::graphql::partial;
use crate::graphql::{finish_errors, Outcome, RequestData};
use crate::http::graphiql;
use crate::http::identity::{self, Rejection, TokenSource};
use crate::http::persisted::{Persisted, PersistedQueries};
use crate::http::{self, HttpState};
use crate::telemetry;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const APPLICATION_JSON: &str = "application/json";
/// Headers a cross-site form or tag cannot send, so their presence forces a CORS preflight.
const PREFLIGHT_HEADERS: &[&str] = &[
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "x-requested-with",
];
/// The content types a browser sends cross-site without a preflight.
const SIMPLE_CONTENT_TYPES: &[&str] = &["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"];

/// The media type the client gets, per the GraphQL-over-HTTP spec.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    GraphqlResponse,
    /// The legacy `application/json`: request errors still answer 200.
    Json,
}

impl Format {
    fn negotiate(headers: &HeaderMap) -> Self {
        let accepts_graphql_response = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',').any(|t| {
                    t.trim()
                        .get(..GRAPHQL_RESPONSE_JSON.len())
                        .is_some_and(|start| start.eq_ignore_ascii_case(GRAPHQL_RESPONSE_JSON))
                })
            });
        if accepts_graphql_response {
            Format::GraphqlResponse
        } else {
            Format::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Format::Json => "application/json; charset=utf-8",
        }
    }

    /// The status of a document that does not parse or validate.
    fn request_error_status(self) -> StatusCode {
        match self {
            Format::GraphqlResponse => StatusCode::BAD_REQUEST,
            Format::Json => StatusCode::OK,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

pub async fn post(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    // Taken apart rather than extracted, which would copy every header.
    let (Parts { headers, .. }, body) = request.into_parts();
    let format = Format::negotiate(&headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    // API.md §2: anything but JSON is 415, which also stops cross-site form posts.
    if !essence.eq_ignore_ascii_case(APPLICATION_JSON) && !essence.eq_ignore_ascii_case(GRAPHQL_RESPONSE_JSON) {
        let message = "Content-Type must be application/json";
        return reply(
            format,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error_body(message, "BAD_REQUEST"),
        );
    }
    let Some(bytes) = read_body(body, &headers, http.app.config.max_body_bytes).await else {
        let message = format!("request body exceeds {} bytes", http.app.config.max_body_bytes);
        return reply(
            format,
            StatusCode::PAYLOAD_TOO_LARGE,
            error_body(&message, "BAD_REQUEST"),
        );
    };
    let request = match parse_body(&bytes) {
        Ok(request) => request,
        Err(message) => return reply(format, StatusCode::BAD_REQUEST, error_body(message, "BAD_REQUEST")),
    };
    execute(&http, peer, &headers, request, Method::Post, format).await
}

pub async fn get(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && http.app.config.graphiql && !query.split('&').any(|p| p.starts_with("query=")) {
        return graphiql::page();
    }
    let format = Format::negotiate(&headers);
    if is_forgeable(&headers, &http.app.config.cookie_name) {
        let message = "a GET request authenticated by cookie needs an `apollo-require-preflight` or \
                       `x-requested-with` header (cross-site request forgery protection)";
        return reply(format, StatusCode::BAD_REQUEST, error_body(message, "BAD_REQUEST"));
    }
    match parse_query_string(&query) {
        Ok(request) => execute(&http, peer, &headers, request, Method::Get, format).await,
        Err(_) => {
            let message = "query string is not a GraphQL request (query, variables, operationName)";
            reply(format, StatusCode::BAD_REQUEST, error_body(message, "BAD_REQUEST"))
        }
    }
}

/// A GET request's parameters. The GraphQL-over-HTTP spec names the operation
/// `operationName`, as Apollo Client sends it; async-graphql's parser reads only
/// `operation_name`, and a document of several operations lost the name it was sent with.
fn parse_query_string(query: &str) -> Result<async_graphql::Request, async_graphql::ParseRequestError> {
    let mut request = async_graphql::http::parse_query_string(query)?;
    if request.operation_name.is_none() {
        request.operation_name = form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "operationName")
            .map(|(_, name)| name.into_owned());
    }
    Ok(request)
}

/// Cross-site request forgery on GET: a browser attaches the session cookie to any
/// cross-site GET (an `<img>`, a link), and a "simple" request gets no CORS preflight. So a
/// GET whose credential is the cookie must show it could not be simple, as Apollo Server's
/// CSRF prevention asks: a header a form or tag cannot set, or a non-simple content type.
/// Bearer tokens are never sent by browsers on their own, so they need no such proof.
fn is_forgeable(headers: &HeaderMap, cookie_name: &str) -> bool {
    let from_cookie = matches!(
        identity::credential(headers, cookie_name),
        Some((_, TokenSource::Cookie))
    );
    if !from_cookie {
        return false;
    }
    let has_preflight_header = PREFLIGHT_HEADERS.iter().any(|name| headers.contains_key(*name));
    let non_simple_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .is_some_and(|essence| !SIMPLE_CONTENT_TYPES.contains(&essence.as_str()));
    !(has_preflight_header || non_simple_type)
}

/// The body, unless it is larger than `limit` (announced or actual).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Option<Bytes> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return None;
    }
    axum::body::to_bytes(body, limit).await.ok()
}

fn parse_body(bytes: &[u8]) -> Result<async_graphql::Request, &'static str> {
    let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err("request body is empty");
    };
    if *first == b'[' {
        return Err("batched requests are not supported");
    }
    // Straight into the request, with no JSON tree in between; the error's category tells
    // broken JSON from a wrong shape.
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            "request body must be {\"query\": ..., \"variables\"?: {...}, \"operationName\"?: ...}"
        }
        _ => "request body is not valid JSON",
    })
}

async fn execute(
    http: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
    mut request: async_graphql::Request,
    method: Method,
    format: Format,
) -> Response {
    let state = &http.app;
    let identity = match identity::resolve(state, headers).await {
        Ok(identity) => identity,
        // The database failing while checking a token says nothing about the token.
        Err(rejection) if rejection.error.is_internal() => {
            let body = error_body("internal server error", "INTERNAL_SERVER_ERROR");
            return reply(format, StatusCode::SERVICE_UNAVAILABLE, body);
        }
        Err(rejection) => return unauthorized(http, rejection, format),
    };

    let limits = Limits {
        max_depth: state.config.graphql_max_depth,
        max_complexity: state.config.graphql_max_complexity,
        max_aliases: state.config.graphql_max_aliases,
        max_credential_operations: state.config.graphql_max_credential_operations,
        introspection: state.config.introspection,
    };
    // A document sent by hash runs exactly as if sent in full: every check below applies.
    let register = match PersistedQueries::requested(&request) {
        Err(message) => return reply(format, StatusCode::BAD_REQUEST, error_body(message, "BAD_REQUEST")),
        Ok(Persisted::No) => None,
        Ok(Persisted::Register(hash)) => Some(hash),
        Ok(Persisted::Lookup(hash)) => match http.persisted.get(&hash) {
            Some(text) => {
                request.query = text.to_string();
                None
            }
            // Apollo's link sends the text again on this answer.
            None => {
                return reply(
                    format,
                    StatusCode::OK,
                    error_body("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND"),
                )
            }
        },
    };
    // Parsed here, once: the limits read it, then execution takes it over. The text stays for
    // the persisted-query cache and for the null pass, which only errors need.
    let text = std::mem::take(&mut request.query);
    let operation_name = request.operation_name.clone();
    let (document, checked) = match http.documents.parse(&text) {
        Ok(parsed) => parsed,
        Err(error) => {
            let body = error_body(&ServerError::from(error).message, "GRAPHQL_PARSE_FAILED");
            return reply(format, format.request_error_status(), body);
        }
    };
    let root_field = first_root_field(&document, operation_name.as_deref());
    // A cached document sent without variables meets the limits as it did before.
    let unvaried = checked.as_ref().filter(|_| request.variables.is_empty());
    let known = unvaried.and_then(|checked| checked.unvaried_limits(operation_name.as_deref()));
    let operation_type = match known {
        Some(answer) => answer,
        None => {
            let measured = limits::check(
                &document,
                operation_name.as_deref(),
                &request.variables,
                &limits,
                &http.field_types,
            );
            match measured {
                Ok(answer) => answer,
                Err(message) => {
                    let body = error_body(&message, "GRAPHQL_VALIDATION_FAILED");
                    return reply(format, format.request_error_status(), body);
                }
            }
        }
    };
    // API.md §2: GET never runs a mutation.
    if operation_type == Some(OperationType::Mutation) && method == Method::Get {
        let body = error_body("mutations are only accepted over POST", "BAD_REQUEST");
        let mut response = reply(format, StatusCode::METHOD_NOT_ALLOWED, body);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if let (Some(checked), None) = (unvaried, known) {
        checked.keep_unvaried_limits(operation_name.as_deref(), operation_type);
    }
    if let Some(hash) = register {
        http.persisted.remember(hash, &text);
    }
    // A new document is kept once it has passed every limit and async-graphql's validation.
    let unseen = checked.is_none().then(|| document.clone());
    // Validation depends on the document and the variables' values only: a document that
    // passed it before, sent without variables, would pass again, so the rules that read the
    // document alone are skipped.
    let schema = match unvaried {
        Some(_) => &http.validated_schema,
        None => &http.schema,
    };
    request.set_parsed_query(document);

    let client = ClientInfo::from_request(Some(peer), headers, &state.config.trusted_proxies);
    request.data.insert(RequestData {
        state: state.clone(),
        identity: RequestIdentity::new(identity),
        client,
        loaders: Loaders::new(&state.sessions),
    });
    let started = Instant::now();
    // Boxed, so that this handler's future stays small enough to move cheaply.
    let mut response = Box::pin(schema.execute(request)).await;
    let outcome = finish_errors(&mut response);
    if let (Some(document), Outcome::Executed) = (unseen, outcome) {
        http.documents.remember(&text, document);
    }
    if !response.errors.is_empty() {
        // Execution took the parsed document; a copy comes from the document cache.
        if let Ok((document, _)) = http.documents.parse(&text) {
            partial::null_failed_fields(&mut response, &document, operation_name.as_deref(), &http.field_types);
        }
    }
    // Only a validated document's root field is a schema name: anything else is `invalid`,
    // so clients cannot grow the label set.
    if let Some(telemetry) = &state.metrics {
        let operation = match outcome {
            Outcome::Executed => root_field.as_deref().unwrap_or(telemetry::INVALID_OPERATION),
            Outcome::Invalid => telemetry::INVALID_OPERATION,
        };
        telemetry.graphql_request(operation, response.errors.is_empty(), started.elapsed());
    }
    let status = match outcome {
        Outcome::Invalid => format.request_error_status(),
        Outcome::Executed => StatusCode::OK,
    };
    let extra_headers = std::mem::take(&mut response.http_headers);
    // Serialized straight from the response, so fields keep the order the query asked for.
    let body = serde_json::to_string(&response)
        .unwrap_or_else(|_| error_body("internal server error", "INTERNAL_SERVER_ERROR").to_string());
    let mut reply = reply_text(format, status, body);
    for (name, value) in extra_headers.iter() {
        reply.headers_mut().append(name, value.clone());
    }
    reply
}

/// The name of the first field the operation selects (`login`, `me`, ...).
fn first_root_field(document: &ExecutableDocument, operation_name: Option<&str>) -> Option<String> {
    let (_, operation) = match operation_name {
        Some(name) => document
            .operations
            .iter()
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == name))?,
        None => document.operations.iter().next()?,
    };
    operation
        .node
        .selection_set
        .node
        .items
        .iter()
        .find_map(|item| match &item.node {
            Selection::Field(field) => Some(field.node.name.node.to_string()),
            _ => None,
        })
}

/// API.md §3: a bad credential is refused before execution, never run as anonymous.
fn unauthorized(http: &HttpState, rejection: Rejection, format: Format) -> Response {
    let body = error_body(&rejection.error.to_string(), rejection.error.code());
    let mut response = reply(format, StatusCode::UNAUTHORIZED, body);
    let headers = response.headers_mut();
    headers.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    if rejection.source == TokenSource::Cookie {
        if let Ok(clear) = HeaderValue::from_str(&cookie::clear(&http.app.config)) {
            headers.append(header::SET_COOKIE, clear);
        }
    }
    response
}

fn reply(format: Format, status: StatusCode, body: impl ToString) -> Response {
    reply_text(format, status, body.to_string())
}

/// `reply` for a body already serialized: the text becomes the body without a copy.
fn reply_text(format: Format, status: StatusCode, body: String) -> Response {
    http::uncached(status, format.content_type(), body)
}
