//! `/auth/webhook` (API.md §6): Hasura's auth webhook in GET and POST mode, also nginx
//! `auth_request` and Traefik ForwardAuth. The caller comes from `identity::resolve`, the role
//! from `domain::gateway::decide`; this file reads the request and writes the answer.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::gateway;
use crate::http::identity::{self, TokenSource};
use crate::http::{self, HttpState};
use crate::state::AppState;

const USER_ID: HeaderName = HeaderName::from_static("x-hasura-user-id");
const ROLE: HeaderName = HeaderName::from_static("x-hasura-role");

#[derive(Deserialize)]
pub struct Params {
    allow: Option<String>,
    forbidden_status: Option<String>,
}

/// What the gateway asked for in the query string.
struct Options {
    allow: Option<Vec<String>>,
    /// The status of refusing an authenticated caller: 401 unless `forbidden_status=403`.
    forbidden: StatusCode,
}

impl Options {
    /// The options, or why the query string is malformed (a 400).
    fn parse(params: Result<Query<Params>, QueryRejection>) -> Result<Self, &'static str> {
        let Ok(Query(params)) = params else {
            return Err("malformed query string");
        };
        let forbidden = match params.forbidden_status.as_deref() {
            None | Some("401") => StatusCode::UNAUTHORIZED,
            Some("403") => StatusCode::FORBIDDEN,
            // A gateway misconfiguration: say so rather than guess.
            Some(_) => return Err("forbidden_status must be 401 or 403"),
        };
        Ok(Options {
            allow: params.allow.as_deref().map(gateway::parse_allow),
            forbidden,
        })
    }
}

/// GET mode: the credentials and `X-Hasura-Role` are the request's own headers (Hasura,
/// nginx and Traefik forward the client's).
pub async fn get(
    State(http): State<HttpState>,
    params: Result<Query<Params>, QueryRejection>,
    // The request itself rather than a `HeaderMap`, whose extraction copies every header.
    request: Request,
) -> Response {
    match Options::parse(params) {
        Ok(options) => check(&http.app, &options, request.headers()).await,
        Err(reason) => refuse(StatusCode::BAD_REQUEST, reason),
    }
}

/// POST mode: Hasura's `{"headers": {...}, "request": {...}}`; only `headers` is read, and
/// the GraphQL request is never parsed.
pub async fn post(
    State(http): State<HttpState>,
    params: Result<Query<Params>, QueryRejection>,
    body: Body,
) -> Response {
    let options = match Options::parse(params) {
        Ok(options) => options,
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, reason),
    };
    let Ok(bytes) = axum::body::to_bytes(body, http.app.config.max_body_bytes).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large");
    };
    let Some(headers) = forwarded_headers(&bytes) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "body must be {\"headers\": {...}, \"request\": {...}}",
        );
    };
    check(&http.app, &options, &headers).await
}

/// The client headers Hasura forwards, as a `HeaderMap`, so that names match whatever their
/// case and `identity::resolve` reads them exactly as it reads a real request.
fn forwarded_headers(body: &[u8]) -> Option<HeaderMap> {
    #[derive(Deserialize)]
    struct HookBody {
        #[serde(default)]
        headers: Map<String, Value>,
    }
    let body: HookBody = serde_json::from_slice(body).ok()?;
    let mut headers = HeaderMap::new();
    for (name, value) in body.headers {
        // Names and values no HTTP request could carry are dropped, as a server would.
        let name = HeaderName::from_bytes(name.as_bytes()).ok();
        let value = value.as_str().and_then(|v| HeaderValue::from_str(v).ok());
        if let (Some(name), Some(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    Some(headers)
}

/// The check, counted by outcome for `/metrics`.
async fn check(state: &AppState, options: &Options, headers: &HeaderMap) -> Response {
    let response = decide(state, options, headers).await;
    if let Some(telemetry) = &state.metrics {
        telemetry.webhook_request(response.status());
    }
    response
}

async fn decide(state: &AppState, options: &Options, headers: &HeaderMap) -> Response {
    if cookie_from_another_site(state, headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a session cookie sent from another site is not accepted",
        );
    }
    let identity = match identity::resolve(state, headers).await {
        Ok(identity) => identity,
        Err(rejection) if rejection.error.is_internal() => {
            rejection.error.log_cause();
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
        }
        // A bad token is 401 whatever `forbidden_status` says: it is not a known caller.
        Err(rejection) => {
            let mut response = refuse(StatusCode::UNAUTHORIZED, &rejection.error.to_string());
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            return response;
        }
    };
    // Identity comes only from the token: of the client's X-Hasura-* headers, only the
    // requested role is read, and it is checked against the live roles.
    let requested = headers.get(&ROLE).and_then(|v| v.to_str().ok());
    let caller = identity.caller();
    let roles = caller.map(|c| &c.roles[..]);
    match gateway::decide(roles, requested, options.allow.as_deref()) {
        Ok(role) => grant(caller.map(|c| c.user_id.to_string()), &role),
        Err(refusal) => {
            let status = match caller {
                Some(_) => options.forbidden,
                None => StatusCode::UNAUTHORIZED,
            };
            refuse(status, &refusal.to_string())
        }
    }
}

/// Whether the credential is the session cookie and the browser says the request came from
/// another site: `Sec-Fetch-Site: cross-site`, or an `Origin` not listed in CORS_ORIGINS. The
/// browser attaches the cookie to requests any page makes, so a gateway must not let one
/// through on the cookie alone; a bearer token is only ever sent on purpose.
fn cookie_from_another_site(state: &AppState, headers: &HeaderMap) -> bool {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    let foreign_origin = headers.get(header::ORIGIN).is_some_and(|origin| {
        let origin = origin.to_str().unwrap_or_default();
        !state.config.cors_origins().any(|allowed| allowed == origin)
    });
    // The credential last: most requests name no other site, and `resolve` reads it again.
    (cross_site || foreign_origin)
        && matches!(
            identity::credential(headers, &state.config.cookie_name),
            Some((_, TokenSource::Cookie))
        )
}

/// 200 with the session variables, in the body (Hasura) and as headers (nginx, Traefik).
fn grant(user_id: Option<String>, role: &str) -> Response {
    #[derive(Serialize)]
    struct Granted<'a> {
        #[serde(rename = "X-Hasura-Role")]
        role: &'a str,
        #[serde(rename = "X-Hasura-User-Id", skip_serializing_if = "Option::is_none")]
        user_id: Option<&'a str>,
    }
    let body = Granted {
        role,
        user_id: user_id.as_deref(),
    };
    let mut response = json_response(StatusCode::OK, &body);
    let headers = response.headers_mut();
    // The role is the literal name of a role the caller holds, so it is a valid header value.
    if let Ok(role) = HeaderValue::from_str(role) {
        headers.insert(ROLE, role);
    }
    if let Some(user_id) = user_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert(USER_ID, user_id);
    }
    response
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    #[derive(Serialize)]
    struct Refused<'a> {
        error: &'a str,
    }
    json_response(status, &Refused { error: reason })
}

/// Serialized from a struct, with no JSON tree in between.
fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let body = serde_json::to_string(body).unwrap_or_default();
    // Roles are read live: Hasura caches a webhook answer that allows it, so allow none.
    http::uncached(status, "application/json", body)
}
