//! TOTP and recovery codes (API.md §8), end to end over HTTP. The codes are computed by an
//! implementation of RFC 6238 apart from gatehouse's (`fixtures/totp.py`: pyotp, checked
//! against Python's standard library), at the time of the server's stopped clock.

use gatehouse::Config;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{json, Value};

use crate::common::{str_at, Reply, TestServer, PASSWORD};

const START: &str = "mutation { startTotpEnrollment { secret uri } }";
const CONFIRM: &str = "mutation($code: String!) { confirmTotpEnrollment(code: $code) }";
const LOGIN: &str = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }";
const VERIFY: &str = "mutation($input: VerifySecondFactorInput!) {
    verifySecondFactor(input: $input) { token user { id totpEnabled } session { id lastAuthenticatedAt } }
}";
const REAUTH: &str = "mutation($input: ReauthenticateInput!) { reauthenticate(input: $input) { id } }";
const EVENTS: &str =
    "query($user: UUID) { auditEvents(first: 100, userId: $user) { edges { node { kind actor { id } detail } } } }";

/// The code for `secret` at `at_unix`, from the independent implementation.
fn code(secret: &str, at_unix: i64) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/fixtures/totp.py");
    let out = std::process::Command::new("python3")
        .args([script, secret, &at_unix.to_string()])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn config() -> Config {
    Config {
        rate_limit_login_user: 1000,
        ..Config::for_test()
    }
}

async fn start(config: Config) -> (TestServer, String) {
    TestServer::start_with_admin_on_a_stopped_clock(config).await
}

fn now(server: &TestServer) -> i64 {
    server.state.clock.now().timestamp()
}

/// A user with TOTP on: (token, user id, username, secret, recovery codes). The clock is
/// moved one step on, past the step whose code confirmed the enrolment.
async fn enrolled(server: &TestServer) -> (String, String, String, String, Vec<String>) {
    let (token, user_id, username) = server.signup("two_factor").await;
    let (secret, codes) = enrol(server, &token).await;
    (token, user_id, username, secret, codes)
}

/// Turns TOTP on for the token's user: (secret, recovery codes).
async fn enrol(server: &TestServer, token: &str) -> (String, Vec<String>) {
    let enrollment = server
        .gql(Some(token), START, json!({}))
        .await
        .data("startTotpEnrollment");
    let secret = str_at(&enrollment, "/secret");
    let confirm = server
        .gql(Some(token), CONFIRM, json!({ "code": code(&secret, now(server)) }))
        .await;
    let codes = confirm.data("confirmTotpEnrollment");
    let codes: Vec<String> = codes
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    server.state.clock.advance(30);
    (secret, codes)
}

/// Logs in with the right password; returns the challenge of SECOND_FACTOR_REQUIRED.
async fn challenge(server: &TestServer, username: &str) -> String {
    let reply = server.gql(None, LOGIN, json!({ "u": username, "p": PASSWORD })).await;
    reply.assert_code("SECOND_FACTOR_REQUIRED");
    assert_eq!(reply.body["data"]["login"], Value::Null, "no session: {}", reply.body);
    assert!(reply.set_cookies().is_empty(), "no cookie before the second factor");
    str_at(&reply.body, "/errors/0/extensions/challenge")
}

async fn verify(server: &TestServer, input: Value) -> Reply {
    server.gql(None, VERIFY, json!({ "input": input })).await
}

fn assert_bad_input(reply: &Reply, field: &str) {
    reply.assert_code("BAD_USER_INPUT");
    assert_eq!(reply.body["errors"][0]["extensions"]["field"], field, "{}", reply.body);
}

async fn kinds(server: &TestServer, admin: &str, user_id: &str) -> Vec<String> {
    let reply = server.gql(Some(admin), EVENTS, json!({ "user": user_id })).await;
    reply.data("auditEvents")["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| str_at(e, "/node/kind"))
        .collect()
}

#[tokio::test]
async fn totp_enrolment_and_login_with_codes_of_an_independent_implementation() {
    let (server, admin) = start(config()).await;
    let (token, user_id, username) = server.signup("totp").await;
    let enrollment = server
        .gql(Some(&token), START, json!({}))
        .await
        .data("startTotpEnrollment");
    let (secret, uri) = (str_at(&enrollment, "/secret"), str_at(&enrollment, "/uri"));
    assert!(
        uri.starts_with(&format!("otpauth://totp/gatehouse:{username}?")),
        "{uri}"
    );
    assert!(
        uri.contains(&format!("secret={secret}")) && uri.contains("issuer=gatehouse"),
        "{uri}"
    );

    // Not on until confirmed: a login still needs only the password.
    assert!(server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .data("login")
        .is_object());
    let wrong = server.gql(Some(&token), CONFIRM, json!({ "code": "000000" })).await;
    assert_bad_input(&wrong, "code");
    let uri_code = {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/fixtures/totp.py");
        let out = std::process::Command::new("python3")
            .args([script, "--uri", &uri, &now(&server).to_string()])
            .output()
            .expect("python3 runs");
        String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
    };
    assert_eq!(uri_code, code(&secret, now(&server)), "the URI holds the same secret");
    let codes = server
        .gql(Some(&token), CONFIRM, json!({ "code": uri_code }))
        .await
        .data("confirmTotpEnrollment");
    let codes: Vec<&str> = codes.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(
        codes.iter().collect::<std::collections::BTreeSet<_>>().len(),
        10,
        "all different"
    );
    let me = server.gql(Some(&token), "{ me { totpEnabled } }", json!({})).await;
    assert_eq!(me.data("me")["totpEnabled"], true);

    let sessions_before = server
        .gql(Some(&token), "{ countSessions }", json!({}))
        .await
        .data("countSessions");
    let ticket = challenge(&server, &username).await;
    let after = server
        .gql(Some(&token), "{ countSessions }", json!({}))
        .await
        .data("countSessions");
    assert_eq!(
        after, sessions_before,
        "a login waiting for its second factor opens no session"
    );

    // The code that confirmed the enrolment was accepted once already, in this same step.
    let replayed = verify(&server, json!({ "challenge": ticket, "code": uri_code })).await;
    assert_bad_input(&replayed, "code");
    server.state.clock.advance(30);
    let fresh = code(&secret, now(&server));
    let reply = verify(&server, json!({ "challenge": ticket, "code": fresh })).await;
    assert!(
        reply.set_cookies().iter().any(|c| c.starts_with("gatehouse_session=")),
        "the cookie is set"
    );
    let payload = reply.data("verifySecondFactor");
    assert_eq!(payload["user"]["id"], json!(user_id));
    assert_eq!(payload["user"]["totpEnabled"], true);
    assert!(server
        .gql(Some(&str_at(&payload, "/token")), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());

    // The ticket is single use, and the same code is not accepted twice within its window.
    assert_bad_input(
        &verify(&server, json!({ "challenge": ticket, "code": fresh })).await,
        "challenge",
    );
    let again = challenge(&server, &username).await;
    assert_bad_input(
        &verify(&server, json!({ "challenge": again, "code": fresh })).await,
        "code",
    );
    // One step of drift either way; two is too far.
    let ahead = code(&secret, now(&server) + 30);
    assert!(verify(&server, json!({ "challenge": again, "code": ahead }))
        .await
        .data("verifySecondFactor")
        .is_object());
    server.state.clock.advance(90);
    let third = challenge(&server, &username).await;
    let behind = code(&secret, now(&server) - 30);
    assert!(verify(&server, json!({ "challenge": third, "code": behind }))
        .await
        .data("verifySecondFactor")
        .is_object());
    server.state.clock.advance(30);
    let fourth = challenge(&server, &username).await;
    assert_bad_input(
        &verify(
            &server,
            json!({ "challenge": fourth, "code": code(&secret, now(&server) - 60) }),
        )
        .await,
        "code",
    );
    assert_bad_input(
        &verify(
            &server,
            json!({ "challenge": fourth, "code": code(&secret, now(&server) + 60) }),
        )
        .await,
        "code",
    );

    let events = kinds(&server, &admin, &user_id).await;
    for kind in ["totp_enabled", "second_factor_failed", "login"] {
        assert!(events.iter().any(|k| k == kind), "{kind} in {events:?}");
    }
}

#[tokio::test]
async fn recovery_codes_work_once_each() {
    let (server, admin) = start(config()).await;
    let (token, user_id, username, _, codes) = enrolled(&server).await;
    let ticket = challenge(&server, &username).await;
    // Typed loosely: upper case, spaces around.
    let typed = format!("  {}  ", codes[0].to_uppercase());
    let payload = verify(&server, json!({ "challenge": ticket, "recoveryCode": typed })).await;
    assert!(payload.data("verifySecondFactor").is_object());
    let ticket = challenge(&server, &username).await;
    assert_bad_input(
        &verify(&server, json!({ "challenge": ticket, "recoveryCode": codes[0] })).await,
        "recoveryCode",
    );
    assert_bad_input(
        &verify(&server, json!({ "challenge": ticket, "recoveryCode": "aaaaa-aaaaa" })).await,
        "recoveryCode",
    );
    assert_bad_input(
        &verify(
            &server,
            json!({ "challenge": ticket, "code": "123456", "recoveryCode": codes[1] }),
        )
        .await,
        "input",
    );
    // A recovery code also re-authenticates, once.
    let reauth = server
        .gql(Some(&token), REAUTH, json!({ "input": { "recoveryCode": codes[1] } }))
        .await;
    assert!(reauth.data("reauthenticate").is_object());
    let again = server
        .gql(Some(&token), REAUTH, json!({ "input": { "recoveryCode": codes[1] } }))
        .await;
    assert_bad_input(&again, "recoveryCode");
    let events = kinds(&server, &admin, &user_id).await;
    assert_eq!(
        events.iter().filter(|k| *k == "recovery_code_used").count(),
        2,
        "{events:?}"
    );
}

#[tokio::test]
async fn wrong_codes_count_as_failed_logins() {
    let (server, _) = start(Config {
        rate_limit_login_user: 3,
        ..config()
    })
    .await;
    let (_, _, username, secret, _) = enrolled(&server).await;
    let ticket = challenge(&server, &username).await;
    for _ in 0..3 {
        assert_bad_input(
            &verify(&server, json!({ "challenge": ticket, "code": "000000" })).await,
            "code",
        );
    }
    // Over the per-username limit: refused before any check, even with the right code.
    let right = code(&secret, now(&server));
    verify(&server, json!({ "challenge": ticket, "code": right }))
        .await
        .assert_code("RATE_LIMITED");
    server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .assert_code("RATE_LIMITED");
}

#[tokio::test]
async fn challenges_expire_after_five_minutes() {
    let (server, _) = start(config()).await;
    let (_, _, username, secret, _) = enrolled(&server).await;
    let ticket = challenge(&server, &username).await;
    server.state.clock.advance(5 * 60 + 1);
    let reply = verify(
        &server,
        json!({ "challenge": ticket, "code": code(&secret, now(&server)) }),
    )
    .await;
    assert_bad_input(&reply, "challenge");
    assert_bad_input(
        &verify(&server, json!({ "challenge": "made up", "code": "123456" })).await,
        "challenge",
    );
}

#[tokio::test]
async fn enrolling_and_disabling_need_a_fresh_session() {
    let (server, admin) = start(config()).await;
    let (token, user_id, username, secret, _) = enrolled(&server).await;
    server.state.clock.advance(301);
    for mutation in [START, "mutation { disableTotp }"] {
        server
            .gql(Some(&token), mutation, json!({}))
            .await
            .assert_code("REAUTHENTICATION_REQUIRED");
    }
    // A code re-authenticates as well as the password does.
    let reauth = server
        .gql(
            Some(&token),
            REAUTH,
            json!({ "input": { "code": code(&secret, now(&server)) } }),
        )
        .await;
    assert!(reauth.data("reauthenticate").is_object());
    let disabled = server.gql(Some(&token), "mutation { disableTotp }", json!({})).await;
    assert_eq!(disabled.data("disableTotp"), true);
    assert!(server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .data("login")
        .is_object());
    let events = kinds(&server, &admin, &user_id).await;
    assert!(events.iter().any(|k| k == "totp_disabled"), "{events:?}");
    // Without TOTP, codes cannot re-authenticate.
    let reply = server
        .gql(Some(&token), REAUTH, json!({ "input": { "code": "123456" } }))
        .await;
    assert_bad_input(&reply, "code");
}

#[tokio::test]
async fn an_admin_sees_totp_and_turns_it_off_for_a_user_who_lost_their_device() {
    let (server, admin) = start(config()).await;
    let (token, user_id, username, _, _) = enrolled(&server).await;
    let (other, _, _) = server.signup("neighbour").await;
    let query = "query($id: UUID!) { user(id: $id) { totpEnabled } }";
    let seen = server.gql(Some(&admin), query, json!({ "id": user_id })).await;
    assert_eq!(seen.data("user")["totpEnabled"], true);
    let users = server
        .gql(
            Some(&admin),
            "{ users(first: 100) { edges { node { username totpEnabled } } } }",
            json!({}),
        )
        .await;
    let row = users.data("users")["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["username"] == json!(username))
        .cloned()
        .expect("listed");
    assert_eq!(row["node"]["totpEnabled"], true);

    let disable = "mutation($id: UUID!) { disableUserTotp(userId: $id) }";
    server
        .gql(Some(&other), disable, json!({ "id": user_id }))
        .await
        .assert_code("FORBIDDEN");
    server
        .gql(Some(&token), disable, json!({ "id": user_id }))
        .await
        .assert_code("FORBIDDEN");
    let unknown = server
        .gql(Some(&admin), disable, json!({ "id": uuid::Uuid::new_v4() }))
        .await;
    unknown.assert_code("NOT_FOUND");
    assert_eq!(
        server
            .gql(Some(&admin), disable, json!({ "id": user_id }))
            .await
            .data("disableUserTotp"),
        true
    );
    assert_eq!(
        server
            .gql(Some(&admin), disable, json!({ "id": user_id }))
            .await
            .data("disableUserTotp"),
        false
    );
    assert!(server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .data("login")
        .is_object());
    let reply = server.gql(Some(&admin), EVENTS, json!({ "user": user_id })).await;
    let admin_id = server.gql(Some(&admin), "{ me { id } }", json!({})).await.data("me")["id"].clone();
    let disabled_by_admin = reply.data("auditEvents")["edges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["node"]["kind"] == "totp_disabled" && e["node"]["actor"]["id"] == admin_id);
    assert!(disabled_by_admin);
    // Others cannot read whether someone has TOTP on.
    let hidden = server.gql(Some(&other), query, json!({ "id": user_id })).await;
    hidden.assert_code("FORBIDDEN");
}

#[tokio::test]
async fn a_password_reset_does_not_skip_the_second_factor() {
    let (server, _) = start(config()).await;
    let username = crate::common::unique("resetting");
    let email = format!("{username}@example.com");
    let signup = "mutation($u: String!, $p: String!, $e: String) { signup(input: {username: $u, password: $p, email: $e}) { token } }";
    let reply = server
        .gql(None, signup, json!({ "u": username, "p": PASSWORD, "e": email }))
        .await;
    let token = str_at(&reply.data("signup"), "/token");
    let (secret, _) = enrol(&server, &token).await;

    let request = "mutation($u: String!) { requestPasswordReset(input: {username: $u}) }";
    assert_eq!(
        server
            .gql(None, request, json!({ "u": username }))
            .await
            .data("requestPasswordReset"),
        true
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mail = loop {
        if let Some(mail) = server.mails_but_verification().into_iter().find(|m| m.to == email) {
            break mail;
        }
        assert!(std::time::Instant::now() < deadline, "no reset mail");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let reset = "mutation($t: String!, $p: String!) { resetPassword(input: {token: $t, newPassword: $p}) { token } }";
    let new_password = "a brand new passphrase";
    let reply = server
        .gql(
            None,
            reset,
            json!({ "t": crate::reset::token_in(&mail), "p": new_password }),
        )
        .await;
    reply.assert_code("SECOND_FACTOR_REQUIRED");
    assert!(reply.set_cookies().is_empty());
    // The reset itself happened: every session is closed and the new password is the one.
    server
        .gql(Some(&token), "{ me { id } }", json!({}))
        .await
        .assert_unauthorized();
    let ticket = str_at(&reply.body, "/errors/0/extensions/challenge");
    let payload = verify(
        &server,
        json!({ "challenge": ticket, "code": code(&secret, now(&server)) }),
    )
    .await;
    assert!(payload.data("verifySecondFactor").is_object());
    let login = server
        .gql(None, LOGIN, json!({ "u": username, "p": new_password }))
        .await;
    login.assert_code("SECOND_FACTOR_REQUIRED");
}

#[tokio::test]
async fn totp_secrets_are_sealed_in_the_database() {
    let (server, _) = start(config()).await;
    let (_, user_id, _, secret, codes) = enrolled(&server).await;
    let db = &server.state.db;
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => "SELECT sealed_secret FROM totp_factors WHERE user_id = $1",
        _ => "SELECT sealed_secret FROM totp_factors WHERE user_id = ?",
    };
    let id = uuid::Uuid::parse_str(&user_id).unwrap();
    let row = db
        .query_one(Statement::from_sql_and_values(backend, sql, [id.into()]))
        .await
        .unwrap()
        .expect("a row");
    let sealed: Vec<u8> = row.try_get("", "sealed_secret").unwrap();
    let raw = base32_decode(&secret);
    assert!(
        !sealed.windows(raw.len()).any(|w| w == raw),
        "the secret is not stored in the clear"
    );
    assert!(!String::from_utf8_lossy(&sealed).contains(&secret));
    // Recovery codes are kept as hashes only.
    let dump = format!(
        "{:?}",
        db.query_all(Statement::from_string(backend, "SELECT * FROM recovery_codes"))
            .await
            .unwrap()
    );
    for code in &codes {
        assert!(!dump.contains(code.as_str()) && !dump.contains(&code.replace('-', "")));
    }
}

fn base32_decode(secret: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u64, Vec::new());
    for c in secret.trim_end_matches('=').bytes() {
        value = (value << 5) | ALPHABET.iter().position(|a| *a == c).expect("base32") as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}
