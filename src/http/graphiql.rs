//! The GraphiQL page and the files it loads, embedded in the binary so the page works offline
//! and names no other host, served with a strict Content-Security-Policy (built in one
//! function, `content_security_policy`). `assets/graphiql/README.md` says where the vendored
//! files come from.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

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
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(PAGE)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    // Older browsers ignore `frame-ancestors`: no framing either way (clickjacking).
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
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

/// The policy for `html`: nothing by default; scripts and styles from `'self'` (gatehouse
/// serves every file the page loads) and the exact inline blocks the page holds (by hash, so no other inline code
/// runs); requests only to this server; no framing, no `<base>`, no form posts elsewhere.
pub fn content_security_policy(html: &str) -> String {
    let scripts = inline_hashes(html, "script").join(" ");
    let styles = inline_hashes(html, "style").join(" ");
    [
        "default-src 'none'".to_owned(),
        format!("script-src 'self' {scripts}"),
        format!("style-src 'self' {styles}"),
        "font-src 'self' data:".to_owned(),
        "img-src 'self' data:".to_owned(),
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

    #[test]
    fn the_page_needs_no_other_host() {
        let csp = content_security_policy(PAGE);
        assert!(!csp.contains("http"), "{csp}");
    }
}
