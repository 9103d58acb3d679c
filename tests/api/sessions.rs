//! The caller's sessions: count, list, logout, closeSession, closeAllSessions.

use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{str_at, TestServer, PASSWORD};

const LOGIN: &str =
    "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token session { id } } }";
const ME: &str = "{ me { id } }";

/// Signs up, then logs in `extra` more times; returns the tokens and session ids, oldest first.
async fn user_with_sessions(server: &TestServer, extra: usize) -> (Vec<String>, Vec<String>) {
    let (token, _, username) = server.signup("sess").await;
    let sessions = server
        .gql(Some(&token), "{ sessions { id } }", json!({}))
        .await
        .data("sessions");
    let mut tokens = vec![token];
    let mut ids = vec![str_at(&sessions, "/0/id")];
    for _ in 0..extra {
        server.state.clock.advance(1);
        let login = server
            .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
            .await
            .data("login");
        tokens.push(str_at(&login, "/token"));
        ids.push(str_at(&login, "/session/id"));
    }
    (tokens, ids)
}

#[tokio::test]
async fn sessions_are_listed_newest_first_with_client_details() {
    let server = TestServer::start(Config::for_test()).await;
    let (tokens, ids) = user_with_sessions(&server, 2).await;
    let query = "{ countSessions sessions { id createdAt expiresAt lastSeenAt userAgent ip current } }";
    let response = server
        .http
        .post(server.url("/graphql"))
        .bearer_auth(&tokens[1])
        .header("user-agent", "sessions-test/1.0")
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    let reply = crate::common::Reply::from(response).await;
    assert_eq!(reply.data("countSessions"), 3);
    let sessions = reply.data("sessions");
    let listed: Vec<String> = sessions.as_array().unwrap().iter().map(|s| str_at(s, "/id")).collect();
    assert_eq!(listed, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let current: Vec<bool> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["current"].as_bool().unwrap())
        .collect();
    assert_eq!(current, vec![false, true, false]);
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    assert!(
        sessions[0]["userAgent"].is_null(),
        "reqwest sends no user agent by default"
    );
    assert!(sessions[0]["lastSeenAt"].is_string() && sessions[0]["expiresAt"].is_string());
}

#[tokio::test]
async fn sessions_record_the_user_agent_and_last_seen_time() {
    let server = TestServer::start(Config::for_test()).await;
    let signup = "mutation { signup(input: {username: \"ua_user_1\", password: \"correct horse battery staple\"}) { token session { createdAt lastSeenAt } } }";
    let response = server
        .http
        .post(server.url("/graphql"))
        .header("user-agent", "Mozilla/5.0 (test)")
        .json(&json!({ "query": signup }))
        .send()
        .await
        .unwrap();
    let payload = crate::common::Reply::from(response).await.data("signup");
    let token = str_at(&payload, "/token");

    server.state.clock.advance(120);
    server.gql(Some(&token), ME, json!({})).await.data("me");
    let sessions = server
        .gql(
            Some(&token),
            "{ sessions { userAgent createdAt lastSeenAt } }",
            json!({}),
        )
        .await;
    let session = &sessions.data("sessions")[0];
    assert_eq!(session["userAgent"], "Mozilla/5.0 (test)");
    let created = chrono::DateTime::parse_from_rfc3339(&str_at(session, "/createdAt")).unwrap();
    let seen = chrono::DateTime::parse_from_rfc3339(&str_at(session, "/lastSeenAt")).unwrap();
    assert!(seen - created >= chrono::Duration::seconds(120), "{session}");
}

#[tokio::test]
async fn logout_closes_the_session_and_clears_the_cookie() {
    let server = TestServer::start(Config::for_test()).await;
    let (tokens, _) = user_with_sessions(&server, 1).await;
    let reply = server.gql(Some(&tokens[1]), "mutation { logout }", json!({})).await;
    assert_eq!(reply.data("logout"), true);
    assert!(
        reply.set_cookies()[0].contains("Max-Age=0"),
        "{:?}",
        reply.set_cookies()
    );
    server.gql(Some(&tokens[1]), ME, json!({})).await.assert_unauthorized();
    // The other session lives on.
    assert_eq!(
        server
            .gql(Some(&tokens[0]), "{ countSessions }", json!({}))
            .await
            .data("countSessions"),
        1
    );
}

#[tokio::test]
async fn logout_by_cookie_clears_the_cookie() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("cookie_out").await;
    let reply = server.gql_with_cookie(&token, "mutation { logout }", json!({})).await;
    assert_eq!(reply.data("logout"), true);
    assert!(reply.set_cookies()[0].starts_with("gatehouse_session=;"));
    server
        .gql_with_cookie(&token, ME, json!({}))
        .await
        .assert_unauthorized();
}

#[tokio::test]
async fn close_all_sessions_ends_every_session_of_the_caller() {
    let server = TestServer::start(Config::for_test()).await;
    let (tokens, _) = user_with_sessions(&server, 2).await;
    let (other, _, _) = server.signup("bystander").await;
    let reply = server
        .gql(Some(&tokens[0]), "mutation { closeAllSessions }", json!({}))
        .await;
    assert_eq!(reply.data("closeAllSessions"), 3);
    assert!(reply.set_cookies()[0].contains("Max-Age=0"));
    for token in &tokens {
        server.gql(Some(token), ME, json!({})).await.assert_unauthorized();
    }
    assert!(server.gql(Some(&other), ME, json!({})).await.data("me")["id"].is_string());
}

#[tokio::test]
async fn close_session_ends_one_of_the_callers_sessions() {
    let server = TestServer::start(Config::for_test()).await;
    let (tokens, ids) = user_with_sessions(&server, 1).await;
    let close = "mutation($id: UUID!) { closeSession(id: $id) }";

    // Another session: closed, no cookie change for this one.
    let reply = server.gql(Some(&tokens[1]), close, json!({ "id": ids[0] })).await;
    assert_eq!(reply.data("closeSession"), true);
    assert!(reply.set_cookies().is_empty());
    server.gql(Some(&tokens[0]), ME, json!({})).await.assert_unauthorized();
    assert!(server.gql(Some(&tokens[1]), ME, json!({})).await.data("me")["id"].is_string());

    // Closing it again, or a session that does not exist: NOT_FOUND.
    server
        .gql(Some(&tokens[1]), close, json!({ "id": ids[0] }))
        .await
        .assert_code("NOT_FOUND");
    server
        .gql(Some(&tokens[1]), close, json!({ "id": uuid::Uuid::new_v4() }))
        .await
        .assert_code("NOT_FOUND");

    // The current session: closed and the cookie cleared.
    let reply = server.gql(Some(&tokens[1]), close, json!({ "id": ids[1] })).await;
    assert_eq!(reply.data("closeSession"), true);
    assert!(reply.set_cookies()[0].contains("Max-Age=0"));
    server.gql(Some(&tokens[1]), ME, json!({})).await.assert_unauthorized();
}

#[tokio::test]
async fn someone_elses_session_is_not_found_and_stays_open() {
    let server = TestServer::start(Config::for_test()).await;
    let (victim_tokens, victim_ids) = user_with_sessions(&server, 0).await;
    let (attacker, _, _) = server.signup("attacker").await;
    let reply = server
        .gql(
            Some(&attacker),
            "mutation($id: UUID!) { closeSession(id: $id) }",
            json!({ "id": victim_ids[0] }),
        )
        .await;
    reply.assert_code("NOT_FOUND");
    assert!(server.gql(Some(&victim_tokens[0]), ME, json!({})).await.data("me")["id"].is_string());
}

#[tokio::test]
async fn session_operations_need_a_signed_in_user() {
    let server = TestServer::start(Config::for_test()).await;
    for query in [
        "{ countSessions }",
        "{ sessions { id } }",
        "mutation { logout }",
        "mutation { closeAllSessions }",
        "mutation { closeSession(id: \"6f1c8a52-8f0e-4d5e-9a4b-2f3c1d0e9b7a\") }",
    ] {
        let reply = server.gql(None, query, json!({})).await;
        assert_eq!(reply.status, 200);
        reply.assert_code("UNAUTHENTICATED");
        assert_eq!(reply.body["data"], Value::Null, "{query}: {}", reply.body);
    }
}

#[tokio::test]
async fn expired_sessions_are_not_counted_or_listed() {
    let server = TestServer::start(Config {
        session_ttl: 100,
        ..Config::for_test()
    })
    .await;
    let (token, _, username) = server.signup("expiry").await;
    server.state.clock.advance(60);
    let login = server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .data("login");
    let fresh = str_at(&login, "/token");
    server.state.clock.advance(50);
    // The first session is past its 100 s; the second is 50 s old.
    server.gql(Some(&token), ME, json!({})).await.assert_unauthorized();
    assert_eq!(
        server
            .gql(Some(&fresh), "{ countSessions }", json!({}))
            .await
            .data("countSessions"),
        1
    );
    assert_eq!(
        server
            .gql(Some(&fresh), "{ sessions { id } }", json!({}))
            .await
            .data("sessions")
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
