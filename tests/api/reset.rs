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
        let sent = server.state.mailer.sent();
        if sent.len() >= count {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {count} mails, got {:?}", server.state.mailer.sent());
}

pub fn token_in(mail: &Mail) -> String {
    let start = mail.body.find("token=").expect("a link with a token") + "token=".len();
    mail.body[start..].split_whitespace().next().unwrap().to_owned()
}

/// Asks for a reset of `username`'s password and returns the token from the mail it gets.
pub async fn mailed_reset_token(server: &TestServer, username: &str) -> String {
    let before = server.state.mailer.sent().len();
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
    assert_eq!(server.state.mailer.sent().len(), 1, "{sent:?}");
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
