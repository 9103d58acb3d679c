//! The HTTP surface (API.md §2, §7): GET and POST, content negotiation, body and document
//! limits, malformed requests, health checks. The server stays up through all of it.

use gatehouse::Config;
use serde_json::json;

use crate::common::{Reply, TestServer};

async fn post_raw(server: &TestServer, content_type: Option<&str>, accept: Option<&str>, body: Vec<u8>) -> Reply {
    let mut request = server.http.post(server.url("/graphql")).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    Reply::from(request.send().await.unwrap()).await
}

async fn assert_still_serving(server: &TestServer) {
    let reply = server.gql(None, "{ __typename }", json!({})).await;
    assert_eq!(reply.data("__typename"), "Query");
}

#[tokio::test]
async fn get_runs_queries_and_refuses_mutations() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("getter").await;
    let response = server
        .http
        .get(server.url("/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(Reply::from(response).await.data("me")["id"], user_id.as_str());

    let response = server
        .http
        .get(server.url("/graphql?query=mutation%20%7B%20logout%20%7D"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    let reply = Reply::from(response).await;
    assert_eq!(reply.status, 405);
    assert!(reply.body["errors"][0]["message"].as_str().unwrap().contains("POST"));
    // The session was not closed.
    assert!(server.gql(Some(&token), "{ me { id } }", json!({})).await.data("me")["id"].is_string());
}

#[tokio::test]
async fn browsers_get_graphiql() {
    let server = TestServer::start(Config::for_test()).await;
    let response = server
        .http
        .get(server.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(response.text().await.unwrap().to_lowercase().contains("graphiql"));

    let off = TestServer::start(Config {
        graphiql: false,
        ..Config::for_test()
    })
    .await;
    let response = off
        .http
        .get(off.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(!response.text().await.unwrap().to_lowercase().contains("graphiql"));
}

/// Every `src` and `href` attribute of an HTML page.
fn linked_urls(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in html.match_indices(attribute) {
            let rest = &html[start + attribute.len()..];
            urls.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    urls
}

#[tokio::test]
async fn graphiql_is_served_from_gatehouse_itself() {
    let server = TestServer::start(Config::for_test()).await;
    let page = server
        .http
        .get(server.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let urls = linked_urls(&page);
    assert!(
        urls.len() >= 5,
        "the page loads GraphiQL, React and its styles: {urls:?}"
    );
    // Offline, and ready for a strict CSP: no other host, no inline script.
    for url in &urls {
        assert!(!url.contains("//") && !url.contains(':'), "external URL {url}");
        assert!(url.starts_with("graphql/assets/"), "{url}");
    }
    assert!(!page.contains("<script>"), "inline script in the page");
    assert!(!page.contains("http://") && !page.contains("https://"));

    for url in &urls {
        let response = server.http.get(server.url(&format!("/{url}"))).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        let expected = if url.ends_with(".js") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(content_type.starts_with(expected), "{url}: {content_type}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let cache = response.headers()["cache-control"].to_str().unwrap().to_string();
        // Vendored files carry their version in the name and are cached for a year.
        if url.contains("graphiql-3.") || url.contains("react") {
            assert!(
                cache.contains("max-age=31536000") && cache.contains("immutable"),
                "{url}: {cache}"
            );
        }
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    let missing = server
        .http
        .get(server.url("/graphql/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let off = TestServer::start(Config {
        graphiql: false,
        ..Config::for_test()
    })
    .await;
    let response = off.http.get(off.url(&format!("/{}", urls[0]))).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn content_type_must_be_json() {
    let server = TestServer::start(Config::for_test()).await;
    let body = br#"{"query":"{ __typename }"}"#.to_vec();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let reply = post_raw(&server, content_type, None, body.clone()).await;
        assert_eq!(reply.status, 415, "{content_type:?}");
        assert!(reply.body["errors"][0]["message"].is_string());
    }
    let reply = post_raw(&server, Some("application/json; charset=utf-8"), None, body.clone()).await;
    assert_eq!(reply.data("__typename"), "Query");
    let reply = post_raw(&server, Some("application/graphql-response+json"), None, body).await;
    assert_eq!(reply.data("__typename"), "Query");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = TestServer::start(Config {
        max_body_bytes: 4096,
        ..Config::for_test()
    })
    .await;
    let big = json!({ "query": "{ __typename }", "variables": { "pad": "x".repeat(5000) } });
    let reply = post_raw(
        &server,
        Some("application/json"),
        None,
        serde_json::to_vec(&big).unwrap(),
    )
    .await;
    assert_eq!(reply.status, 413);
    assert!(reply.body["errors"][0]["message"].as_str().unwrap().contains("4096"));

    // Huge but allowed variables are simply ignored when unused.
    let fits = json!({ "query": "{ __typename }", "variables": { "pad": "x".repeat(3000) } });
    let reply = post_raw(
        &server,
        Some("application/json"),
        None,
        serde_json::to_vec(&fits).unwrap(),
    )
    .await;
    assert_eq!(reply.data("__typename"), "Query");
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn malformed_bodies_get_400() {
    let server = TestServer::start(Config::for_test()).await;
    for body in [
        &b""[..],
        b"   ",
        b"{not json",
        b"[{\"query\":\"{ __typename }\"}]",
        b"{\"query\": 42}",
        b"\"just a string\"",
        b"  [ ]",
        b"{\"query\": \"{ __typename }\", \"query\": \"{ __typename }\"}",
        b"{\"query\": \"{ __typename }\"} trailing",
    ] {
        let reply = post_raw(&server, Some("application/json"), None, body.to_vec()).await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(body));
        assert!(reply.body["errors"][0]["message"].is_string());
        reply.assert_code("BAD_REQUEST");
    }
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn parse_and_validation_errors_follow_the_negotiated_media_type() {
    let server = TestServer::start(Config::for_test()).await;
    let cases = [
        (r#"{"query":"{ me { id "}"#, "GRAPHQL_PARSE_FAILED"),
        (r#"{"query":"{ nope }"}"#, "GRAPHQL_VALIDATION_FAILED"),
        (
            r#"{"query":"{ me { id } }","operationName":"Missing"}"#,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            r#"{"query":"query A { me { id } } query B { me { id } }"}"#,
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ];
    for (body, code) in cases {
        let legacy = post_raw(&server, Some("application/json"), None, body.as_bytes().to_vec()).await;
        assert_eq!(legacy.status, 200, "{body}");
        legacy.assert_code(code);
        assert!(legacy.header("content-type").unwrap().starts_with("application/json"));

        let modern = post_raw(
            &server,
            Some("application/json"),
            Some("application/graphql-response+json"),
            body.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(modern.status, 400, "{body}");
        modern.assert_code(code);
        assert!(modern
            .header("content-type")
            .unwrap()
            .starts_with("application/graphql-response+json"));
    }
}

#[tokio::test]
async fn bad_variables_are_bad_user_input() {
    let server = TestServer::start(Config::for_test()).await;
    let reply = server
        .gql(
            None,
            "query($id: UUID!) { user(id: $id) { id } }",
            json!({ "id": "not-a-uuid" }),
        )
        .await;
    let code = reply.code();
    assert!(
        code == "BAD_USER_INPUT" || code == "GRAPHQL_VALIDATION_FAILED",
        "{}",
        reply.body
    );
    let reply = server
        .gql(
            None,
            "mutation($i: SignupInput!) { signup(input: $i) { token } }",
            json!({ "i": { "username": 5 } }),
        )
        .await;
    let code = reply.code();
    assert!(
        code == "BAD_USER_INPUT" || code == "GRAPHQL_VALIDATION_FAILED",
        "{}",
        reply.body
    );
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn depth_complexity_and_alias_bombs_are_refused_before_running() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("bomber").await;
    // Every query a client would write fits the defaults.
    let full = "{ me { id username roles email name timeZone language theme settings passwordChangedAt createdAt } countSessions sessions { id createdAt expiresAt lastSeenAt userAgent ip current } }";
    assert!(server.gql(Some(&token), full, json!({})).await.data("me").is_object());

    let tight = TestServer::start(Config {
        graphql_max_depth: 1,
        ..Config::for_test()
    })
    .await;
    let reply = tight.gql(None, "{ me { id } }", json!({})).await;
    reply.assert_code("GRAPHQL_VALIDATION_FAILED");
    assert!(reply.body["errors"][0]["message"].as_str().unwrap().contains("depth"));

    let aliases = (0..31)
        .map(|i| format!("a{i}: countSessions"))
        .collect::<Vec<_>>()
        .join(" ");
    let reply = server.gql(Some(&token), &format!("{{ {aliases} }}"), json!({})).await;
    reply.assert_code("GRAPHQL_VALIDATION_FAILED");
    assert!(reply.body.get("data").is_none_or(|d| d.is_null()));

    let cheap = TestServer::start(Config {
        graphql_max_complexity: 3,
        ..Config::for_test()
    })
    .await;
    let reply = cheap.gql(None, "{ me { id username roles } }", json!({})).await;
    reply.assert_code("GRAPHQL_VALIDATION_FAILED");
    assert!(reply.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("complexity"));

    // A login guessing burst through aliases is over the alias limit too.
    let guesses = (0..40)
        .map(|i| format!("g{i}: login(input: {{username: \"x_user\", password: \"guess number {i}\"}}) {{ token }}"))
        .collect::<Vec<_>>()
        .join(" ");
    server
        .gql(None, &format!("mutation {{ {guesses} }}"), json!({}))
        .await
        .assert_code("GRAPHQL_VALIDATION_FAILED");
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn introspection_works_within_the_limits_and_can_be_turned_off() {
    let server = TestServer::start(Config::for_test()).await;
    // The shape GraphiQL and codegen send: deep `ofType` chains.
    let introspection = "query IntrospectionQuery { __schema { queryType { name } mutationType { name } types { ...FullType } } }
        fragment FullType on __Type { kind name description fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } } inputFields { ...InputValue } enumValues(includeDeprecated: true) { name } possibleTypes { ...TypeRef } }
        fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
        fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";
    let schema = server.gql(None, introspection, json!({})).await.data("__schema");
    assert_eq!(schema["queryType"]["name"], "Query");

    let closed = TestServer::start(Config {
        introspection: false,
        ..Config::for_test()
    })
    .await;
    for query in [
        "{ __schema { queryType { name } } }",
        "{ __type(name: \"User\") { name } }",
    ] {
        let reply = closed.gql(None, query, json!({})).await;
        reply.assert_code("GRAPHQL_VALIDATION_FAILED");
        assert!(reply.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("introspection"));
    }
    // No "did you mean" hints either, and __typename still works.
    let reply = closed.gql(None, "{ mee { id } }", json!({})).await;
    reply.assert_code("GRAPHQL_VALIDATION_FAILED");
    assert!(
        !reply.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Did you mean"),
        "{}",
        reply.body
    );
    assert_eq!(
        closed.gql(None, "{ __typename }", json!({})).await.data("__typename"),
        "Query"
    );
}

#[tokio::test]
async fn responses_are_not_cached() {
    let server = TestServer::start(Config::for_test()).await;
    let reply = server.gql(None, "{ __typename }", json!({})).await;
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start(Config::for_test()).await;
    let health = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // With the pool closed, the database no longer answers: not ready, but alive.
    server.state.db.clone().close().await.unwrap();
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // A request that needs the database fails cleanly, without internals.
    let reply = server
        .gql(
            None,
            "mutation { login(input: {username: \"x_y_z\", password: \"whatever pass\"}) { token } }",
            json!({}),
        )
        .await;
    reply.assert_code("INTERNAL_SERVER_ERROR");
    assert_eq!(reply.body["errors"][0]["message"], "internal server error");
}

#[tokio::test]
async fn cors_allows_configured_origins_with_credentials_only() {
    let config = Config {
        cors_origins: vec!["http://app.example.com".into()],
        ..Config::for_test()
    };
    let server = TestServer::start(config).await;
    let preflight = |origin: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("http://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://app.example.com"
    );
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    let refused = preflight("http://evil.example.com").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}
