//! Apollo's automatic persisted queries (API.md §2): unknown hashes, registration, mismatched
//! hashes, and every limit and guard applied to a document sent by hash.

use gatehouse::Config;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{Reply, TestServer};

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text))
}

fn extension(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// POSTs a persisted-query request: the hash, and the text when given.
async fn post(server: &TestServer, token: Option<&str>, query: Option<&str>, hash: &str, variables: Value) -> Reply {
    let mut body = json!({ "extensions": extension(hash), "variables": variables });
    if let Some(query) = query {
        body["query"] = json!(query);
    }
    let mut request = server.http.post(server.url("/graphql")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::from(request.send().await.unwrap()).await
}

/// GETs a hash-only persisted-query request, as Apollo's link does for queries.
async fn get_by_hash(server: &TestServer, token: &str, hash: &str) -> reqwest::Response {
    let extensions = serde_json::to_string(&extension(hash)).unwrap();
    server
        .http
        .get(server.url("/graphql"))
        .query(&[("extensions", extensions.as_str())])
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unknown_hash_asks_for_the_text_then_the_hash_alone_runs_it() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("persisted").await;
    let query = "query Me { me { id } }";
    let hash = sha256(query);

    let unknown = post(&server, Some(&token), None, &hash, json!({})).await;
    assert_eq!(unknown.status, 200);
    unknown.assert_code("PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(unknown.body["errors"][0]["message"], "PersistedQueryNotFound");

    let registered = post(&server, Some(&token), Some(query), &hash, json!({})).await;
    assert_eq!(registered.data("me")["id"], user_id.as_str());
    let by_hash = post(&server, Some(&token), None, &hash, json!({})).await;
    assert_eq!(by_hash.data("me")["id"], user_id.as_str());

    // Apollo's link sends hash-only queries over GET too.
    let response = get_by_hash(&server, &token, &hash).await;
    assert_eq!(Reply::from(response).await.data("me")["id"], user_id.as_str());
}

#[tokio::test]
async fn a_hash_that_does_not_match_the_text_is_refused() {
    let server = TestServer::start(Config::for_test()).await;
    let reply = post(
        &server,
        None,
        Some("{ me { id } }"),
        &sha256("{ me { username } }"),
        json!({}),
    )
    .await;
    assert_eq!(reply.status, 400);
    reply.assert_code("BAD_REQUEST");
    for bad in [
        json!({ "version": 2, "sha256Hash": sha256("{ me { id } }") }),
        json!({ "version": 1, "sha256Hash": "abc" }),
        json!("yes"),
    ] {
        let body = json!({ "extensions": { "persistedQuery": bad } });
        let response = server
            .http
            .post(server.url("/graphql"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let reply = Reply::from(response).await;
        assert_eq!(reply.status, 400, "{bad}");
        reply.assert_code("BAD_REQUEST");
    }
}

#[tokio::test]
async fn a_document_sent_by_hash_keeps_its_guards() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (user, _, _) = server.signup("plain").await;
    let query = "{ users { totalCount } }";
    let hash = sha256(query);
    let by_admin = post(&server, Some(&admin), Some(query), &hash, json!({})).await;
    assert!(by_admin.data("users")["totalCount"].as_u64().unwrap() >= 2);

    let by_user = post(&server, Some(&user), None, &hash, json!({})).await;
    assert_eq!(by_user.status, 200);
    assert_eq!(by_user.body["data"]["users"], Value::Null);
    by_user.assert_code("FORBIDDEN");
    let anonymous = post(&server, None, None, &hash, json!({})).await;
    anonymous.assert_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn a_document_over_the_limits_is_never_remembered_and_limits_apply_by_hash() {
    let config = Config {
        graphql_max_depth: 4,
        ..Config::for_test()
    };
    let server = TestServer::start(config).await;
    let (token, _, _) = server.signup("limited").await;
    let deep = "{ sites { edges { node { members { role } } } } }";
    let hash = sha256(deep);
    let refused = post(&server, Some(&token), Some(deep), &hash, json!({})).await;
    refused.assert_code("GRAPHQL_VALIDATION_FAILED");
    post(&server, Some(&token), None, &hash, json!({}))
        .await
        .assert_code("PERSISTED_QUERY_NOT_FOUND");

    // A costed connection registered with a small page is refused by hash with a large one.
    let page = "query($n: Int) { sites(first: $n) { edges { node { id } } } }";
    let hash = sha256(page);
    post(&server, Some(&token), Some(page), &hash, json!({ "n": 1 }))
        .await
        .data("sites");
    let complexity = Config::for_test().graphql_max_complexity;
    post(&server, Some(&token), None, &hash, json!({ "n": complexity }))
        .await
        .assert_code("GRAPHQL_VALIDATION_FAILED");

    // A mutation known by hash is still refused over GET.
    let logout = "mutation { logout }";
    let hash = sha256(logout);
    let (other, _, _) = server.signup("other").await;
    post(&server, Some(&other), Some(logout), &hash, json!({}))
        .await
        .data("logout");
    assert_eq!(get_by_hash(&server, &token, &hash).await.status(), 405);
}
