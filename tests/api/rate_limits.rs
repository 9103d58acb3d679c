//! Anti-automation (API.md §7 `RATE_LIMITED`): failed logins per username and per address in
//! a sliding window, shared by every instance on the database; signups and resets per address.

use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{unique, Reply, TestServer, PASSWORD};

const LOGIN: &str = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }";

async fn login(server: &TestServer, username: &str, password: &str) -> Reply {
    server.gql(None, LOGIN, json!({ "u": username, "p": password })).await
}

/// A login sent through a trusted proxy on behalf of `client`.
async fn login_from(server: &TestServer, client: &str, username: &str, password: &str) -> Reply {
    let request = server
        .http
        .post(server.url("/graphql"))
        .header("x-forwarded-for", client)
        .json(&json!({ "query": LOGIN, "variables": { "u": username, "p": password } }));
    Reply::from(request.send().await.unwrap()).await
}

fn retry_after(reply: &Reply) -> u64 {
    reply.assert_code("RATE_LIMITED");
    let seconds = reply.body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfter in {}", reply.body));
    assert!(seconds >= 1, "{}", reply.body);
    seconds
}

#[tokio::test]
async fn aliased_login_guesses_stop_at_the_username_limit() {
    // Raised so that one document can carry the whole burst: each alias is still one attempt.
    let config = Config {
        graphql_max_credential_operations: 15,
        ..Config::for_test()
    };
    let server = TestServer::start(config).await;
    let (_, _, username) = server.signup("target").await;
    let guesses = (0..15)
        .map(|i| {
            format!("g{i}: login(input: {{username: \"{username}\", password: \"guess number {i}\"}}) {{ token }}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let hashes_before = server.state.passwords.runs();
    let reply = server.gql(None, &format!("mutation {{ {guesses} }}"), json!({})).await;

    let errors = reply.body["errors"].as_array().expect("errors").clone();
    assert_eq!(errors.len(), 15, "{}", reply.body);
    for (i, error) in errors.iter().enumerate() {
        assert_eq!(error["path"][0], format!("g{i}"), "aliases run in order");
        let code = &error["extensions"]["code"];
        if i < 10 {
            assert_eq!(code, "UNAUTHENTICATED", "{error}");
        } else {
            assert_eq!(code, "RATE_LIMITED", "{error}");
            let seconds = error["extensions"]["retryAfter"].as_u64().unwrap();
            assert!((1..=900).contains(&seconds), "{error}");
        }
    }
    // Refused attempts cost no password hashing.
    assert_eq!(server.state.passwords.runs() - hashes_before, 10);

    // The right password is refused too, in any case of the username, without hashing.
    let right = login(&server, &username.to_uppercase(), PASSWORD).await;
    let wait = retry_after(&right);
    assert!(wait <= 900);
    assert_eq!(server.state.passwords.runs() - hashes_before, 10);

    // Once the window has slid past the oldest failure, the right password works.
    server.state.clock.advance(wait as i64);
    assert!(login(&server, &username, PASSWORD).await.data("login")["token"].is_string());
}

#[tokio::test]
async fn one_credential_operation_per_document_by_default() {
    let server = TestServer::start(Config::for_test()).await;
    let (_, _, username) = server.signup("double").await;
    let doc = format!(
        "mutation {{ a: login(input: {{username: \"{username}\", password: \"wrong guess 1\"}}) {{ token }}
                     b: login(input: {{username: \"{username}\", password: \"{PASSWORD}\"}}) {{ token }} }}"
    );
    let hashes_before = server.state.passwords.runs();
    let reply = server.gql(None, &doc, json!({})).await;
    reply.assert_code("GRAPHQL_VALIDATION_FAILED");
    assert!(reply.body.get("data").is_none_or(Value::is_null), "{}", reply.body);
    assert_eq!(server.state.passwords.runs(), hashes_before, "nothing ran");

    // Through a fragment, and mixing operations, too.
    let doc = format!(
        "mutation {{ ...F signup(input: {{username: \"{}\", password: \"{PASSWORD}\"}}) {{ token }} }}
         fragment F on Mutation {{ login(input: {{username: \"{username}\", password: \"{PASSWORD}\"}}) {{ token }} }}",
        unique("other")
    );
    server
        .gql(None, &doc, json!({}))
        .await
        .assert_code("GRAPHQL_VALIDATION_FAILED");
    // One of them alone runs.
    assert!(login(&server, &username, PASSWORD).await.data("login")["token"].is_string());
}

#[tokio::test]
async fn a_success_does_not_erase_earlier_failures() {
    let server = TestServer::start(Config {
        rate_limit_login_user: 3,
        ..Config::for_test()
    })
    .await;
    let (_, _, username) = server.signup("mixed").await;
    login(&server, &username, "wrong guess 1")
        .await
        .assert_code("UNAUTHENTICATED");
    login(&server, &username, "wrong guess 2")
        .await
        .assert_code("UNAUTHENTICATED");
    assert!(login(&server, &username, PASSWORD).await.data("login")["token"].is_string());
    login(&server, &username, "wrong guess 3")
        .await
        .assert_code("UNAUTHENTICATED");
    retry_after(&login(&server, &username, "wrong guess 4").await);
    // Refusals are not counted: after the window, three fresh failures fit again.
    server.state.clock.advance(901);
    for i in 0..3 {
        login(&server, &username, &format!("late guess {i}"))
            .await
            .assert_code("UNAUTHENTICATED");
    }
    retry_after(&login(&server, &username, PASSWORD).await);
}

#[tokio::test]
async fn failures_are_limited_per_client_address() {
    let server = TestServer::start(Config {
        rate_limit_login_ip: 3,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Config::for_test()
    })
    .await;
    let (_, _, username) = server.signup("victim").await;
    // Three different names from one address: then that address is refused for any name.
    for i in 0..3 {
        login_from(&server, "198.51.100.7", &unique(&format!("spray{i}")), "Password123!")
            .await
            .assert_code("UNAUTHENTICATED");
    }
    retry_after(&login_from(&server, "198.51.100.7", &unique("spray"), "Password123!").await);
    retry_after(&login_from(&server, "198.51.100.7", &username, PASSWORD).await);
    // Another address is not affected.
    let other = login_from(&server, "198.51.100.8", &username, PASSWORD).await;
    assert!(other.data("login")["token"].is_string());
}

#[tokio::test]
async fn the_limit_holds_across_instances_sharing_the_database() {
    let config = Config {
        rate_limit_login_user: 3,
        ..Config::for_test()
    };
    let first = TestServer::start(config.clone()).await;
    let second = first.start_sharing(config).await;
    let (_, _, username) = first.signup("shared").await;
    login(&first, &username, "wrong guess 1")
        .await
        .assert_code("UNAUTHENTICATED");
    login(&second, &username, "wrong guess 2")
        .await
        .assert_code("UNAUTHENTICATED");
    login(&first, &username, "wrong guess 3")
        .await
        .assert_code("UNAUTHENTICATED");
    retry_after(&login(&second, &username, PASSWORD).await);
    retry_after(&login(&first, &username, PASSWORD).await);
}

#[tokio::test]
async fn signups_and_resets_are_limited_per_address() {
    let server = TestServer::start_with_outbox(Config {
        rate_limit_signup_ip: 2,
        rate_limit_reset_ip: 3,
        ..Config::for_test()
    })
    .await;
    let (_, _, username) = server.signup("first").await;
    // Every signup counts, the successful ones included.
    server.signup("second").await;
    let hashes_before = server.state.passwords.runs();
    let third = server
        .gql(
            None,
            "mutation($u: String!, $p: String!) { signup(input: {username: $u, password: $p}) { token } }",
            json!({ "u": unique("third"), "p": PASSWORD }),
        )
        .await;
    retry_after(&third);
    assert_eq!(server.state.passwords.runs(), hashes_before, "no hashing when refused");

    let request = "mutation($u: String) { requestPasswordReset(input: {username: $u}) }";
    let reset =
        "mutation($t: String!) { resetPassword(input: {token: $t, newPassword: \"a brand new password\"}) { token } }";
    for _ in 0..2 {
        let reply = server.gql(None, request, json!({ "u": username })).await;
        assert_eq!(reply.data("requestPasswordReset"), true);
    }
    // A guessed reset token fails, and counts.
    server
        .gql(None, reset, json!({ "t": "guessed-token" }))
        .await
        .assert_code("BAD_USER_INPUT");
    retry_after(&server.gql(None, request, json!({ "u": username })).await);
    retry_after(&server.gql(None, reset, json!({ "t": "another-guess" })).await);

    server.state.clock.advance(901);
    let reply = server.gql(None, request, json!({ "u": unique("nobody") })).await;
    assert_eq!(reply.data("requestPasswordReset"), true);
    let (token, _, _) = server.signup("later").await;
    assert!(!token.is_empty());
}

#[tokio::test]
async fn wrong_current_passwords_count_as_failed_logins() {
    let server = TestServer::start(Config {
        rate_limit_login_user: 2,
        ..Config::for_test()
    })
    .await;
    let (token, _, username) = server.signup("changer").await;
    let change = "mutation($c: String!) { changePassword(input: {currentPassword: $c, newPassword: \"a brand new password\"}) { token } }";
    for guess in ["wrong guess 1", "wrong guess 2"] {
        server
            .gql(Some(&token), change, json!({ "c": guess }))
            .await
            .assert_code("BAD_USER_INPUT");
    }
    retry_after(&server.gql(Some(&token), change, json!({ "c": PASSWORD })).await);
    retry_after(&login(&server, &username, PASSWORD).await);
}

#[tokio::test]
async fn email_conflicts_count_against_the_address() {
    let server = TestServer::start(Config {
        rate_limit_signup_ip: 3,
        ..Config::for_test()
    })
    .await;
    let signup = "mutation($u: String!, $e: String) { signup(input: {username: $u, password: \"correct horse battery staple\", email: $e}) { token } }";
    let taken: Vec<String> = (0..2)
        .map(|i| format!("{}@example.com", unique(&format!("taken{i}"))))
        .collect();
    for email in &taken {
        server
            .gql(None, signup, json!({ "u": unique("owner"), "e": email }))
            .await
            .data("signup");
    }
    let (token, _, _) = server.signup("prober").await;
    // The signups leave the window; the address starts afresh.
    server.state.clock.advance(901);

    // One document, many aliases: the first conflicts are told, then the address is refused,
    // even for an address that is free.
    let free = format!("{}@example.com", unique("free"));
    let probes = [&taken[0], &taken[1], &taken[0], &taken[1], &taken[0], &free];
    let aliases = probes
        .iter()
        .enumerate()
        .map(|(i, email)| {
            format!("p{i}: updateProfile(input: {{email: \"{email}\", currentPassword: \"{PASSWORD}\"}}) {{ email }}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let reply = server
        .gql(Some(&token), &format!("mutation {{ {aliases} }}"), json!({}))
        .await;
    let codes: Vec<&str> = reply.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["extensions"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "CONFLICT",
            "CONFLICT",
            "CONFLICT",
            "RATE_LIMITED",
            "RATE_LIMITED",
            "RATE_LIMITED"
        ],
        "{}",
        reply.body
    );
    // A successful change does not count.
    server.state.clock.advance(901);
    let update = "mutation($e: String!) { updateProfile(input: {email: $e, currentPassword: \"correct horse battery staple\"}) { email } }";
    for i in 0..4 {
        let email = format!("{}@example.com", unique(&format!("mine{i}")));
        server
            .gql(Some(&token), update, json!({ "e": email }))
            .await
            .data("updateProfile");
    }
}

const LOGIN_IP: &str =
    "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { session { ip } } }";

/// The client address a login through the trusted proxy records on its session.
async fn recorded_address(server: &TestServer, forwarded: &str, username: &str) -> String {
    let request = server
        .http
        .post(server.url("/graphql"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({ "query": LOGIN_IP, "variables": { "u": username, "p": PASSWORD } }));
    let reply = Reply::from(request.send().await.unwrap()).await;
    crate::common::str_at(&reply.data("login"), "/session/ip")
}

#[tokio::test]
async fn a_forwarded_entry_that_is_not_an_address_ends_the_walk() {
    let server = TestServer::start(Config {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Config::for_test()
    })
    .await;
    let (_, _, username) = server.signup("walker").await;
    assert_eq!(
        recorded_address(&server, "198.51.100.7, 127.0.0.1", &username).await,
        "198.51.100.7"
    );
    // What lies left of an entry that is not an address was not vouched for by a proxy.
    for forwarded in [
        "198.51.100.7, not-an-address",
        "198.51.100.7, unknown, 127.0.0.1",
        "198.51.100.7,",
    ] {
        assert_eq!(
            recorded_address(&server, forwarded, &username).await,
            "127.0.0.1",
            "{forwarded}"
        );
    }
}

#[tokio::test]
async fn ipv6_clients_are_limited_per_64() {
    let server = TestServer::start(Config {
        rate_limit_login_ip: 2,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Config::for_test()
    })
    .await;
    let (_, _, username) = server.signup("v6").await;
    for client in ["2001:db8:0:1::1", "2001:db8:0:1:ffff::2"] {
        login_from(&server, client, &unique("spray"), "Password123!")
            .await
            .assert_code("UNAUTHENTICATED");
    }
    // Another address in the same /64 is the same client.
    retry_after(&login_from(&server, "2001:db8:0:1:abcd::3", &username, PASSWORD).await);
    // The next /64 is another one; IPv4 stays per address.
    assert!(login_from(&server, "2001:db8:0:2::1", &username, PASSWORD)
        .await
        .data("login")["token"]
        .is_string());
    for client in ["198.51.100.1", "198.51.100.1"] {
        login_from(&server, client, &unique("spray"), "Password123!")
            .await
            .assert_code("UNAUTHENTICATED");
    }
    assert!(login_from(&server, "198.51.100.2", &username, PASSWORD)
        .await
        .data("login")["token"]
        .is_string());
}
