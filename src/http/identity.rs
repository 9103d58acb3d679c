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

const BEARER: &[u8] = b"bearer ";

/// The presented token and its source, without judging it. A bearer token is read in place.
pub fn credential<'h>(headers: &'h HeaderMap, cookie_name: &str) -> Option<(Cow<'h, str>, TokenSource)> {
    // API.md §3: the header wins over the cookie.
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        // Only the token's bytes are checked for text, and only as UTF-8: a byte that is not
        // visible ASCII can be no part of a token that verifies.
        let token = value
            .as_bytes()
            .split_at_checked(BEARER.len())
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(BEARER))
            .and_then(|(_, token)| std::str::from_utf8(token.trim_ascii()).ok());
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

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn presented(authorization: &[u8]) -> Option<(String, TokenSource)> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_bytes(authorization).unwrap(),
        );
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("gatehouse_session=from-cookie"),
        );
        credential(&headers, "gatehouse_session").map(|(token, source)| (token.into_owned(), source))
    }

    #[test]
    fn a_bearer_token_is_read_whatever_the_scheme_case_and_the_spaces_around_it() {
        for header in [&b"Bearer abc.def"[..], b"bearer abc.def", b"BEARER   abc.def \t"] {
            assert_eq!(
                presented(header),
                Some(("abc.def".to_owned(), TokenSource::Header)),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn any_other_authorization_header_is_an_empty_token_from_the_header_not_the_cookie() {
        let refused = Some((String::new(), TokenSource::Header));
        for header in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearerabc.def",
            b"Bearer\tabc.def",
            b"Token abc.def",
            // Not text at all.
            b"Bearer abc\xff",
        ] {
            assert_eq!(presented(header), refused, "{}", String::from_utf8_lossy(header));
        }
    }

    #[test]
    fn without_an_authorization_header_the_cookie_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("gatehouse_session=from-cookie"),
        );
        let (token, source) = credential(&headers, "gatehouse_session").unwrap();
        assert_eq!((token.as_ref(), source), ("from-cookie", TokenSource::Cookie));
        assert!(credential(&HeaderMap::new(), "gatehouse_session").is_none());
    }
}
