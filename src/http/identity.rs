//! The one place that reads credentials off a request (API.md §3): Bearer header first,
//! else the session cookie; then token -> live session -> user and roles.
//! `/graphql` and `/auth/webhook` both call `resolve`.

use std::borrow::Cow;

use http::HeaderMap;

use crate::auth::cookie;
use crate::error::AppError;
use crate::sessions::Identity;
use crate::state::AppState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Cookie,
}

/// A refused credential, and where it came from: a bad cookie is also cleared.
#[derive(Debug)]
pub struct Rejection {
    pub source: TokenSource,
    pub error: AppError,
}

/// The presented token and its source, without judging it. A bearer token is read in place.
pub fn credential<'h>(headers: &'h HeaderMap, cookie_name: &str) -> Option<(Cow<'h, str>, TokenSource)> {
    // API.md §3: the header wins over the cookie.
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let token = value.to_str().ok().and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        // An Authorization header that is not a bearer token is a bad credential, not "none".
        return Some((Cow::Borrowed(token.unwrap_or_default()), TokenSource::Header));
    }
    cookie::read(headers, cookie_name).map(|token| (Cow::Owned(token), TokenSource::Cookie))
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Identity, Rejection> {
    let Some((token, source)) = credential(headers, &state.config.cookie_name) else {
        return Ok(Identity::Anonymous);
    };
    let now = state.clock.now().timestamp();
    let claims = state.tokens.verify(&token, now).ok_or(Rejection {
        source,
        error: AppError::InvalidToken,
    })?;
    match state.sessions.authenticate(&claims).await {
        Ok(caller) => Ok(Identity::User(caller)),
        Err(error) => Err(Rejection { source, error }),
    }
}
