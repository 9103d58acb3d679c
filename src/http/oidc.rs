//! Social login routes (API.md §8): `/auth/oidc/{provider}/start` sends the browser to the
//! provider, `/auth/oidc/{provider}/callback` signs it in (or links the identity) and sends it
//! back to `return_to`. Protocol work is `crate::oidc`'s, account rules `domain::social`'s.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::auth::cookie;
use crate::client::ClientInfo;
use crate::domain::social::{self, NewFlow, Refusal};
use crate::error::error_body;
use crate::http::identity;
use crate::sessions::seconds_to_duration;
use crate::state::AppState;

/// How long the browser keeps the cookie tying it to a sign-in (the attempt's own lifetime).
const FLOW_COOKIE_SECONDS: i64 = 600;

#[derive(Deserialize)]
pub struct StartParams {
    return_to: Option<String>,
    link: Option<String>,
}

#[derive(Deserialize)]
pub struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /auth/oidc/{provider}/start?return_to=URL[&link=true]`.
pub async fn start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(params): Query<StartParams>,
    headers: HeaderMap,
) -> Response {
    if !state.oidc.is_configured(&provider) {
        return json_error(StatusCode::NOT_FOUND, "no such provider", "NOT_FOUND");
    }
    let Some(return_to) = params.return_to.filter(|r| return_allowed(&state, r)) else {
        // Never redirect to a place the allow-list does not name.
        return json_error(
            StatusCode::BAD_REQUEST,
            "return_to must start with one of OIDC_RETURN_URLS",
            "BAD_USER_INPUT",
        );
    };
    let link_user_id = match params.link.as_deref() {
        Some("true" | "1") => match linking_user(&state, &headers).await {
            Ok(user_id) => Some(user_id),
            Err(code) => return back(&return_to, "error", code, Vec::new()),
        },
        _ => None,
    };
    let authorization = match state.oidc.authorize(&provider) {
        Ok(authorization) => authorization,
        Err(e) => return back(&return_to, "error", e.code(), Vec::new()),
    };
    let flow = NewFlow {
        provider: &provider,
        state: &authorization.state,
        pkce_verifier: &authorization.pkce_verifier,
        nonce: &authorization.nonce,
        return_to: &return_to,
        link_user_id,
    };
    if let Err(e) = social::save_flow(&state.db, &state.sealing, flow, state.clock.now()).await {
        e.log_cause();
        return back(&return_to, "error", "server_error", Vec::new());
    }
    let flow_cookie = cookie::set_flow(&state.config, &authorization.state, FLOW_COOKIE_SECONDS);
    redirect(&authorization.url, vec![flow_cookie])
}

/// `GET /auth/oidc/{provider}/callback?state=...&code=...`.
pub async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(provider): Path<String>,
    Query(params): Query<CallbackParams>,
    headers: HeaderMap,
) -> Response {
    let config = &state.config;
    let now = state.clock.now();
    let Some(flow_state) = params.state.filter(|s| !s.is_empty()) else {
        return unknown_flow();
    };
    let flow = match social::take_flow(&state.db, &state.sealing, &provider, &flow_state, now).await {
        Ok(Some(flow)) => flow,
        Ok(None) => return unknown_flow(),
        Err(e) => {
            e.log_cause();
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error",
                "INTERNAL_SERVER_ERROR",
            );
        }
    };
    let return_to = flow.return_to.as_str();
    let clear = vec![cookie::clear_flow(config)];
    // The attempt must come back to the browser that started it (login CSRF).
    let same_browser = cookie::read(&headers, &cookie::flow_name(config))
        .is_some_and(|c| bool::from(subtle::ConstantTimeEq::ct_eq(c.as_bytes(), flow_state.as_bytes())));
    if !same_browser {
        return back(return_to, "error", "invalid_state", clear);
    }
    if let Some(error) = params.error {
        tracing::info!(provider, error, "the provider refused the sign-in");
        let code = if error == "access_denied" {
            "access_denied"
        } else {
            "provider_error"
        };
        return back(return_to, "error", code, clear);
    }
    let Some(code) = params.code else {
        return back(return_to, "error", "provider_error", clear);
    };
    let who = match state
        .oidc
        .finish(&provider, &code, &flow.pkce_verifier, &flow.nonce, now)
        .await
    {
        Ok(who) => who,
        Err(e) => {
            tracing::warn!(provider, error = %e, "social sign-in failed");
            return back(return_to, "error", e.code(), clear);
        }
    };
    let client = ClientInfo::from_request(Some(peer), &headers, &config.trusted_proxies);
    if let Some(user_id) = flow.link_user_id {
        return match social::link(&state.sessions, user_id, &who, &client).await {
            Ok(()) => back(return_to, "linked", &provider, clear),
            Err(refusal) => refused(return_to, refusal, clear),
        };
    }
    let signed_in = match social::sign_in(
        &state.sessions,
        config.require_verified_email,
        config.oidc_signup,
        &who,
        &client,
    )
    .await
    {
        Ok(signed_in) => signed_in,
        Err(refusal) => return refused(return_to, refusal, clear),
    };
    let login_code = match social::issue_login_code(&state.db, signed_in.user.id, &provider, now).await {
        Ok(code) => code,
        Err(e) => {
            e.log_cause();
            return back(return_to, "error", "server_error", clear);
        }
    };
    let issued = &signed_in.session;
    let max_age = (issued.session.expires_at - now).num_seconds();
    let session_cookie = cookie::set(config, issued.cookie_token.as_deref().unwrap_or(&issued.token), max_age);
    back(
        return_to,
        "login_code",
        &login_code,
        vec![cookie::clear_flow(config), session_cookie],
    )
}

/// The signed-in user of a fresh session asking to link, or the `?error=` value.
async fn linking_user(state: &AppState, headers: &HeaderMap) -> Result<uuid::Uuid, &'static str> {
    let identity = identity::resolve(state, headers).await.map_err(|_| "unauthenticated")?;
    let caller = identity.caller().ok_or("unauthenticated")?;
    let window = seconds_to_duration(state.config.reauth_window);
    if state.clock.now() - caller.authenticated_at > window {
        return Err("reauthentication_required");
    }
    Ok(caller.user_id)
}

/// Whether `return_to` starts with an allowed prefix at a boundary: `https://app.example`
/// must not admit `https://app.example.evil`.
fn return_allowed(state: &AppState, return_to: &str) -> bool {
    if openidconnect::url::Url::parse(return_to).is_err() {
        return false;
    }
    state.config.oidc_return_urls().any(|prefix| {
        return_to
            .strip_prefix(prefix)
            .is_some_and(|rest| prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?', '#']))
    })
}

fn refused(return_to: &str, refusal: Refusal, cookies: Vec<String>) -> Response {
    if let Refusal::Failed(e) = &refusal {
        e.log_cause();
    }
    back(return_to, "error", refusal.code(), cookies)
}

/// A redirect to `return_to` with one query parameter added.
fn back(return_to: &str, key: &str, value: &str, cookies: Vec<String>) -> Response {
    match openidconnect::url::Url::parse(return_to) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair(key, value);
            redirect(url.as_str(), cookies)
        }
        Err(_) => json_error(StatusCode::BAD_REQUEST, "return_to is not a URL", "BAD_USER_INPUT"),
    }
}

fn redirect(location: &str, cookies: Vec<String>) -> Response {
    let Ok(location) = HeaderValue::from_str(location) else {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error",
            "INTERNAL_SERVER_ERROR",
        );
    };
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    // The URLs carry a code or a login code: no caching, and no Referer to the next page.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    for cookie in cookies.into_iter().filter(|c| !c.is_empty()) {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A callback whose `state` names no attempt under way: there is no known `return_to` to go to.
fn unknown_flow() -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        "this sign-in is unknown, used or expired: start again",
        "BAD_USER_INPUT",
    )
}

fn json_error(status: StatusCode, message: &str, code: &str) -> Response {
    let mut response = (status, Json(error_body(message, code))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
