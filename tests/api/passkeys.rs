//! Passkeys (API.md §8) over HTTP, answered by a software authenticator
//! (`webauthn-authenticator-rs`'s `SoftPasskey`, which claims user verification) at the
//! default origin, http://localhost:8080. Browsers are tested in `tests/clients/src/passkeys.ts`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use gatehouse::Config;
use serde_json::{json, Value};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs::prelude::Url;
use webauthn_rs_proto::{CreationChallengeResponse, RequestChallengeResponse};

use crate::common::{str_at, unique, Reply, TestServer};
use crate::email_verification::{self, verification_mail, VERIFY};
use crate::reset::token_in;

const START_REGISTRATION: &str = "mutation { startPasskeyRegistration }";
const FINISH_REGISTRATION: &str = "mutation($input: FinishPasskeyRegistrationInput!) {
    finishPasskeyRegistration(input: $input) { id name createdAt lastUsedAt }
}";
const START_LOGIN: &str = "mutation($u: String) { startPasskeyLogin(username: $u) { challenge options } }";
const FINISH_LOGIN: &str = "mutation($input: FinishPasskeyLoginInput!) {
    finishPasskeyLogin(input: $input) { token user { id passkeys { id } } session { lastAuthenticatedAt } }
}";
const REMOVE: &str = "mutation($id: UUID!) { removePasskey(id: $id) }";
const MY_PASSKEYS: &str = "{ me { passkeys { id name createdAt lastUsedAt } } }";
const EVENTS: &str =
    "query($user: UUID) { auditEvents(first: 100, userId: $user) { edges { node { kind subjectId detail } } } }";

fn config() -> Config {
    Config {
        rate_limit_login_user: 1000,
        ..Config::for_test()
    }
}

async fn start(config: Config) -> (TestServer, String) {
    TestServer::start_with_admin_on_a_stopped_clock(config).await
}

/// A software authenticator answering for the page at WEBAUTHN_ORIGIN's default.
struct Authenticator(WebauthnAuthenticator<SoftPasskey>);

impl Authenticator {
    fn new() -> Self {
        Authenticator(WebauthnAuthenticator::new(SoftPasskey::new(true)))
    }

    fn origin() -> Url {
        Url::parse("http://localhost:8080").unwrap()
    }

    /// `navigator.credentials.create` with gatehouse's options, as JSON.
    fn create(&mut self, options: &Value) -> Value {
        let options: CreationChallengeResponse = serde_json::from_value(options.clone()).expect("creation options");
        let credential = self.0.do_registration(Self::origin(), options).expect("registration");
        serde_json::to_value(credential).unwrap()
    }

    /// `navigator.credentials.get` with gatehouse's options, as JSON.
    fn get(&mut self, options: &Value) -> Value {
        let options: RequestChallengeResponse = serde_json::from_value(options.clone()).expect("request options");
        let credential = self
            .0
            .do_authentication(Self::origin(), options)
            .expect("authentication");
        serde_json::to_value(credential).unwrap()
    }
}

/// Registers a passkey from `authenticator` for the token's user; returns its id.
async fn register(server: &TestServer, token: &str, authenticator: &mut Authenticator, name: &str) -> String {
    let options = server
        .gql(Some(token), START_REGISTRATION, json!({}))
        .await
        .data("startPasskeyRegistration");
    let credential = authenticator.create(&options);
    let input = json!({ "name": name, "credential": credential });
    let passkey = server
        .gql(Some(token), FINISH_REGISTRATION, json!({ "input": input }))
        .await
        .data("finishPasskeyRegistration");
    str_at(&passkey, "/id")
}

/// `startPasskeyLogin`: (challenge, options).
async fn start_login(server: &TestServer, username: Option<&str>) -> (String, Value) {
    let started = server
        .gql(None, START_LOGIN, json!({ "u": username }))
        .await
        .data("startPasskeyLogin");
    (str_at(&started, "/challenge"), started["options"].clone())
}

async fn finish_login(server: &TestServer, challenge: &str, credential: Value) -> Reply {
    let input = json!({ "challenge": challenge, "credential": credential });
    server.gql(None, FINISH_LOGIN, json!({ "input": input })).await
}

/// A whole sign-in with `username`'s passkey from `authenticator`.
async fn sign_in(server: &TestServer, username: &str, authenticator: &mut Authenticator) -> Reply {
    let (challenge, options) = start_login(server, Some(username)).await;
    let credential = authenticator.get(&options);
    finish_login(server, &challenge, credential).await
}

fn assert_bad_input(reply: &Reply, field: &str) {
    reply.assert_code("BAD_USER_INPUT");
    assert_eq!(reply.body["errors"][0]["extensions"]["field"], field, "{}", reply.body);
}

fn assert_message(reply: &Reply, part: &str) {
    let message = reply.body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(part), "{part:?} not in {}", reply.body);
}

async fn events(server: &TestServer, admin: &str, user_id: &str) -> Vec<Value> {
    let reply = server.gql(Some(admin), EVENTS, json!({ "user": user_id })).await;
    reply.data("auditEvents")["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

fn user_handle(user_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(uuid::Uuid::parse_str(user_id).unwrap().as_bytes())
}

#[tokio::test]
async fn a_passkey_signs_in_without_password_or_second_factor() {
    let (server, admin) = start(config()).await;
    let (token, user_id, username) = server.signup("passkey").await;
    // TOTP on: a password login would now wait for a code; a passkey does not.
    let enrollment = server
        .gql(Some(&token), "mutation { startTotpEnrollment { uri } }", json!({}))
        .await
        .data("startTotpEnrollment");
    let totp = totp_rs::TOTP::from_url(str_at(&enrollment, "/uri")).unwrap();
    let code = totp.generate(server.state.clock.now().timestamp() as u64);
    server
        .gql(
            Some(&token),
            "mutation($c: String!) { confirmTotpEnrollment(code: $c) }",
            json!({ "c": code }),
        )
        .await
        .data("confirmTotpEnrollment");

    let mut authenticator = Authenticator::new();
    let passkey_id = register(&server, &token, &mut authenticator, " laptop ").await;
    let listed = server.gql(Some(&token), MY_PASSKEYS, json!({})).await.data("me");
    assert_eq!(listed["passkeys"].as_array().unwrap().len(), 1);
    assert_eq!(listed["passkeys"][0]["id"], passkey_id.as_str());
    assert_eq!(listed["passkeys"][0]["name"], "laptop");
    assert_eq!(listed["passkeys"][0]["lastUsedAt"], Value::Null);

    server.state.clock.advance(60);
    let reply = sign_in(&server, &username.to_uppercase(), &mut authenticator).await;
    let payload = reply.data("finishPasskeyLogin");
    assert_eq!(payload["user"]["id"], user_id.as_str());
    assert_eq!(payload["user"]["passkeys"][0]["id"], passkey_id.as_str());
    let now = server.state.clock.now();
    let authenticated_at: chrono::DateTime<Utc> = str_at(&payload, "/session/lastAuthenticatedAt").parse().unwrap();
    assert!((now - authenticated_at).num_seconds().abs() <= 1, "a fresh session");
    assert!(
        reply
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("gatehouse_session=") && c.contains("HttpOnly")),
        "the session cookie is set, as for login"
    );
    let new_token = str_at(&payload, "/token");
    let me = server.gql(Some(&new_token), MY_PASSKEYS, json!({})).await.data("me");
    assert!(me["passkeys"][0]["lastUsedAt"].is_string(), "{me}");

    // A second sign-in works too: the stored counter moved with the first.
    assert!(sign_in(&server, &username, &mut authenticator)
        .await
        .data("finishPasskeyLogin")
        .is_object());

    let events = events(&server, &admin, &user_id).await;
    let added = events
        .iter()
        .find(|e| e["kind"] == "passkey_added")
        .expect("passkey_added");
    assert_eq!(added["detail"]["passkeyId"], passkey_id.as_str());
    let logins: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "login" && e["detail"]["method"] == "passkey")
        .collect();
    assert_eq!(logins.len(), 2, "{events:?}");
}

#[tokio::test]
async fn registration_options_ask_for_user_verification_and_exclude_known_passkeys() {
    let (server, _) = start(config()).await;
    let (token, user_id, username) = server.signup("options").await;
    let options = server
        .gql(Some(&token), START_REGISTRATION, json!({}))
        .await
        .data("startPasskeyRegistration");
    let public_key = &options["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost");
    assert_eq!(public_key["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(public_key["authenticatorSelection"]["residentKey"], "preferred");
    assert_eq!(public_key["user"]["name"], username.as_str());
    assert_eq!(public_key["user"]["id"], user_handle(&user_id).as_str());
    let challenge = URL_SAFE_NO_PAD
        .decode(str_at(public_key, "/challenge"))
        .expect("base64url");
    assert_eq!(challenge.len(), 32, "256 random bits");
    let algorithms: Vec<i64> = public_key["pubKeyCredParams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["alg"].as_i64().unwrap())
        .collect();
    assert_eq!(algorithms, [-7, -257], "ES256 and RS256 only");
    assert_eq!(public_key["excludeCredentials"], json!([]));

    let mut authenticator = Authenticator::new();
    register(&server, &token, &mut authenticator, "first").await;
    let again = server
        .gql(Some(&token), START_REGISTRATION, json!({}))
        .await
        .data("startPasskeyRegistration");
    assert_eq!(again["publicKey"]["excludeCredentials"].as_array().unwrap().len(), 1);
    assert_ne!(again["publicKey"]["challenge"], public_key["challenge"]);

    let (_, login) = start_login(&server, Some(&username)).await;
    assert_eq!(login["publicKey"]["rpId"], "localhost");
    assert_eq!(login["publicKey"]["userVerification"], "required");
    assert_eq!(
        login["publicKey"]["allowCredentials"][0]["id"],
        again["publicKey"]["excludeCredentials"][0]["id"]
    );
    assert!(login.get("mediation").is_none(), "the page chooses the mediation");
}

#[tokio::test]
async fn registering_and_removing_need_a_fresh_signed_in_session() {
    let (server, _) = start(config()).await;
    server
        .gql(None, START_REGISTRATION, json!({}))
        .await
        .assert_code("UNAUTHENTICATED");
    let input = json!({ "name": "x", "credential": {} });
    server
        .gql(None, FINISH_REGISTRATION, json!({ "input": input }))
        .await
        .assert_code("UNAUTHENTICATED");
    server
        .gql(None, REMOVE, json!({ "id": uuid::Uuid::new_v4() }))
        .await
        .assert_code("UNAUTHENTICATED");

    let (token, _, _) = server.signup("stale").await;
    let mut authenticator = Authenticator::new();
    let passkey_id = register(&server, &token, &mut authenticator, "key").await;
    server.state.clock.advance(301);
    server
        .gql(Some(&token), START_REGISTRATION, json!({}))
        .await
        .assert_code("REAUTHENTICATION_REQUIRED");
    server
        .gql(Some(&token), REMOVE, json!({ "id": passkey_id }))
        .await
        .assert_code("REAUTHENTICATION_REQUIRED");
    let listed = server.gql(Some(&token), MY_PASSKEYS, json!({})).await.data("me");
    assert_eq!(listed["passkeys"].as_array().unwrap().len(), 1, "still there");
}

#[tokio::test]
async fn finishing_a_registration_checks_what_it_is_given() {
    let (server, _) = start(config()).await;
    let (token, _, _) = server.signup("finish").await;
    let mut authenticator = Authenticator::new();
    let finish = |name: &str, credential: Value| {
        let input = json!({ "name": name, "credential": credential });
        let token = token.clone();
        let server = &server;
        async move {
            server
                .gql(Some(&token), FINISH_REGISTRATION, json!({ "input": input }))
                .await
        }
    };

    // Not a registration answer at all.
    let garbage = finish("key", json!({ "id": "x" })).await;
    assert_bad_input(&garbage, "credential");
    assert_message(&garbage, "not a WebAuthn registration response");

    let options = server
        .gql(Some(&token), START_REGISTRATION, json!({}))
        .await
        .data("startPasskeyRegistration");
    let credential = authenticator.create(&options);
    assert_bad_input(&finish("", credential.clone()).await, "name");
    assert_bad_input(&finish(&"n".repeat(65), credential.clone()).await, "name");
    assert_bad_input(&finish("key", json!({ "garbage": true })).await, "credential");
    // A restarted registration: the answer to the first one no longer counts.
    let restarted = server
        .gql(Some(&token), START_REGISTRATION, json!({}))
        .await
        .data("startPasskeyRegistration");
    let stale = finish("key", credential).await;
    assert_bad_input(&stale, "credential");
    assert_message(&stale, "does not answer");
    // A failed finish spends the registration: it is answered once.
    let credential = authenticator.create(&restarted);
    let spent = finish("key", credential).await;
    assert_bad_input(&spent, "credential");
    assert_message(&spent, "no passkey registration is waiting");

    // Five minutes after its start, a registration is gone.
    let options = server
        .gql(Some(&token), START_REGISTRATION, json!({}))
        .await
        .data("startPasskeyRegistration");
    let credential = authenticator.create(&options);
    server.state.clock.advance(301);
    assert_bad_input(&finish("key", credential).await, "credential");
    let listed = server.gql(Some(&token), MY_PASSKEYS, json!({})).await.data("me");
    assert_eq!(listed["passkeys"], json!([]));
}

#[tokio::test]
async fn a_credential_registered_to_another_account_is_a_conflict() {
    let (server, _) = start(config()).await;
    let (first, _, _) = server.signup("first").await;
    let (second, _, _) = server.signup("second").await;
    let mut authenticator = Authenticator::new();
    let taken = register(&server, &first, &mut authenticator, "key").await;

    let options = server
        .gql(Some(&second), START_REGISTRATION, json!({}))
        .await
        .data("startPasskeyRegistration");
    let credential = authenticator.create(&options);
    // An authenticator that hands out a credential id already in use (a cloned or broken
    // one): stand the new id in for the first account's.
    let raw_id = URL_SAFE_NO_PAD.decode(str_at(&credential, "/rawId")).unwrap();
    {
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        entity::passkey::Entity::update_many()
            .col_expr(entity::passkey::Column::CredentialId, Expr::value(raw_id))
            .filter(entity::passkey::Column::Id.eq(uuid::Uuid::parse_str(&taken).unwrap()))
            .exec(&server.state.db)
            .await
            .unwrap();
    }
    let input = json!({ "name": "key", "credential": credential });
    let reply = server
        .gql(Some(&second), FINISH_REGISTRATION, json!({ "input": input }))
        .await;
    reply.assert_code("CONFLICT");
    assert_eq!(reply.body["errors"][0]["extensions"]["field"], "credential");
}

#[tokio::test]
async fn a_discoverable_passkey_signs_in_without_a_username() {
    let (server, _) = start(config()).await;
    let (token, user_id, _) = server.signup("discoverable").await;
    let (_, other_id, _) = server.signup("other").await;
    let mut authenticator = Authenticator::new();
    register(&server, &token, &mut authenticator, "phone").await;

    let (challenge, options) = start_login(&server, None).await;
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
    assert_eq!(options["publicKey"]["userVerification"], "required");
    // The soft authenticator needs the id offered, and leaves out the user handle that a
    // resident credential carries: put both in, as a browser's discoverable answer has them.
    let mut offered = options.clone();
    let credential_id = credential_ids(&server, &user_id).await.remove(0);
    offered["publicKey"]["allowCredentials"] = json!([{ "type": "public-key", "id": credential_id }]);
    let mut credential = authenticator.get(&offered);
    credential["response"]["userHandle"] = json!(user_handle(&user_id));
    let reply = finish_login(&server, &challenge, credential).await;
    assert_eq!(reply.data("finishPasskeyLogin")["user"]["id"], user_id.as_str());

    // No user handle, or another account's: refused.
    for handle in [Value::Null, json!(user_handle(&other_id))] {
        let (challenge, options) = start_login(&server, None).await;
        let mut offered = options.clone();
        offered["publicKey"]["allowCredentials"] = json!([{ "type": "public-key", "id": credential_id }]);
        let mut credential = authenticator.get(&offered);
        credential["response"]["userHandle"] = handle;
        finish_login(&server, &challenge, credential)
            .await
            .assert_code("UNAUTHENTICATED");
    }
}

/// The credential ids of a user's passkeys, base64url, as the database holds them.
async fn credential_ids(server: &TestServer, user_id: &str) -> Vec<String> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let user_id = uuid::Uuid::parse_str(user_id).unwrap();
    entity::passkey::Entity::find()
        .filter(entity::passkey::Column::UserId.eq(user_id))
        .all(&server.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| URL_SAFE_NO_PAD.encode(row.credential_id))
        .collect()
}

#[tokio::test]
async fn the_signature_counter_may_not_go_back() {
    let (server, admin) = start(config()).await;
    let (token, user_id, username) = server.signup("counter").await;
    let mut authenticator = Authenticator::new();
    register(&server, &token, &mut authenticator, "key").await;
    // Two sign-ins started together; the authenticator signs the first, then the second with a
    // higher counter. Once the second is in, the first's lower counter looks like a clone's.
    let (first, first_options) = start_login(&server, Some(&username)).await;
    let (second, second_options) = start_login(&server, Some(&username)).await;
    let first_credential = authenticator.get(&first_options);
    let second_credential = authenticator.get(&second_options);
    assert!(finish_login(&server, &second, second_credential)
        .await
        .data("finishPasskeyLogin")
        .is_object());
    finish_login(&server, &first, first_credential)
        .await
        .assert_code("UNAUTHENTICATED");
    let failed = events(&server, &admin, &user_id).await;
    assert!(failed.iter().any(|e| e["kind"] == "login_failed"
        && e["subjectId"] == user_id.as_str()
        && e["detail"]["method"] == "passkey"));
}

#[tokio::test]
async fn a_challenge_is_answered_once_and_for_five_minutes() {
    let (server, _) = start(config()).await;
    let (token, _, username) = server.signup("once").await;
    let mut authenticator = Authenticator::new();
    register(&server, &token, &mut authenticator, "key").await;

    let (challenge, options) = start_login(&server, Some(&username)).await;
    let credential = authenticator.get(&options);
    assert!(finish_login(&server, &challenge, credential.clone())
        .await
        .data("finishPasskeyLogin")
        .is_object());
    assert_bad_input(&finish_login(&server, &challenge, credential).await, "challenge");
    assert_bad_input(
        &finish_login(&server, "no-such-challenge", json!({ "id": "x" })).await,
        "credential",
    );

    let (challenge, options) = start_login(&server, Some(&username)).await;
    let credential = authenticator.get(&options);
    assert_bad_input(
        &finish_login(&server, "no-such-challenge", credential.clone()).await,
        "challenge",
    );
    server.state.clock.advance(301);
    assert_bad_input(&finish_login(&server, &challenge, credential).await, "challenge");
}

#[tokio::test]
async fn a_credential_that_does_not_verify_is_a_failed_login() {
    let (server, admin) = start(Config {
        rate_limit_login_user: 2,
        ..Config::for_test()
    })
    .await;
    let (token, user_id, username) = server.signup("tampered").await;
    let mut authenticator = Authenticator::new();
    register(&server, &token, &mut authenticator, "key").await;

    for _ in 0..2 {
        let (challenge, options) = start_login(&server, Some(&username)).await;
        let mut credential = authenticator.get(&options);
        let mut signature = URL_SAFE_NO_PAD
            .decode(str_at(&credential, "/response/signature"))
            .unwrap();
        let last = signature.len() - 1;
        signature[last] ^= 1;
        credential["response"]["signature"] = json!(URL_SAFE_NO_PAD.encode(signature));
        finish_login(&server, &challenge, credential)
            .await
            .assert_code("UNAUTHENTICATED");
    }
    let failures = events(&server, &admin, &user_id)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "login_failed" && e["subjectId"] == user_id.as_str())
        .count();
    assert_eq!(failures, 2);
    // The account's failed logins are used up: even the right passkey waits, as a password would.
    let reply = sign_in(&server, &username, &mut authenticator).await;
    reply.assert_code("RATE_LIMITED");
    let password = server
        .gql(
            None,
            "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }",
            json!({ "u": username, "p": crate::common::PASSWORD }),
        )
        .await;
    password.assert_code("RATE_LIMITED");
}

#[tokio::test]
async fn a_passkey_signs_in_only_to_its_own_account() {
    let (server, admin) = start(config()).await;
    let (mine, _, my_name) = server.signup("mine").await;
    let (theirs, their_id, their_name) = server.signup("theirs").await;
    let mut my_key = Authenticator::new();
    let mut their_key = Authenticator::new();
    register(&server, &mine, &mut my_key, "mine").await;
    register(&server, &theirs, &mut their_key, "theirs").await;
    // My passkey's answer, handed in on a sign-in started for them.
    let (_, my_options) = start_login(&server, Some(&my_name)).await;
    let (their_challenge, _) = start_login(&server, Some(&their_name)).await;
    let credential = my_key.get(&my_options);
    finish_login(&server, &their_challenge, credential)
        .await
        .assert_code("UNAUTHENTICATED");
    // Recorded against the account named, as a wrong password would be.
    let failed = events(&server, &admin, &their_id).await;
    assert!(
        failed
            .iter()
            .any(|e| e["kind"] == "login_failed" && e["subjectId"] == their_id.as_str()),
        "{failed:?}"
    );
}

#[tokio::test]
async fn unknown_names_get_a_challenge_like_any_other() {
    let (server, admin) = start(config()).await;
    let (token, _, with_passkey) = server.signup("known").await;
    let (_, plain_id, without_passkey) = server.signup("plain").await;
    let mut authenticator = Authenticator::new();
    register(&server, &token, &mut authenticator, "key").await;
    let unknown = unique("nobody");
    for name in [&unknown, &without_passkey] {
        let (challenge, options) = start_login(&server, Some(name)).await;
        assert_eq!(options["publicKey"]["rpId"], "localhost");
        assert_eq!(options["publicKey"]["userVerification"], "required");
        // The same made-up ids each time, as an account's own would be.
        let (_, again) = start_login(&server, Some(&name.to_uppercase())).await;
        assert_eq!(
            options["publicKey"]["allowCredentials"],
            again["publicKey"]["allowCredentials"]
        );
        // A real passkey (of another account) does not open it.
        let (_, real_options) = start_login(&server, Some(&with_passkey)).await;
        let credential = authenticator.get(&real_options);
        finish_login(&server, &challenge, credential)
            .await
            .assert_code("UNAUTHENTICATED");
    }
    // An existing account is the subject of its failure, passkeys or not.
    let subjects: Vec<Value> = events(&server, &admin, &plain_id)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "login_failed")
        .map(|e| e["subjectId"].clone())
        .collect();
    assert_eq!(subjects, [json!(plain_id)]);
}

#[tokio::test]
async fn removing_a_passkey_stops_it_signing_in() {
    let (server, admin) = start(config()).await;
    let (token, user_id, username) = server.signup("remove").await;
    let (other, _, _) = server.signup("other").await;
    let mut authenticator = Authenticator::new();
    let passkey_id = register(&server, &token, &mut authenticator, "old key").await;

    // Not the caller's passkey, or no passkey at all: NOT_FOUND either way.
    for (caller, id) in [(&other, passkey_id.clone()), (&token, uuid::Uuid::new_v4().to_string())] {
        server
            .gql(Some(caller), REMOVE, json!({ "id": id }))
            .await
            .assert_code("NOT_FOUND");
    }
    // A sign-in started before the removal cannot finish after it.
    let (challenge, options) = start_login(&server, Some(&username)).await;
    let pending = authenticator.get(&options);
    assert_eq!(
        server
            .gql(Some(&token), REMOVE, json!({ "id": passkey_id }))
            .await
            .data("removePasskey"),
        true
    );
    finish_login(&server, &challenge, pending)
        .await
        .assert_code("UNAUTHENTICATED");
    // The account no longer offers the credential, so the authenticator has nothing to sign with.
    let (_, options) = start_login(&server, Some(&username)).await;
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    assert!(authenticator
        .0
        .do_authentication(Authenticator::origin(), options)
        .is_err());
    let listed = server.gql(Some(&token), MY_PASSKEYS, json!({})).await.data("me");
    assert_eq!(listed["passkeys"], json!([]));
    let events = events(&server, &admin, &user_id).await;
    let removed = events
        .iter()
        .find(|e| e["kind"] == "passkey_removed")
        .expect("passkey_removed");
    assert_eq!(removed["detail"]["passkeyId"], passkey_id.as_str());
}

#[tokio::test]
async fn only_the_user_and_admins_read_passkeys() {
    let (server, admin) = start(config()).await;
    let (owner, owner_id, _) = server.signup("owner").await;
    let (member, member_id, _) = server.signup("member").await;
    let mut authenticator = Authenticator::new();
    register(&server, &member, &mut authenticator, "member key").await;
    let site = server
        .gql(
            Some(&owner),
            "mutation { createSite(input: {name: \"S\"}) { id code } }",
            json!({}),
        )
        .await
        .data("createSite");
    server
        .gql(
            Some(&member),
            "mutation($c: String!) { joinSite(code: $c) { id } }",
            json!({ "c": str_at(&site, "/code") }),
        )
        .await
        .data("joinSite");
    let query = "query($id: UUID!) { site(id: $id) { members { user { id passkeys { name } } } } }";
    let reply = server
        .gql(Some(&owner), query, json!({ "id": str_at(&site, "/id") }))
        .await;
    let members = reply.body["data"]["site"]["members"].as_array().unwrap().clone();
    let theirs = members.iter().position(|m| m["user"]["id"] == member_id).unwrap();
    let mine = members.iter().position(|m| m["user"]["id"] == owner_id).unwrap();
    assert_eq!(members[mine]["user"]["passkeys"], json!([]));
    assert_eq!(members[theirs]["user"]["passkeys"], Value::Null);
    let error = &reply.body["errors"][0];
    assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{}", reply.body);
    assert_eq!(error["path"], json!(["site", "members", theirs, "user", "passkeys"]));

    let seen = server
        .gql(
            Some(&admin),
            "query($id: UUID!) { user(id: $id) { passkeys { name } } }",
            json!({ "id": member_id }),
        )
        .await
        .data("user");
    assert_eq!(seen["passkeys"], json!([{ "name": "member key" }]));
}

#[tokio::test]
async fn one_document_finishes_one_passkey_login() {
    let (server, _) = start(config()).await;
    let reply = server
        .gql(
            None,
            "mutation($i: FinishPasskeyLoginInput!) { a: finishPasskeyLogin(input: $i) { token } b: finishPasskeyLogin(input: $i) { token } }",
            json!({ "i": { "challenge": "x", "credential": {} } }),
        )
        .await;
    reply.assert_code("GRAPHQL_VALIDATION_FAILED");
}

#[tokio::test]
async fn with_verification_required_a_passkey_waits_for_a_verified_address() {
    let (server, _) = start(config()).await;
    let email = format!("{}@example.com", unique("unverified"));
    let (reply, username) = email_verification::signup(&server, Some(&email)).await;
    let token = str_at(&reply.data("signup"), "/token");
    let mut authenticator = Authenticator::new();
    register(&server, &token, &mut authenticator, "laptop").await;

    // The operator turns verification on: the passkey still proves the user, but no session
    // opens until the address is verified, and a fresh link goes out.
    let strict = server
        .start_sharing_with_outbox(Config {
            require_verified_email: true,
            ..config()
        })
        .await;
    let refused = sign_in(&strict, &username, &mut authenticator).await;
    refused.assert_code("EMAIL_NOT_VERIFIED");
    assert!(refused.set_cookies().is_empty(), "no session cookie");
    let mail = verification_mail(&strict, &email, 0).await;
    strict
        .gql(None, VERIFY, json!({ "t": token_in(&mail) }))
        .await
        .data("verifyEmail");

    let payload = sign_in(&strict, &username, &mut authenticator)
        .await
        .data("finishPasskeyLogin");
    assert!(payload["token"].is_string(), "{payload}");
}
