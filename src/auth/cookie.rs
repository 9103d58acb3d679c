//! The session cookie (API.md §3): read from requests, and the `Set-Cookie` values that set
//! and clear it. Nothing else builds cookie headers.

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use http::HeaderMap;

use crate::config::Config;

pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    CookieJar::from_headers(headers).get(name).map(|c| c.value().to_owned())
}

/// `Set-Cookie` carrying `token` for `max_age_seconds`.
pub fn set(config: &Config, token: &str, max_age_seconds: i64) -> String {
    build(config, token.to_owned(), max_age_seconds)
}

/// The cookie that ties a social sign-in to the browser that started it.
pub fn flow_name(config: &Config) -> String {
    format!("{}_oidc", config.cookie_name)
}

/// `Set-Cookie` carrying a social sign-in's `state`, for its callback only.
pub fn set_flow(config: &Config, state: &str, max_age_seconds: i64) -> String {
    flow(config, state.to_owned(), max_age_seconds)
}

/// `Set-Cookie` that drops the social sign-in cookie.
pub fn clear_flow(config: &Config) -> String {
    flow(config, String::new(), 0)
}

fn flow(config: &Config, value: String, max_age_seconds: i64) -> String {
    // Lax: the provider's redirect back is a top-level GET, which carries it.
    Cookie::build((flow_name(config), value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/auth/oidc/")
        .secure(config.cookie_secure)
        .max_age(cookie::time::Duration::seconds(max_age_seconds.max(0)))
        .build()
        .to_string()
}

/// `Set-Cookie` that makes the browser drop the session cookie.
pub fn clear(config: &Config) -> String {
    build(config, String::new(), 0)
}

fn build(config: &Config, value: String, max_age_seconds: i64) -> String {
    Cookie::build((config.cookie_name.clone(), value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(config.cookie_secure)
        .max_age(cookie::time::Duration::seconds(max_age_seconds.max(0)))
        .build()
        .to_string()
}
