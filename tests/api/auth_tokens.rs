//! Identity on a request (API.md §3): bearer or cookie, and every way a token can be bad.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::TestServer;

const ME: &str = "{ me { id } }";

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn token_carries_the_contract_claims() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("claims").await;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(decode_part(parts[0])["alg"], "HS256");
    let claims = decode_part(parts[1]);
    assert_eq!(claims["sub"], user_id.as_str());
    assert!(claims["sid"].is_string() && claims["iat"].is_i64() && claims["exp"].is_i64());
    let hasura = &claims["https://hasura.io/jwt/claims"];
    assert_eq!(hasura["x-hasura-user-id"], user_id.as_str());
    assert_eq!(hasura["x-hasura-default-role"], "user");
    assert_eq!(hasura["x-hasura-allowed-roles"], json!(["user"]));
}

#[tokio::test]
async fn the_session_cookie_identifies_the_caller() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("cookie").await;
    let me = server.gql_with_cookie(&token, ME, json!({})).await.data("me");
    assert_eq!(me["id"], user_id.as_str());
}

#[tokio::test]
async fn the_header_wins_over_the_cookie() {
    let server = TestServer::start(Config::for_test()).await;
    let (header_token, header_user, _) = server.signup("header").await;
    let (cookie_token, _, _) = server.signup("cookie").await;
    let request = |bearer: String, cookie: String| {
        server
            .http
            .post(server.url("/graphql"))
            .bearer_auth(bearer)
            .header("cookie", format!("gatehouse_session={cookie}"))
            .json(&json!({ "query": ME }))
            .send()
    };
    let reply = crate::common::Reply::from(request(header_token.clone(), cookie_token.clone()).await.unwrap()).await;
    assert_eq!(reply.data("me")["id"], header_user.as_str());

    // A bad header is refused even with a good cookie, and the cookie is left alone.
    let reply = crate::common::Reply::from(request("garbage".into(), cookie_token).await.unwrap()).await;
    reply.assert_unauthorized();
    assert!(reply.set_cookies().is_empty());
}

#[tokio::test]
async fn malformed_tokens_are_refused_before_execution() {
    let server = TestServer::start(Config::for_test()).await;
    for token in ["garbage", "a.b.c", ""] {
        let reply = server.gql(Some(token), "mutation { signup(input: {username: \"zed_x\", password: \"correct horse battery staple\"}) { token } }", json!({})).await;
        reply.assert_unauthorized();
    }
    // Nothing ran: the signup above did not happen.
    let reply = server
        .gql(
            None,
            "mutation { login(input: {username: \"zed_x\", password: \"correct horse battery staple\"}) { token } }",
            json!({}),
        )
        .await;
    reply.assert_code("UNAUTHENTICATED");
    assert_eq!(reply.status, 200);

    // An Authorization header that is not a bearer token is a bad credential too.
    let response = server
        .http
        .post(server.url("/graphql"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({ "query": ME }))
        .send()
        .await
        .unwrap();
    crate::common::Reply::from(response).await.assert_unauthorized();
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("forge").await;
    let parts: Vec<&str> = token.split('.').collect();
    let claims = decode_part(parts[1]);

    // Signed with another secret.
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-some-other-secret"),
    )
    .unwrap();
    // `alg: none` with no signature.
    let none = format!("{}.{}.", encode_part(&json!({ "alg": "none", "typ": "JWT" })), parts[1]);
    // The payload changed under the original signature (roles raised).
    let mut raised = claims.clone();
    raised["https://hasura.io/jwt/claims"]["x-hasura-allowed-roles"] = json!(["user", "admin"]);
    let tampered = format!("{}.{}.{}", parts[0], encode_part(&raised), parts[2]);
    // A correctly signed token whose session secret was swapped: the database hash must match.
    let mut swapped = claims.clone();
    swapped["sk"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let wrong_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &swapped,
        &jsonwebtoken::EncodingKey::from_secret(server.state.config.jwt_secret.as_ref().unwrap().as_bytes()),
    )
    .unwrap();

    for forged in [wrong_key, none, tampered, wrong_secret] {
        server.gql(Some(&forged), ME, json!({})).await.assert_unauthorized();
    }
    // The genuine token still works.
    assert!(server.gql(Some(&token), ME, json!({})).await.data("me")["id"].is_string());
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let server = TestServer::start(Config {
        session_ttl: 2,
        ..Config::for_test()
    })
    .await;
    let (token, _, _) = server.signup("expiring").await;
    assert!(server.gql(Some(&token), ME, json!({})).await.data("me")["id"].is_string());
    server.state.clock.advance(3);
    server.gql(Some(&token), ME, json!({})).await.assert_unauthorized();
}

#[tokio::test]
async fn a_bad_cookie_is_refused_and_cleared() {
    let server = TestServer::start(Config {
        session_ttl: 2,
        ..Config::for_test()
    })
    .await;
    let (token, _, _) = server.signup("stale").await;
    server.state.clock.advance(3);
    let reply = server.gql_with_cookie(&token, ME, json!({})).await;
    reply.assert_unauthorized();
    let cleared = reply.set_cookies();
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert!(
        cleared[0].starts_with("gatehouse_session=;") && cleared[0].contains("Max-Age=0"),
        "{cleared:?}"
    );

    let reply = server.gql_with_cookie("not-a-token", ME, json!({})).await;
    reply.assert_unauthorized();
    assert!(reply.set_cookies()[0].contains("Max-Age=0"));
}

#[tokio::test]
async fn graphql_response_json_clients_get_401_too() {
    let server = TestServer::start(Config::for_test()).await;
    let response = server
        .http
        .post(server.url("/graphql"))
        .bearer_auth("garbage")
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": ME }))
        .send()
        .await
        .unwrap();
    let reply = crate::common::Reply::from(response).await;
    reply.assert_unauthorized();
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("application/graphql-response+json"));
}
