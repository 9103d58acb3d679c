//! The GraphiQL page served to browsers on `GET /graphql`, with a strict
//! Content-Security-Policy. The policy is built in one function, `content_security_policy`.

use async_graphql::http::GraphiQLSource;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Origins the page's scripts, styles and fonts load from besides `'self'`. The page from
/// `GraphiQLSource` loads them from this CDN; once they are served under `/graphql/assets/`,
/// `'self'` covers them and this list becomes empty.
const ASSET_ORIGINS: &[&str] = &["https://unpkg.com"];
/// Where the page's favicon comes from.
const IMAGE_ORIGINS: &[&str] = &["https://graphql.org"];

pub fn page() -> Response {
    let html = GraphiQLSource::build().endpoint("/graphql").title("gatehouse").finish();
    let csp = content_security_policy(&html);
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    // Older browsers ignore `frame-ancestors`: no framing either way (clickjacking).
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The policy for `html`: nothing by default; scripts and styles from `'self'`, the asset
/// origins and the exact inline blocks the page holds (by hash, so no other inline code
/// runs); requests only to this server; no framing, no `<base>`, no form posts elsewhere.
pub fn content_security_policy(html: &str) -> String {
    let assets = ASSET_ORIGINS.join(" ");
    let scripts = inline_hashes(html, "script").join(" ");
    let styles = inline_hashes(html, "style").join(" ");
    let images = IMAGE_ORIGINS.join(" ");
    [
        "default-src 'none'".to_owned(),
        format!("script-src 'self' {assets} {scripts}"),
        format!("style-src 'self' {assets} {styles}"),
        format!("font-src 'self' data: {assets}"),
        format!("img-src 'self' data: {images}"),
        "connect-src 'self'".to_owned(),
        "base-uri 'none'".to_owned(),
        "form-action 'self'".to_owned(),
        "frame-ancestors 'none'".to_owned(),
    ]
    .iter()
    .map(|directive| directive.split_whitespace().collect::<Vec<_>>().join(" "))
    .collect::<Vec<_>>()
    .join("; ")
}

/// `'sha256-...'` of each inline `<tag>` element's content (elements with `src` load code
/// from elsewhere and need no hash).
fn inline_hashes(html: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after_open = &rest[start + open.len()..];
        let Some(tag_end) = after_open.find('>') else { break };
        let attributes = &after_open[..tag_end];
        let body = &after_open[tag_end + 1..];
        let Some(body_end) = body.find(&close) else { break };
        if !attributes.contains("src=") {
            let digest = Sha256::digest(&body.as_bytes()[..body_end]);
            hashes.push(format!("'sha256-{}'", STANDARD.encode(digest)));
        }
        rest = &body[body_end + close.len()..];
    }
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_blocks_are_hashed_and_nothing_else_is_allowed() {
        let html = "<style>a{}</style><script src=\"/x.js\"></script><script>go()</script>";
        let csp = content_security_policy(html);
        let script_hash = STANDARD.encode(Sha256::digest(b"go()"));
        let style_hash = STANDARD.encode(Sha256::digest(b"a{}"));
        assert!(csp.contains(&format!("'sha256-{script_hash}'")), "{csp}");
        assert!(csp.contains(&format!("'sha256-{style_hash}'")), "{csp}");
        assert!(csp.starts_with("default-src 'none'"));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(inline_hashes(html, "script").len(), 1);
    }
}
