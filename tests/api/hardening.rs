//! Hardening beyond the happy path: cross-site request forgery on GET, forged and stale tokens,
//! security headers on every answer and the GraphiQL page's Content-Security-Policy.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use gatehouse::Config;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{unique, Reply, TestServer, PASSWORD};

/// `{ me { id } }` in a query string.
const ME_URL: &str = "/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D";

async fn get_me(server: &TestServer, headers: &[(&str, &str)]) -> Reply {
    let mut request = server.http.get(server.url(ME_URL));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::from(request.send().await.unwrap()).await
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Signs `claims` with the test server's own secret, as only the server could.
fn sign(server: &TestServer, header: jsonwebtoken::Header, claims: &Value) -> String {
    let secret = server.state.config.jwt_secret.as_ref().unwrap().as_bytes();
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test]
async fn cookie_authenticated_gets_must_not_be_simple_requests() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("csrf").await;
    let cookie = format!("{}={token}", server.state.config.cookie_name);

    // What an <img> or a link from another site would send: refused, nothing runs.
    for extra in [
        None,
        Some(("content-type", "text/plain")),
        Some(("content-type", "application/x-www-form-urlencoded")),
    ] {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend(extra);
        let reply = get_me(&server, &headers).await;
        assert_eq!(reply.status, 400, "{extra:?}: {}", reply.body);
        reply.assert_code("BAD_REQUEST");
        assert!(reply.body.get("data").is_none(), "{}", reply.body);
    }

    // A header no form or tag can set, or a non-simple content type, proves a preflight.
    for proof in [
        ("apollo-require-preflight", "true"),
        ("x-requested-with", "XMLHttpRequest"),
        ("content-type", "application/json"),
    ] {
        let reply = get_me(&server, &[("cookie", cookie.as_str()), proof]).await;
        assert_eq!(reply.data("me")["id"], user_id.as_str(), "{proof:?}");
    }

    // Bearer tokens and anonymous callers are not at risk: browsers never add those on their own.
    let bearer = format!("Bearer {token}");
    assert_eq!(
        get_me(&server, &[("authorization", bearer.as_str())]).await.data("me")["id"],
        user_id.as_str()
    );
    assert!(get_me(&server, &[]).await.data("me").is_null());

    // A cross-site form POST is refused by its content type (415), cookie or not.
    let form = server
        .http
        .post(server.url("/graphql"))
        .header("cookie", cookie.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("query=mutation%20%7B%20logout%20%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    assert!(server
        .gql(Some(&token), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());
}

#[tokio::test]
async fn a_long_lived_token_dies_with_its_session() {
    let server = TestServer::start(Config {
        session_ttl: 60,
        ..Config::for_test()
    })
    .await;
    let (token, _, _) = server.signup("stale").await;
    let mut claims = claims_of(&token);
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 10 * 365 * 24 * 3600);
    let long_lived = sign(
        &server,
        jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
    );
    assert!(server
        .gql(Some(&long_lived), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());

    server.state.clock.advance(61);
    server
        .gql(Some(&long_lived), "{ me { id } }", json!({}))
        .await
        .assert_unauthorized();
}

#[tokio::test]
async fn tokens_naming_another_key_or_issued_in_the_future_are_refused() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("kid").await;
    let claims = claims_of(&token);

    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("some-other-key".into());
    let other_kid = sign(&server, header, &claims);

    let mut future = claims.clone();
    future["iat"] = json!(server.state.clock.now().timestamp() + 3600);
    let from_the_future = sign(
        &server,
        jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &future,
    );

    let hs512 = sign(
        &server,
        jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
    );

    for forged in [other_kid, from_the_future, hs512] {
        server
            .gql(Some(&forged), "{ me { id } }", json!({}))
            .await
            .assert_unauthorized();
    }
    assert!(server
        .gql(Some(&token), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());
}

#[tokio::test]
async fn every_answer_forbids_content_sniffing() {
    let server = TestServer::start(Config::for_test()).await;
    let answers = [
        server.http.get(server.url("/healthz")).send().await.unwrap(),
        server.http.get(server.url("/no-such-path")).send().await.unwrap(),
        server.http.post(server.url("/graphql")).body("x").send().await.unwrap(),
        server
            .http
            .post(server.url("/graphql"))
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap(),
        server.http.get(server.url("/auth/webhook")).send().await.unwrap(),
    ];
    for answer in answers {
        assert_eq!(
            answer
                .headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{}",
            answer.url()
        );
    }
    // Answers that carry tokens are never cached.
    let signup = server
        .gql(
            None,
            "mutation($u: String!, $p: String!) { signup(input: {username: $u, password: $p}) { token } }",
            json!({ "u": unique("nocache"), "p": PASSWORD }),
        )
        .await;
    assert!(signup.data("signup")["token"].is_string());
    assert_eq!(signup.header("cache-control").as_deref(), Some("no-store"));
}

#[tokio::test]
async fn graphiql_gets_a_strict_content_security_policy() {
    let server = TestServer::start(Config::for_test()).await;
    let response = server
        .http
        .get(server.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let page = response.text().await.unwrap();

    let directive = |name: &str| {
        csp.split(';')
            .map(str::trim)
            .find(|d| d.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {csp}"))
            .to_owned()
    };
    assert_eq!(directive("default-src"), "default-src 'none'");
    assert_eq!(directive("frame-ancestors"), "frame-ancestors 'none'");
    assert_eq!(directive("connect-src"), "connect-src 'self'");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    // Every inline script of the page (if any) is allowed by its hash, and nothing inline else.
    let scripts = directive("script-src");
    assert!(scripts.contains("'self'"), "{scripts}");
    let mut inline = 0;
    for chunk in page.split("<script").skip(1) {
        let (attributes, rest) = chunk.split_once('>').unwrap();
        if attributes.contains("src=") {
            continue;
        }
        let body = rest.split("</script>").next().unwrap();
        let hash = STANDARD.encode(Sha256::digest(body.as_bytes()));
        assert!(scripts.contains(&format!("'sha256-{hash}'")), "{scripts}");
        inline += 1;
    }
    assert_eq!(scripts.matches("'sha256-").count(), inline);
    // Every file the page loads comes from gatehouse itself.
    assert!(!csp.contains("http"), "{csp}");
}

#[tokio::test]
async fn deeply_nested_documents_and_variables_are_refused_without_harm() {
    let server = TestServer::start(Config::for_test()).await;
    let n = 100_000;
    let fields = format!("{{ {} }}", "me {".repeat(n) + &"}".repeat(n));
    let lists = format!("{{ user(id: {}1{}) {{ id }} }}", "[".repeat(n), "]".repeat(n));
    for query in [fields, lists] {
        server
            .gql(None, &query, json!({}))
            .await
            .assert_code("GRAPHQL_PARSE_FAILED");
    }
    // Variables nested past what the JSON reader accepts: a plain 400.
    let body = format!(
        "{{\"query\": \"{{ __typename }}\", \"variables\": {{\"v\": {}1{}}}}}",
        "[".repeat(n),
        "]".repeat(n)
    );
    let response = server
        .http
        .post(server.url("/graphql"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    reply.assert_code("BAD_REQUEST");
    assert_eq!(
        server.gql(None, "{ __typename }", json!({})).await.data("__typename"),
        "Query"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data");
    let file = folder.join("gatehouse.db");
    let config = Config {
        database_url: format!("sqlite://{}?mode=rwc", file.display()),
        ..Config::for_test()
    };
    let server = TestServer::start_exactly(config).await;
    // Something written, so the write-ahead log is in use.
    server.signup("private").await;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&folder), 0o700, "the folder gatehouse created");
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    server.stop().await;

    // A database made before, readable by all, is narrowed at the next start.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = Config {
        database_url: format!("sqlite://{}?mode=rwc", file.display()),
        ..Config::for_test()
    };
    let _restarted = TestServer::start_exactly(config).await;
    assert_eq!(mode(&file), 0o600);
}
