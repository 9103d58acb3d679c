//! `signup`: the account, its first session and cookie, input rules and uniqueness.

use gatehouse::Config;
use serde_json::json;

use crate::common::{str_at, unique, TestServer, PASSWORD};

const SIGNUP: &str = "mutation($input: SignupInput!) {
    signup(input: $input) { token expiresAt user { id username roles email name } session { id current } }
}";

#[tokio::test]
async fn signup_creates_a_user_with_role_user_and_a_live_session() {
    let server = TestServer::start(Config::for_test()).await;
    let username = unique("Alice");
    let input = json!({ "username": username, "password": PASSWORD, "email": "Alice@Example.com", "name": "Alice" });
    let reply = server.gql(None, SIGNUP, json!({ "input": input })).await;
    let payload = reply.data("signup");
    assert_eq!(payload["user"]["username"], username);
    assert_eq!(payload["user"]["roles"], json!(["user"]));
    assert_eq!(payload["user"]["email"], "Alice@Example.com");
    assert_eq!(payload["user"]["name"], "Alice");
    assert_eq!(payload["session"]["current"], true);

    let token = str_at(&payload, "/token");
    let me = server
        .gql(Some(&token), "{ me { id username } }", json!({}))
        .await
        .data("me");
    assert_eq!(me["id"], payload["user"]["id"]);
}

#[tokio::test]
async fn signup_sets_the_session_cookie() {
    let server = TestServer::start(Config::for_test()).await;
    let input = json!({ "username": unique("carol"), "password": PASSWORD });
    let reply = server.gql(None, SIGNUP, json!({ "input": input })).await;
    let token = str_at(&reply.data("signup"), "/token");
    let cookies = reply.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert!(cookie.starts_with(&format!("gatehouse_session={token};")), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(cookie.contains(attribute), "{attribute} missing in {cookie}");
    }
    let max_age: i64 = cookie
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&max_age), "{cookie}");
}

#[tokio::test]
async fn cookie_secure_false_drops_the_secure_attribute() {
    let server = TestServer::start(Config {
        cookie_secure: false,
        ..Config::for_test()
    })
    .await;
    let input = json!({ "username": unique("dave"), "password": PASSWORD });
    let reply = server.gql(None, SIGNUP, json!({ "input": input })).await;
    reply.data("signup");
    assert!(!reply.set_cookies()[0].contains("Secure"), "{:?}", reply.set_cookies());
}

#[tokio::test]
async fn signup_refuses_bad_input_naming_the_field() {
    let server = TestServer::start(Config::for_test()).await;
    let name = unique("erin");
    let cases = [
        (json!({ "username": "ab", "password": PASSWORD }), "username"),
        (json!({ "username": "has space", "password": PASSWORD }), "username"),
        (json!({ "username": "x".repeat(65), "password": PASSWORD }), "username"),
        (json!({ "username": name, "password": "short" }), "password"),
        (json!({ "username": name, "password": "p".repeat(257) }), "password"),
        (json!({ "username": name, "password": "password1" }), "password"),
        (json!({ "username": name, "password": "Iloveyou1" }), "password"),
        (json!({ "username": name, "password": name.to_uppercase() }), "password"),
        (
            json!({ "username": name, "password": PASSWORD, "email": "not-an-email" }),
            "email",
        ),
        (
            json!({ "username": name, "password": PASSWORD, "email": "a@b" }),
            "email",
        ),
    ];
    for (input, field) in cases {
        let reply = server.gql(None, SIGNUP, json!({ "input": input })).await;
        reply.assert_code("BAD_USER_INPUT");
        assert_eq!(
            reply.body["errors"][0]["extensions"]["field"], field,
            "{input}: {}",
            reply.body
        );
        assert!(reply.set_cookies().is_empty());
    }
    // Nothing was created along the way.
    let login = server
        .gql(
            None,
            "mutation($u: String!) { login(input: {username: $u, password: \"correct horse battery staple\"}) { token } }",
            json!({ "u": name }),
        )
        .await;
    login.assert_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn usernames_and_emails_are_unique_regardless_of_case() {
    let server = TestServer::start(Config::for_test()).await;
    let name = unique("Frank");
    let email = format!("{name}@example.com");
    let first = json!({ "username": name, "password": PASSWORD, "email": email });
    server.gql(None, SIGNUP, json!({ "input": first })).await.data("signup");

    let same_name = json!({ "username": name.to_lowercase(), "password": PASSWORD });
    let reply = server.gql(None, SIGNUP, json!({ "input": same_name })).await;
    reply.assert_code("CONFLICT");
    assert_eq!(reply.body["errors"][0]["extensions"]["field"], "username");

    let same_email = json!({ "username": unique("other"), "password": PASSWORD, "email": email.to_uppercase() });
    let reply = server.gql(None, SIGNUP, json!({ "input": same_email })).await;
    reply.assert_code("CONFLICT");
    assert_eq!(reply.body["errors"][0]["extensions"]["field"], "email");
}

#[tokio::test]
async fn racing_signups_of_one_name_give_one_success_and_conflicts() {
    let server = TestServer::start(Config::for_test()).await;
    let name = unique("racer");
    let attempts = (0..8).map(|i| {
        let name = if i % 2 == 0 { name.clone() } else { name.to_uppercase() };
        let input = json!({ "username": name, "password": PASSWORD });
        let server = &server;
        async move { server.gql(None, SIGNUP, json!({ "input": input })).await }
    });
    let replies = futures::future::join_all(attempts).await;
    let successes = replies.iter().filter(|r| r.body.get("errors").is_none()).count();
    assert_eq!(
        successes,
        1,
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for reply in replies.iter().filter(|r| r.body.get("errors").is_some()) {
        assert_eq!(reply.status, 200);
        reply.assert_code("CONFLICT");
    }
}

#[tokio::test]
async fn a_signed_in_user_may_sign_up_another_account() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("gina").await;
    let input = json!({ "username": unique("hank"), "password": PASSWORD });
    let payload = server
        .gql(Some(&token), SIGNUP, json!({ "input": input }))
        .await
        .data("signup");
    assert_eq!(payload["user"]["roles"], json!(["user"]));
}
