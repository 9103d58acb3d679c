//! Verified e-mail (API.md §8): the link mailed at signup and on an address change, single
//! use and valid 24 hours, and `REQUIRE_VERIFIED_EMAIL`.

use std::time::{Duration, Instant};

use chrono::Utc;
use gatehouse::mail::Mail;
use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{str_at, unique, Reply, TestServer, PASSWORD};
use crate::reset::token_in;

const SIGNUP: &str = "mutation($u: String!, $p: String!, $e: String) {
    signup(input: {username: $u, password: $p, email: $e}) { token user { id emailVerified } }
}";
const LOGIN: &str = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }";
pub(crate) const VERIFY: &str = "mutation($t: String!) { verifyEmail(token: $t) { id email emailVerified } }";
const ME: &str = "{ me { email emailVerified } }";

async fn start(config: Config) -> TestServer {
    let server = TestServer::start_with_outbox(config).await;
    server.state.clock.freeze_at(Utc::now());
    server
}

/// The `nth` verification mail to `to`, once the background sender has sent it.
pub(crate) async fn verification_mail(server: &TestServer, to: &str, nth: usize) -> Mail {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mails: Vec<Mail> = server
            .state
            .mailer
            .sent()
            .into_iter()
            .filter(|m| m.to == to && m.subject == "Verify your e-mail address")
            .collect();
        if let Some(mail) = mails.into_iter().nth(nth) {
            return mail;
        }
        assert!(Instant::now() < deadline, "no verification mail {nth} reached {to}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn signup(server: &TestServer, email: Option<&str>) -> (Reply, String) {
    let username = unique("mailbox");
    let reply = server
        .gql(None, SIGNUP, json!({ "u": username, "p": PASSWORD, "e": email }))
        .await;
    (reply, username)
}

fn assert_bad_token(reply: &Reply) {
    reply.assert_code("BAD_USER_INPUT");
    assert_eq!(
        reply.body["errors"][0]["extensions"]["field"], "token",
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn the_link_mailed_at_signup_verifies_the_address_once() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let email = format!("{}@example.com", unique("new"));
    let (reply, _) = signup(&server, Some(&email)).await;
    let payload = reply.data("signup");
    let token = str_at(&payload, "/token");
    assert_eq!(payload["user"]["emailVerified"], false);
    let mail = verification_mail(&server, &email, 0).await;
    assert!(
        mail.body.contains("http://127.0.0.1:8080/verify-email?token="),
        "{}",
        mail.body
    );

    let verified = server
        .gql(None, VERIFY, json!({ "t": token_in(&mail) }))
        .await
        .data("verifyEmail");
    assert_eq!(verified["emailVerified"], true);
    assert_eq!(
        server.gql(Some(&token), ME, json!({})).await.data("me")["emailVerified"],
        true
    );
    assert_bad_token(&server.gql(None, VERIFY, json!({ "t": token_in(&mail) })).await);
    assert_bad_token(&server.gql(None, VERIFY, json!({ "t": "made-up" })).await);

    let user_id = str_at(&payload, "/user/id");
    let events = "query($u: UUID) { auditEvents(userId: $u) { edges { node { kind detail } } } }";
    let events = server
        .gql(Some(&admin), events, json!({ "u": user_id }))
        .await
        .data("auditEvents");
    let verified: Vec<&Value> = events["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["kind"] == "email_verified")
        .collect();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0]["node"]["detail"]["email"], json!(email));
    // Nothing asked: requesting again sends nothing for a verified address.
    let request = server
        .gql(Some(&token), "mutation { requestEmailVerification }", json!({}))
        .await;
    assert_eq!(request.data("requestEmailVerification"), true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let to_user = server.state.mailer.sent().into_iter().filter(|m| m.to == email).count();
    assert_eq!(to_user, 1);
}

#[tokio::test]
async fn a_new_address_starts_unverified_and_old_links_verify_nothing() {
    let server = start(Config::for_test()).await;
    let email = format!("{}@example.com", unique("first"));
    let (reply, _) = signup(&server, Some(&email)).await;
    let token = str_at(&reply.data("signup"), "/token");
    let first_link = verification_mail(&server, &email, 0).await;
    server
        .gql(None, VERIFY, json!({ "t": token_in(&first_link) }))
        .await
        .data("verifyEmail");

    let second = format!("{}@example.com", unique("second"));
    let change = "mutation($e: String!, $p: String!) { updateProfile(input: {email: $e, currentPassword: $p}) { emailVerified } }";
    let changed = server
        .gql(Some(&token), change, json!({ "e": second, "p": PASSWORD }))
        .await;
    assert_eq!(changed.data("updateProfile")["emailVerified"], false);
    let second_link = verification_mail(&server, &second, 0).await;

    // A newer link voids the older one; a link for another address verifies nothing.
    let request = server
        .gql(Some(&token), "mutation { requestEmailVerification }", json!({}))
        .await;
    assert_eq!(request.data("requestEmailVerification"), true);
    let third_link = verification_mail(&server, &second, 1).await;
    assert_bad_token(&server.gql(None, VERIFY, json!({ "t": token_in(&second_link) })).await);
    let back = server
        .gql(Some(&token), change, json!({ "e": email, "p": PASSWORD }))
        .await;
    assert_eq!(back.data("updateProfile")["emailVerified"], false);
    assert_bad_token(&server.gql(None, VERIFY, json!({ "t": token_in(&third_link) })).await);
    assert_eq!(
        server.gql(Some(&token), ME, json!({})).await.data("me")["emailVerified"],
        false
    );
}

#[tokio::test]
async fn links_expire_after_24_hours() {
    let server = start(Config {
        session_ttl: 200_000,
        ..Config::for_test()
    })
    .await;
    let email = format!("{}@example.com", unique("slow"));
    let (reply, _) = signup(&server, Some(&email)).await;
    reply.data("signup");
    let mail = verification_mail(&server, &email, 0).await;
    server.state.clock.advance(24 * 3600 + 1);
    assert_bad_token(&server.gql(None, VERIFY, json!({ "t": token_in(&mail) })).await);
}

#[tokio::test]
async fn an_account_without_an_address_has_nothing_to_verify() {
    let server = start(Config::for_test()).await;
    let (reply, _) = signup(&server, None).await;
    let payload = reply.data("signup");
    assert_eq!(payload["user"]["emailVerified"], false);
    let token = str_at(&payload, "/token");
    let request = server
        .gql(Some(&token), "mutation { requestEmailVerification }", json!({}))
        .await;
    request.assert_code("BAD_USER_INPUT");
    assert_eq!(request.body["errors"][0]["extensions"]["field"], "email");
    server
        .gql(None, "mutation { requestEmailVerification }", json!({}))
        .await
        .assert_code("UNAUTHENTICATED");
    // Others do not learn whether someone's address is verified.
    let (other, _, _) = server.signup("other").await;
    let id = str_at(&payload, "/user/id");
    let reply = server
        .gql(
            Some(&other),
            "query($id: UUID!) { user(id: $id) { emailVerified } }",
            json!({ "id": id }),
        )
        .await;
    reply.assert_code("FORBIDDEN");
}

#[tokio::test]
async fn with_verification_required_only_verified_addresses_sign_in() {
    let server = start(Config {
        require_verified_email: true,
        ..Config::for_test()
    })
    .await;
    let (no_address, _) = signup(&server, None).await;
    no_address.assert_code("BAD_USER_INPUT");
    assert_eq!(no_address.body["errors"][0]["extensions"]["field"], "email");

    let email = format!("{}@example.com", unique("strict"));
    let (reply, username) = signup(&server, Some(&email)).await;
    reply.assert_code("EMAIL_NOT_VERIFIED");
    assert!(
        reply.set_cookies().is_empty(),
        "no session before the address is verified"
    );
    let first = verification_mail(&server, &email, 0).await;

    // The right password is told the address is unverified, and gets a fresh link; a wrong
    // one learns nothing.
    let login = server.gql(None, LOGIN, json!({ "u": username, "p": PASSWORD })).await;
    login.assert_code("EMAIL_NOT_VERIFIED");
    let wrong = server
        .gql(None, LOGIN, json!({ "u": username, "p": "not the password" }))
        .await;
    wrong.assert_code("UNAUTHENTICATED");
    let second = verification_mail(&server, &email, 1).await;
    assert_bad_token(&server.gql(None, VERIFY, json!({ "t": token_in(&first) })).await);
    server
        .gql(None, VERIFY, json!({ "t": token_in(&second) }))
        .await
        .data("verifyEmail");
    let token = str_at(
        &server
            .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
            .await
            .data("login"),
        "/token",
    );
    assert_eq!(
        server.gql(Some(&token), ME, json!({})).await.data("me")["emailVerified"],
        true
    );
}
