//! The caller's own account: changePassword and updateProfile.

use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{str_at, unique, TestServer, PASSWORD};

const CHANGE: &str = "mutation($c: String!, $n: String!) {
    changePassword(input: {currentPassword: $c, newPassword: $n}) { token user { passwordChangedAt } session { current } }
}";
const LOGIN: &str = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }";
const UPDATE: &str = "mutation($input: UpdateProfileInput!) {
    updateProfile(input: $input) { name email timeZone language theme settings }
}";

fn field(reply: &crate::common::Reply) -> Value {
    reply.body["errors"][0]["extensions"]["field"].clone()
}

#[tokio::test]
async fn change_password_closes_every_session_and_returns_a_new_one() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, username) = server.signup("changer").await;
    let other = str_at(
        &server
            .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
            .await
            .data("login"),
        "/token",
    );
    let before = server
        .gql(Some(&token), "{ me { passwordChangedAt } }", json!({}))
        .await
        .data("me");
    server.state.clock.advance(5);

    let new_password = "a brand new passphrase";
    let reply = server
        .gql(Some(&token), CHANGE, json!({ "c": PASSWORD, "n": new_password }))
        .await;
    let payload = reply.data("changePassword");
    assert_eq!(payload["session"]["current"], true);
    assert!(reply.set_cookies()[0].starts_with("gatehouse_session=ey"));
    assert_ne!(payload["user"]["passwordChangedAt"], before["passwordChangedAt"]);

    for old in [&token, &other] {
        server
            .gql(Some(old), "{ me { id } }", json!({}))
            .await
            .assert_unauthorized();
    }
    let fresh = str_at(&payload, "/token");
    assert_eq!(
        server
            .gql(Some(&fresh), "{ countSessions }", json!({}))
            .await
            .data("countSessions"),
        1
    );
    server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .assert_code("UNAUTHENTICATED");
    server
        .gql(None, LOGIN, json!({ "u": username, "p": new_password }))
        .await
        .data("login");
}

#[tokio::test]
async fn change_password_refusals_name_the_field() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, username) = server.signup("careful").await;
    let wrong = server
        .gql(
            Some(&token),
            CHANGE,
            json!({ "c": "not my password", "n": "a brand new passphrase" }),
        )
        .await;
    wrong.assert_code("BAD_USER_INPUT");
    assert_eq!(field(&wrong), "currentPassword");
    for weak in ["short", "password123", username.as_str()] {
        let reply = server
            .gql(Some(&token), CHANGE, json!({ "c": PASSWORD, "n": weak }))
            .await;
        reply.assert_code("BAD_USER_INPUT");
        assert_eq!(field(&reply), "newPassword", "{weak}");
    }
    // Nothing changed.
    assert!(server
        .gql(Some(&token), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());
    server
        .gql(None, CHANGE, json!({ "c": PASSWORD, "n": "a brand new passphrase" }))
        .await
        .assert_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn update_profile_sets_keeps_and_clears_fields() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("profiled").await;
    let email = format!("{}@example.com", unique("p"));
    let all = json!({ "name": "Zoë", "email": email, "timeZone": "Europe/Paris", "language": "pt-BR",
        "theme": "dark", "settings": { "sidebar": false, "pinned": [1, 2] }, "currentPassword": PASSWORD });
    let updated = server
        .gql(Some(&token), UPDATE, json!({ "input": all }))
        .await
        .data("updateProfile");
    assert_eq!(
        updated,
        json!({ "name": "Zoë", "email": email, "timeZone": "Europe/Paris", "language": "pt-BR",
        "theme": "dark", "settings": { "sidebar": false, "pinned": [1, 2] } })
    );

    // Omitted fields stay; null clears.
    let partial = server
        .gql(
            Some(&token),
            UPDATE,
            json!({ "input": { "theme": null, "name": "Zoe" } }),
        )
        .await;
    let partial = partial.data("updateProfile");
    assert_eq!(partial["name"], "Zoe");
    assert_eq!(partial["theme"], Value::Null);
    assert_eq!(partial["timeZone"], "Europe/Paris");
    let me = server
        .gql(Some(&token), "{ me { name theme language settings } }", json!({}))
        .await
        .data("me");
    assert_eq!(me["language"], "pt-BR");
    assert_eq!(me["settings"]["pinned"], json!([1, 2]));
}

#[tokio::test]
async fn update_profile_validates_each_field() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("validated").await;
    let taken = format!("{}@example.com", unique("taken"));
    let signup = "mutation($u: String!, $e: String) { signup(input: {username: $u, password: \"correct horse battery staple\", email: $e}) { token } }";
    server
        .gql(None, signup, json!({ "u": unique("owner"), "e": taken }))
        .await
        .data("signup");

    let cases = [
        (json!({ "timeZone": "Mars/Olympus" }), "timeZone", "BAD_USER_INPUT"),
        (json!({ "language": "not a tag" }), "language", "BAD_USER_INPUT"),
        (json!({ "theme": "" }), "theme", "BAD_USER_INPUT"),
        (json!({ "name": "x".repeat(201) }), "name", "BAD_USER_INPUT"),
        (json!({ "email": "nope" }), "email", "BAD_USER_INPUT"),
        (
            json!({ "settings": { "blob": "x".repeat(17 * 1024) } }),
            "settings",
            "BAD_USER_INPUT",
        ),
        (
            json!({ "email": taken.to_uppercase(), "currentPassword": PASSWORD }),
            "email",
            "CONFLICT",
        ),
    ];
    for (input, expected_field, code) in cases {
        let reply = server.gql(Some(&token), UPDATE, json!({ "input": input })).await;
        reply.assert_code(code);
        assert_eq!(field(&reply), expected_field);
    }
    let me = server
        .gql(Some(&token), "{ me { email timeZone theme settings } }", json!({}))
        .await
        .data("me");
    assert_eq!(
        me,
        json!({ "email": null, "timeZone": null, "theme": null, "settings": null })
    );
    server
        .gql(None, UPDATE, json!({ "input": { "name": "x" } }))
        .await
        .assert_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn a_new_email_needs_the_current_password_and_is_told_to_the_old_address() {
    let server = TestServer::start_with_outbox(Config {
        rate_limit_login_user: 2,
        ..Config::for_test()
    })
    .await;
    let username = unique("mover");
    let old_email = format!("{username}@example.com");
    let signup = "mutation($u: String!, $e: String) { signup(input: {username: $u, password: \"correct horse battery staple\", email: $e}) { token } }";
    let token = str_at(
        &server
            .gql(None, signup, json!({ "u": username, "e": old_email }))
            .await
            .data("signup"),
        "/token",
    );
    let new_email = format!("{}@example.com", unique("moved"));

    // Missing and wrong are both refused on currentPassword, and both count as failed logins.
    for input in [
        json!({ "email": new_email }),
        json!({ "email": null, "currentPassword": "not the password" }),
    ] {
        let reply = server.gql(Some(&token), UPDATE, json!({ "input": input })).await;
        reply.assert_code("BAD_USER_INPUT");
        assert_eq!(field(&reply), "currentPassword");
    }
    let limited = server
        .gql(
            Some(&token),
            UPDATE,
            json!({ "input": { "email": new_email, "currentPassword": PASSWORD } }),
        )
        .await;
    limited.assert_code("RATE_LIMITED");
    server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .assert_code("RATE_LIMITED");
    assert!(server.mails_but_verification().is_empty());

    // Other fields, and the address already held, need no password.
    let same = json!({ "input": { "email": old_email, "name": "Mover" } });
    assert_eq!(
        server.gql(Some(&token), UPDATE, same).await.data("updateProfile")["email"],
        old_email.as_str()
    );

    server.state.clock.advance(901);
    let moved = server
        .gql(
            Some(&token),
            UPDATE,
            json!({ "input": { "email": new_email, "currentPassword": PASSWORD } }),
        )
        .await
        .data("updateProfile");
    assert_eq!(moved["email"], new_email.as_str());
    let sent = server.mails_but_verification();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to, old_email);
    assert!(sent[0].subject.contains("e-mail address was changed"), "{sent:?}");
    assert!(!sent[0].body.contains(&new_email), "the new address is not revealed");

    // An account without an address gets its first one with the password, and no mail.
    let (bare, _, _) = server.signup("bare").await;
    let first =
        json!({ "input": { "email": format!("{}@example.com", unique("first")), "currentPassword": PASSWORD } });
    server.gql(Some(&bare), UPDATE, first).await.data("updateProfile");
    assert_eq!(server.mails_but_verification().len(), 1);
}
