//! Document limits (API.md §2) over HTTP: what a frontend writes runs with the defaults,
//! and small documents that expand hugely are refused at once while the server keeps serving.

use std::time::{Duration, Instant};

use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{str_at, Reply, TestServer};

const GRAPHIQL_INTROSPECTION: &str = include_str!("fixtures/graphiql_introspection.graphql");
const CODEGEN_INTROSPECTION: &str = include_str!("fixtures/codegen_introspection.graphql");

/// Refusals must not depend on a document's expansion; this is far above what one takes.
const PROMPTLY: Duration = Duration::from_secs(2);

fn assert_no_errors(body: &Value) {
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
}

#[tokio::test]
async fn queries_a_frontend_writes_run_with_the_defaults() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (owner, _, _) = server.signup("owner").await;
    let (_, member_id, _) = server.signup("member").await;
    for i in 0..3 {
        let site = server
            .gql(
                Some(&owner),
                "mutation($n: String!) { createSite(input: {name: $n}) { id } }",
                json!({ "n": format!("S{i}") }),
            )
            .await
            .data("createSite");
        server
            .gql(
                Some(&owner),
                "mutation($s: UUID!, $u: UUID!) { setSiteRole(siteId: $s, userId: $u, role: USER) }",
                json!({ "s": str_at(&site, "/id"), "u": member_id }),
            )
            .await
            .data("setSiteRole");
    }

    // A page of 20 sites with each site's members and their users.
    let sites = "query($first: Int = 20) { sites(first: $first) { totalCount pageInfo { hasNextPage endCursor }
        edges { cursor node { id name description createdAt code myRoles
            members { role user { id username name roles createdAt } } } } } }";
    let reply = server.gql(Some(&owner), sites, json!({})).await;
    assert_no_errors(&reply.body);
    assert_eq!(
        reply.body["data"]["sites"]["edges"][2]["node"]["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // An admin's page of users with their memberships.
    let users = "{ users(first: 20) { totalCount pageInfo { hasNextPage endCursor }
        edges { cursor node { id username email name roles createdAt passwordChangedAt
            sites { role site { id name description createdAt myRoles } } } } } }";
    let reply = server.gql(Some(&admin), users, json!({})).await;
    assert_no_errors(&reply.body);
    assert_eq!(reply.body["data"]["users"]["totalCount"], 3);

    // Twelve levels through the schema's cycle (User -> SiteMembership -> Site -> ...).
    let cycle = "{ me { sites { site { members { user { sites { site { members { user { sites { site { name } } } } } } } } } } } }";
    let reply = server.gql(Some(&owner), cycle, json!({})).await;
    assert_no_errors(&reply.body);
    let deepest = &reply.body["data"]["me"]["sites"][0]["site"]["members"][0]["user"]["sites"][0]["site"]["members"][0]
        ["user"]["sites"][0]["site"]["name"];
    assert!(
        deepest.as_str().is_some_and(|name| name.starts_with('S')),
        "{}",
        reply.body
    );

    // The introspection queries of GraphiQL and GraphQL Code Generator, as sent.
    for query in [GRAPHIQL_INTROSPECTION, CODEGEN_INTROSPECTION] {
        let reply = server.gql(None, query, json!({})).await;
        assert_no_errors(&reply.body);
        assert_eq!(reply.body["data"]["__schema"]["queryType"]["name"], "Query");
    }
}

/// Fragments that each spread the next one twice: `levels` of them expand to 2^levels copies
/// of `leaf`.
fn fan_out(root: &str, on: &str, leaf: &str, levels: usize) -> String {
    let mut doc = format!("{{ {root} }}");
    for i in 0..levels {
        doc.push_str(&format!(" fragment F{i} on {on} {{ ...F{} ...F{} }}", i + 1, i + 1));
    }
    doc.push_str(&format!(" fragment F{levels} on {on} {{ {leaf} }}"));
    doc
}

#[tokio::test]
async fn fan_out_documents_are_refused_promptly_while_the_server_serves() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("fanout").await;
    let deep_introspection = format!(
        "{{ __schema {{ types {{ {} name {} }} }} }}",
        "fields { type { ".repeat(20),
        "} } ".repeat(20)
    );
    let documents = [
        fan_out("...F0", "Query", "__schema { __typename }", 30),
        fan_out("...F0", "Query", "__type(name: \"User\") { fields { name } }", 30),
        fan_out("me { ...F0 }", "User", "id", 30),
        // The same, in a fragment no operation uses: validation would still walk it.
        fan_out("__typename", "Query", "__schema { __typename }", 30),
        deep_introspection,
        "{ me { ...A } } fragment A on User { ...B } fragment B on User { ...A }".to_string(),
    ];
    let health = tokio::spawn({
        let http = server.http.clone();
        let url = server.url("/healthz");
        async move {
            for _ in 0..20 {
                let status = http.get(&url).send().await.unwrap().status();
                assert_eq!(status, 200);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    for document in &documents {
        assert!(document.len() < 2048, "{} bytes", document.len());
        let started = Instant::now();
        let reply = server.gql(Some(&token), document, json!({})).await;
        let elapsed = started.elapsed();
        reply.assert_code("GRAPHQL_VALIDATION_FAILED");
        assert!(reply.body["data"].is_null(), "{}", reply.body);
        assert!(elapsed < PROMPTLY, "refused after {elapsed:?}: {document}");
    }
    health.await.unwrap();
    // Twenty levels of introspection are fine, the limit is on more.
    let twenty = format!(
        "{{ __schema {{ types {{ {} name {} }} }} }}",
        "fields { type { ".repeat(8),
        "} } ".repeat(8)
    );
    assert_no_errors(&server.gql(None, &twenty, json!({})).await.body);
}

#[tokio::test]
async fn a_document_seen_before_is_checked_and_guarded_again() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (user, _, _) = server.signup("again").await;
    // Parsed once, then served from the document cache: the guard still applies per caller.
    let users = "{ users { totalCount } }";
    for _ in 0..2 {
        assert!(server.gql(Some(&admin), users, json!({})).await.data("users")["totalCount"].is_number());
        let refused = server.gql(Some(&user), users, json!({})).await;
        refused.assert_code("FORBIDDEN");
        assert_eq!(refused.body["data"]["users"], Value::Null);
    }
    // The cost of a cached document is computed again with each request's variables.
    let page = "query($n: Int) { sites(first: $n) { edges { node { id } } } }";
    server.gql(Some(&user), page, json!({ "n": 1 })).await.data("sites");
    let complexity = Config::for_test().graphql_max_complexity;
    server
        .gql(Some(&user), page, json!({ "n": complexity }))
        .await
        .assert_code("GRAPHQL_VALIDATION_FAILED");
}

#[tokio::test]
async fn a_document_is_kept_only_once_it_passed_validation_and_is_validated_against_new_variables() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("validated").await;
    // An unused variable fails validation (and no limit): kept, the document would skip that
    // rule the second time and run.
    let unused = "query($x: Int) { me { id } }";
    for _ in 0..3 {
        let reply = server.gql(Some(&token), unused, json!({})).await;
        reply.assert_code("GRAPHQL_VALIDATION_FAILED");
        assert!(reply.body["data"].is_null(), "{}", reply.body);
    }
    // Kept after its first run, and served from memory on the second; variables of the wrong
    // type are still a validation failure of the whole request, not a field error.
    let page = "query($n: Int) { sites(first: $n) { edges { node { id } } } }";
    for _ in 0..2 {
        assert!(server.gql(Some(&token), page, json!({})).await.data("sites")["edges"].is_array());
    }
    for _ in 0..2 {
        let reply = server.gql(Some(&token), page, json!({ "n": "ten" })).await;
        reply.assert_code("GRAPHQL_VALIDATION_FAILED");
        assert!(reply.body["data"].is_null(), "{}", reply.body);
    }
    assert!(server.gql(Some(&token), page, json!({ "n": 2 })).await.data("sites")["edges"].is_array());
}

/// Posts `query` with `operationName`, and no variables.
async fn post_operation(server: &TestServer, token: &str, query: &str, operation: &str) -> Reply {
    let body = json!({ "query": query, "operationName": operation });
    let response = server
        .http
        .post(server.url("/graphql"))
        .bearer_auth(token)
        .json(&body)
        .send();
    Reply::from(response.await.unwrap()).await
}

/// Sends `query` with `operationName` over GET, and no variables.
async fn get_operation(server: &TestServer, token: &str, query: &str, operation: &str) -> Reply {
    let params = [("query", query), ("operationName", operation)];
    let response = server
        .http
        .get(server.url("/graphql"))
        .query(&params)
        .bearer_auth(token)
        .send();
    Reply::from(response.await.unwrap()).await
}

#[tokio::test]
async fn a_cached_documents_limits_hold_for_each_of_its_operations() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("operations").await;
    // A document sent again without variables reuses the limits' answer for its operation:
    // another operation of the same text gets its own, with its own variables' defaults.
    let complexity = Config::for_test().graphql_max_complexity;
    let document = format!(
        "query Small {{ me {{ id }} }} \
         query Big($n: Int = {complexity}) {{ sites(first: $n) {{ edges {{ node {{ id }} }} }} }} \
         mutation Touch {{ __typename }}"
    );
    for _ in 0..3 {
        let small = post_operation(&server, &token, &document, "Small").await;
        assert_eq!(small.data("me")["id"], user_id.as_str());
        post_operation(&server, &token, &document, "Big")
            .await
            .assert_code("GRAPHQL_VALIDATION_FAILED");
    }
    // Nor does a query's answer let the document's mutation run over GET.
    assert_eq!(
        post_operation(&server, &token, &document, "Touch")
            .await
            .data("__typename"),
        "Mutation"
    );
    let reply = get_operation(&server, &token, &document, "Touch").await;
    assert_eq!(reply.status, 405, "{}", reply.body);
    // GET names the operation as the GraphQL-over-HTTP spec does, `operationName`.
    let small = get_operation(&server, &token, &document, "Small").await;
    assert_eq!(small.data("me")["id"], user_id.as_str());
}
