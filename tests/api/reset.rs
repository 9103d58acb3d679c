//! Password reset by mail: requestPasswordReset and resetPassword.

use std::time::Duration;

use gatehouse::mail::Mail;
use gatehouse::Config;
use serde_json::json;

use crate::common::{str_at, unique, TestServer, PASSWORD};

const REQUEST: &str = "mutation($u: String, $e: String) { requestPasswordReset(input: {username: $u, email: $e}) }";
const RESET: &str = "mutation($t: String!, $p: String!) {
    resetPassword(input: {token: $t, newPassword: $p}) { token user { username } session { current } }
}";
const NEW_PASSWORD: &str = "reset to something new";

/// Waits for the background reset to mail `count` messages in all (it runs after the answer).
async fn wait_for_mails(server: &TestServer, count: usize) -> Vec<Mail> {
    for _ in 0..200 {
        let sent = server.mails_but_verification();
        if sent.len() >= count {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {count} mails, got {:?}", server.mails_but_verification());
}

pub fn token_in(mail: &Mail) -> String {
    let start = mail.body.find("token=").expect("a link with a token") + "token=".len();
    mail.body[start..].split_whitespace().next().unwrap().to_owned()
}

/// Asks for a reset of `username`'s password and returns the token from the mail it gets.
pub async fn mailed_reset_token(server: &TestServer, username: &str) -> String {
    let before = server.mails_but_verification().len();
    server
        .gql(None, REQUEST, json!({ "u": username }))
        .await
        .data("requestPasswordReset");
    let sent = wait_for_mails(server, before + 1).await;
    token_in(sent.last().expect("a mail"))
}

async fn user_with_email(server: &TestServer) -> (String, String, String) {
    let username = unique("forgetful");
    let email = format!("{username}@example.com");
    let signup = "mutation($u: String!, $e: String) { signup(input: {username: $u, password: \"correct horse battery staple\", email: $e}) { token } }";
    let token = str_at(
        &server
            .gql(None, signup, json!({ "u": username, "e": email }))
            .await
            .data("signup"),
        "/token",
    );
    (token, username, email)
}

#[tokio::test]
async fn reset_by_mail_works_once_and_closes_every_session() {
    let server = TestServer::start_with_outbox(Config::for_test()).await;
    let (old_token, username, email) = user_with_email(&server).await;
    assert_eq!(
        server
            .gql(None, REQUEST, json!({ "e": email.to_uppercase() }))
            .await
            .data("requestPasswordReset"),
        true
    );
    let mail = wait_for_mails(&server, 1).await.remove(0);
    assert_eq!(mail.to, email);
    assert!(
        mail.body.contains("http://127.0.0.1:8080/reset-password?token="),
        "{}",
        mail.body
    );
    let token = token_in(&mail);

    let reply = server.gql(None, RESET, json!({ "t": token, "p": NEW_PASSWORD })).await;
    let payload = reply.data("resetPassword");
    assert_eq!(payload["user"]["username"], username.as_str());
    assert_eq!(payload["session"]["current"], true);
    assert!(reply.set_cookies()[0].starts_with("gatehouse_session=ey"));
    server
        .gql(Some(&old_token), "{ me { id } }", json!({}))
        .await
        .assert_unauthorized();
    let login = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }";
    server
        .gql(None, login, json!({ "u": username, "p": NEW_PASSWORD }))
        .await
        .data("login");
    server
        .gql(None, login, json!({ "u": username, "p": PASSWORD }))
        .await
        .assert_code("UNAUTHENTICATED");

    // Once only.
    let again = server
        .gql(None, RESET, json!({ "t": token, "p": "yet another passphrase" }))
        .await;
    again.assert_code("BAD_USER_INPUT");
    assert_eq!(again.body["errors"][0]["extensions"]["field"], "token");
}

#[tokio::test]
async fn unknown_accounts_get_true_and_no_mail() {
    let server = TestServer::start_with_outbox(Config::for_test()).await;
    let (_, username, _) = user_with_email(&server).await;
    for variables in [
        json!({ "u": unique("ghost") }),
        json!({ "e": "ghost@example.com" }),
        json!({}),
    ] {
        assert_eq!(
            server.gql(None, REQUEST, variables).await.data("requestPasswordReset"),
            true
        );
    }
    // A real request after them is the only mail sent.
    server
        .gql(None, REQUEST, json!({ "u": username }))
        .await
        .data("requestPasswordReset");
    let sent = wait_for_mails(&server, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.mails_but_verification().len(), 1, "{sent:?}");
}

#[tokio::test]
async fn username_wins_over_email() {
    let server = TestServer::start_with_outbox(Config::for_test()).await;
    let (_, first_name, first_email) = user_with_email(&server).await;
    let (_, _, second_email) = user_with_email(&server).await;
    server
        .gql(None, REQUEST, json!({ "u": first_name, "e": second_email }))
        .await
        .data("requestPasswordReset");
    let mail = wait_for_mails(&server, 1).await.remove(0);
    assert_eq!(mail.to, first_email);
}

#[tokio::test]
async fn a_newer_request_voids_older_tokens() {
    let server = TestServer::start_with_outbox(Config::for_test()).await;
    let (_, username, _) = user_with_email(&server).await;
    server
        .gql(None, REQUEST, json!({ "u": username }))
        .await
        .data("requestPasswordReset");
    let first = token_in(&wait_for_mails(&server, 1).await[0]);
    server
        .gql(None, REQUEST, json!({ "u": username }))
        .await
        .data("requestPasswordReset");
    let second = token_in(&wait_for_mails(&server, 2).await[1]);
    assert_ne!(first, second);
    server
        .gql(None, RESET, json!({ "t": first, "p": NEW_PASSWORD }))
        .await
        .assert_code("BAD_USER_INPUT");
    server
        .gql(None, RESET, json!({ "t": second, "p": NEW_PASSWORD }))
        .await
        .data("resetPassword");
}

#[tokio::test]
async fn expired_and_unknown_tokens_are_refused() {
    let server = TestServer::start_with_outbox(Config::for_test()).await;
    let (_, username, _) = user_with_email(&server).await;
    server
        .gql(None, REQUEST, json!({ "u": username }))
        .await
        .data("requestPasswordReset");
    let token = token_in(&wait_for_mails(&server, 1).await[0]);
    server.state.clock.advance(31 * 60);
    for token in [token.as_str(), "made-up-token", ""] {
        let reply = server.gql(None, RESET, json!({ "t": token, "p": NEW_PASSWORD })).await;
        reply.assert_code("BAD_USER_INPUT");
        assert_eq!(reply.body["errors"][0]["extensions"]["field"], "token");
    }
}

#[tokio::test]
async fn a_weak_new_password_keeps_the_token_usable() {
    let server = TestServer::start_with_outbox(Config::for_test()).await;
    let (_, username, _) = user_with_email(&server).await;
    server
        .gql(None, REQUEST, json!({ "u": username }))
        .await
        .data("requestPasswordReset");
    let token = token_in(&wait_for_mails(&server, 1).await[0]);
    let weak = server.gql(None, RESET, json!({ "t": token, "p": "password1" })).await;
    weak.assert_code("BAD_USER_INPUT");
    assert_eq!(weak.body["errors"][0]["extensions"]["field"], "newPassword");
    server
        .gql(None, RESET, json!({ "t": token, "p": NEW_PASSWORD }))
        .await
        .data("resetPassword");
}

#[tokio::test]
async fn pending_reset_links_die_when_the_password_or_the_email_changes() {
    let server = TestServer::start_with_outbox(Config::for_test()).await;
    let (token, username, _) = user_with_email(&server).await;

    // changePassword.
    let link = mailed_reset_token(&server, &username).await;
    let change = "mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { token } }";
    let changed = server
        .gql(Some(&token), change, json!({ "c": PASSWORD, "n": NEW_PASSWORD }))
        .await
        .data("changePassword");
    let token = str_at(&changed, "/token");
    let refused = server
        .gql(None, RESET, json!({ "t": link, "p": "yet another passphrase" }))
        .await;
    refused.assert_code("BAD_USER_INPUT");
    assert_eq!(refused.body["errors"][0]["extensions"]["field"], "token");

    // updateProfile with a new e-mail address.
    let link = mailed_reset_token(&server, &username).await;
    let update =
        "mutation($e: String, $c: String) { updateProfile(input: {email: $e, currentPassword: $c}) { email } }";
    let new_email = format!("{}@example.com", unique("new"));
    server
        .gql(Some(&token), update, json!({ "e": new_email, "c": NEW_PASSWORD }))
        .await
        .data("updateProfile");
    server
        .gql(None, RESET, json!({ "t": link, "p": "yet another passphrase" }))
        .await
        .assert_code("BAD_USER_INPUT");

    // A link asked for after the change works.
    let link = mailed_reset_token(&server, &username).await;
    server
        .gql(None, RESET, json!({ "t": link, "p": "yet another passphrase" }))
        .await
        .data("resetPassword");
}

#[tokio::test]
async fn the_configured_admin_password_voids_pending_reset_links() {
    let name = unique("admin");
    let config = Config {
        admin_username: Some(name.clone()),
        admin_password: Some(crate::common::ADMIN_PASSWORD.into()),
        ..Config::for_test()
    };
    let first = TestServer::start_with_outbox(config.clone()).await;
    let link = mailed_reset_token(&first, &name).await;
    // A restart with another ADMIN_PASSWORD sets it, and the link mailed before dies.
    let restarted = first
        .start_sharing(Config {
            admin_password: Some("a new admin passphrase".into()),
            ..config
        })
        .await;
    restarted
        .gql(None, RESET, json!({ "t": link, "p": NEW_PASSWORD }))
        .await
        .assert_code("BAD_USER_INPUT");
}

#[tokio::test]
async fn reset_requests_are_capped_per_account_from_any_address() {
    let server = TestServer::start_with_outbox(Config {
        rate_limit_reset_user: 3,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Config::for_test()
    })
    .await;
    let (_, username, _) = user_with_email(&server).await;
    let (_, other, _) = user_with_email(&server).await;
    let request_from = |client: String, username: String| {
        let request = server
            .http
            .post(server.url("/graphql"))
            .header("x-forwarded-for", client)
            .json(&json!({ "query": REQUEST, "variables": { "u": username } }));
        async move { crate::common::Reply::from(request.send().await.unwrap()).await }
    };
    // One at a time, each from an address of its own: the address limit never applies.
    for i in 0..3 {
        let reply = request_from(format!("198.51.100.{i}"), username.clone()).await;
        assert_eq!(reply.data("requestPasswordReset"), true);
        wait_for_mails(&server, i + 1).await;
    }
    for i in 3..5 {
        let reply = request_from(format!("198.51.100.{i}"), username.clone()).await;
        assert_eq!(reply.data("requestPasswordReset"), true, "still true, and no mail");
    }
    // Another account is not affected.
    let reply = request_from("198.51.100.9".into(), other).await;
    assert_eq!(reply.data("requestPasswordReset"), true);
    let sent = wait_for_mails(&server, 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.mails_but_verification().len(), 4, "{sent:?}");
    // The last mail to the capped account still works: over the cap, nothing was voided.
    let last = server.mails_but_verification()[2].clone();
    server
        .gql(None, RESET, json!({ "t": token_in(&last), "p": NEW_PASSWORD }))
        .await
        .data("resetPassword");
}
