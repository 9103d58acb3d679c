//! Renewal and re-authentication (API.md §8): idle expiry, short tokens with rotating refresh
//! tokens and reuse detection, closeOtherSessions, reauthenticate. Every server here runs on
//! a stopped clock that the tests move, so no test sleeps for minutes and instances agree on
//! the time to the second.

use chrono::{DateTime, Utc};
use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{postgres_url, str_at, Reply, TestServer, ADMIN_PASSWORD, PASSWORD};
use crate::scale_out::{wait_until_trusted, within_propagation};

const IDLE: i64 = 600;
const ACCESS: i64 = 300;
const ME: &str = "{ me { id } }";
const LOGIN: &str = "mutation($u: String!, $p: String!) {
    login(input: {username: $u, password: $p}) { token expiresAt refreshToken session { id expiresAt lastAuthenticatedAt } }
}";
const REFRESH: &str = "mutation($r: String!) {
    refreshSession(refreshToken: $r) { token expiresAt refreshToken user { id } session { id expiresAt current } }
}";
const EVENTS: &str = "query($user: UUID) { auditEvents(first: 50, userId: $user) { edges { node { kind actor { id } subjectId detail } } } }";

fn config() -> Config {
    Config {
        session_idle_timeout: IDLE as u64,
        access_token_ttl: ACCESS as u64,
        ..Config::for_test()
    }
}

/// Stops the server's clock at `at`; returns it for chaining.
fn frozen(server: TestServer, at: DateTime<Utc>) -> TestServer {
    server.state.clock.freeze_at(at);
    server
}

async fn start(config: Config) -> (TestServer, String) {
    TestServer::start_with_admin_on_a_stopped_clock(config).await
}

/// Signs a new user up and logs in: (login payload, user id, username, cookie token).
async fn login(server: &TestServer) -> (Value, String, String, String) {
    let (_, user_id, username) = server.signup("renewing").await;
    let reply = server.gql(None, LOGIN, json!({ "u": username, "p": PASSWORD })).await;
    let cookie = reply
        .set_cookies()
        .iter()
        .find_map(|c| {
            c.strip_prefix(&format!("{}=", server.state.config.cookie_name))
                .map(str::to_owned)
        })
        .and_then(|c| c.split(';').next().map(str::to_owned))
        .expect("login sets the session cookie");
    (reply.data("login"), user_id, username, cookie)
}

async fn webhook(server: &TestServer, token: &str) -> Reply {
    let request = server.http.get(server.url("/auth/webhook")).bearer_auth(token);
    Reply::from(request.send().await.expect("webhook")).await
}

async fn refresh(server: &TestServer, refresh_token: &str) -> Reply {
    server.gql(None, REFRESH, json!({ "r": refresh_token })).await
}

/// The audit events of `user_id`, newest first, as (kind, detail), read by an admin signed
/// in just now (earlier tokens may have expired as the clock moved).
async fn events(server: &TestServer, user_id: &str) -> Vec<(String, Value)> {
    let config = &server.state.config;
    let credentials = json!({ "u": config.admin_username, "p": ADMIN_PASSWORD });
    let admin = str_at(&server.gql(None, LOGIN, credentials).await.data("login"), "/token");
    let reply = server.gql(Some(&admin), EVENTS, json!({ "user": user_id })).await;
    reply.data("auditEvents")["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (str_at(e, "/node/kind"), e["node"]["detail"].clone()))
        .collect()
}

fn time_at(value: &Value, pointer: &str) -> DateTime<Utc> {
    str_at(value, pointer).parse().expect("an RFC 3339 time")
}

#[tokio::test]
async fn an_idle_session_ends_on_bearer_cookie_and_webhook_alike() {
    // Tokens as long as the session, so that each path alone keeps it in use.
    let (server, _) = start(Config {
        access_token_ttl: 0,
        ..config()
    })
    .await;
    let clock = server.state.clock.clone();
    for path in ["bearer", "cookie", "webhook"] {
        let (payload, user_id, _, cookie) = login(&server).await;
        let token = str_at(&payload, "/token");
        let use_it = || async {
            match path {
                "bearer" => server.gql(Some(&token), ME, json!({})).await.status,
                "cookie" => server.gql_with_cookie(&cookie, ME, json!({})).await.status,
                _ => webhook(&server, &token).await.status,
            }
        };
        for _ in 0..3 {
            clock.advance(IDLE - 1);
            assert_eq!(
                use_it().await,
                200,
                "{path}: a use keeps the session for another {IDLE} s"
            );
        }
        clock.advance(IDLE);
        assert_eq!(use_it().await, 401, "{path}: idle for {IDLE} s");
        // Every path refuses it now, and it stays ended.
        let reply = server.gql_with_cookie(&cookie, ME, json!({})).await;
        reply.assert_unauthorized();
        assert!(
            reply.set_cookies().iter().any(|c| c.contains("Max-Age=0")),
            "{path}: the cookie is cleared"
        );
        server.gql(Some(&token), ME, json!({})).await.assert_unauthorized();
        assert_eq!(webhook(&server, &token).await.status, 401);
        let ended: Vec<_> = events(&server, &user_id)
            .await
            .into_iter()
            .filter(|(kind, detail)| kind == "session_closed" && detail["reason"] == "idle")
            .collect();
        assert_eq!(ended.len(), 1, "{path}: one idle ending recorded");
        assert_eq!(ended[0].1["sessionId"], payload["session"]["id"]);
    }
}

#[tokio::test]
async fn a_refresh_is_a_use_and_an_idle_session_cannot_be_refreshed() {
    let (server, _) = start(config()).await;
    let clock = server.state.clock.clone();
    let (payload, _, _, _) = login(&server).await;
    let mut refresh_token = str_at(&payload, "/refreshToken");
    for _ in 0..3 {
        clock.advance(IDLE - 1);
        let renewed = refresh(&server, &refresh_token).await.data("refreshSession");
        refresh_token = str_at(&renewed, "/refreshToken");
        assert!(server
            .gql(Some(&str_at(&renewed, "/token")), ME, json!({}))
            .await
            .data("me")
            .is_object());
    }
    clock.advance(IDLE);
    refresh(&server, &refresh_token).await.assert_code("UNAUTHENTICATED");
    // Even a clock put back finds it gone: it was closed, not merely judged idle.
    clock.advance(-IDLE + 1);
    refresh(&server, &refresh_token).await.assert_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn idle_sessions_leave_the_lists_and_other_sessions_stay() {
    let (server, _) = start(Config {
        access_token_ttl: 0,
        ..config()
    })
    .await;
    let clock = server.state.clock.clone();
    let (payload, _, username, _) = login(&server).await;
    let idle_token = str_at(&payload, "/token");
    clock.advance(IDLE / 2);
    let active = server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .data("login");
    let active_token = str_at(&active, "/token");
    let listing = "{ countSessions sessions { id } }";
    assert_eq!(
        server
            .gql(Some(&active_token), listing, json!({}))
            .await
            .data("countSessions"),
        3
    );
    clock.advance(IDLE / 2 + 1);
    // Not asked about since: the signup's session and the first login's are both idle now.
    let reply = server.gql(Some(&active_token), listing, json!({})).await;
    assert_eq!(reply.data("countSessions"), 1);
    assert_eq!(reply.data("sessions"), json!([{ "id": active["session"]["id"] }]));
    // Closing counts what the user could still use, as countSessions did.
    let other_login = server.gql(None, LOGIN, json!({ "u": username, "p": PASSWORD })).await;
    let other_active = str_at(&other_login.data("login"), "/token");
    let closed = server
        .gql(Some(&active_token), "mutation { closeOtherSessions }", json!({}))
        .await;
    assert_eq!(closed.data("closeOtherSessions"), 1);
    server
        .gql(Some(&other_active), ME, json!({}))
        .await
        .assert_unauthorized();
    server.gql(Some(&idle_token), ME, json!({})).await.assert_unauthorized();
}

#[tokio::test]
async fn checking_a_session_writes_nothing_to_the_database() {
    let config = Config {
        session_idle_timeout: IDLE as u64,
        ..Config::for_test()
    };
    let (server, statements) = TestServer::start_recording_statements(config).await;
    let (token, _, _) = server.signup("quiet").await;
    assert!(server.gql(Some(&token), ME, json!({})).await.data("me").is_object());
    statements.lock().unwrap().clear();
    for _ in 0..20 {
        assert!(server.gql(Some(&token), ME, json!({})).await.data("me").is_object());
        assert_eq!(webhook(&server, &token).await.status, 200);
    }
    let writes: Vec<String> = statements
        .lock()
        .unwrap()
        .iter()
        .filter(|sql| !sql.trim_start().to_uppercase().starts_with("SELECT"))
        // The batched last-seen write runs on its own timer, never on a request.
        .filter(|sql| !sql.contains("\"last_seen_at\" ="))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "writes on the request path: {writes:?}");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_the_session_keeps_its_lifetime() {
    // No idle timeout: this test crosses the whole session lifetime in two steps.
    let (server, _) = start(Config {
        session_idle_timeout: 0,
        ..config()
    })
    .await;
    let clock = server.state.clock.clone();
    let now = clock.now();
    let (payload, user_id, _, cookie) = login(&server).await;
    let token = str_at(&payload, "/token");
    let first_refresh = str_at(&payload, "/refreshToken");
    let session_expires = time_at(&payload, "/session/expiresAt");
    assert_eq!(time_at(&payload, "/expiresAt").timestamp(), now.timestamp() + ACCESS);
    assert_eq!(session_expires.timestamp(), now.timestamp() + 3600);

    clock.advance(ACCESS + 1);
    server.gql(Some(&token), ME, json!({})).await.assert_unauthorized();
    // The cookie lives as long as the session: browsers never need to refresh.
    assert!(server
        .gql_with_cookie(&cookie, ME, json!({}))
        .await
        .data("me")
        .is_object());

    let renewed = refresh(&server, &first_refresh).await.data("refreshSession");
    assert_eq!(renewed["session"]["id"], payload["session"]["id"], "the same session");
    assert_eq!(renewed["session"]["current"], true);
    assert_eq!(renewed["user"]["id"], json!(user_id));
    assert_eq!(
        time_at(&renewed, "/session/expiresAt"),
        session_expires,
        "the lifetime does not move"
    );
    assert_eq!(
        time_at(&renewed, "/expiresAt").timestamp(),
        clock.now().timestamp() + ACCESS
    );
    let second_refresh = str_at(&renewed, "/refreshToken");
    assert_ne!(second_refresh, first_refresh);
    assert!(server
        .gql(Some(&str_at(&renewed, "/token")), ME, json!({}))
        .await
        .data("me")
        .is_object());

    // Near the end of the session, a token never outlives it.
    clock.advance(3600 - ACCESS - 1 - 60);
    let last = refresh(&server, &second_refresh).await.data("refreshSession");
    assert_eq!(time_at(&last, "/expiresAt"), session_expires);
    clock.advance(61);
    refresh(&server, &str_at(&last, "/refreshToken"))
        .await
        .assert_code("UNAUTHENTICATED");

    let kinds: Vec<String> = events(&server, &user_id).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "token_refreshed").count(), 2, "{kinds:?}");
}

#[tokio::test]
async fn a_spent_refresh_token_within_the_grace_gets_the_pair_that_replaced_it() {
    let (server, _) = start(config()).await;
    let clock = server.state.clock.clone();
    let (payload, _, _, _) = login(&server).await;
    let spent = str_at(&payload, "/refreshToken");
    // Two tabs racing with the same token: both are answered, with the same successor.
    let (a, b) = tokio::join!(refresh(&server, &spent), refresh(&server, &spent));
    let (a, b) = (a.data("refreshSession"), b.data("refreshSession"));
    assert_eq!(a["refreshToken"], b["refreshToken"]);
    clock.advance(10);
    let late_tab = refresh(&server, &spent).await.data("refreshSession");
    assert_eq!(
        late_tab["refreshToken"], a["refreshToken"],
        "10 seconds is still the grace"
    );
    // The successor itself works once, and the chain goes on.
    let next = refresh(&server, &str_at(&a, "/refreshToken"))
        .await
        .data("refreshSession");
    assert!(server
        .gql(Some(&str_at(&next, "/token")), ME, json!({}))
        .await
        .data("me")
        .is_object());
}

#[tokio::test]
async fn a_refresh_token_replayed_after_the_grace_closes_the_session() {
    let (server, _) = start(config()).await;
    let clock = server.state.clock.clone();
    let (payload, user_id, username, cookie) = login(&server).await;
    let spent = str_at(&payload, "/refreshToken");
    let renewed = refresh(&server, &spent).await.data("refreshSession");
    let (token, current) = (str_at(&renewed, "/token"), str_at(&renewed, "/refreshToken"));
    // Another session of the same user is not touched by the replay.
    let other = server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .data("login");

    clock.advance(11);
    refresh(&server, &spent).await.assert_code("UNAUTHENTICATED");
    server.gql(Some(&token), ME, json!({})).await.assert_unauthorized();
    server
        .gql_with_cookie(&cookie, ME, json!({}))
        .await
        .assert_unauthorized();
    refresh(&server, &current).await.assert_code("UNAUTHENTICATED");
    assert!(server
        .gql(Some(&str_at(&other, "/token")), ME, json!({}))
        .await
        .data("me")
        .is_object());

    let reused: Vec<_> = events(&server, &user_id)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "refresh_token_reused")
        .collect();
    assert_eq!(reused.len(), 1);
    assert_eq!(reused[0].1["sessionId"], payload["session"]["id"]);
}

#[tokio::test]
async fn forged_and_malformed_refresh_tokens_close_nothing() {
    let (server, _) = start(config()).await;
    let (payload, _, _, _) = login(&server).await;
    let genuine = str_at(&payload, "/refreshToken");
    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    parts[3] = "A".repeat(43);
    let wrong_chain = parts.join(".");
    let mut older = genuine.split('.').map(str::to_owned).collect::<Vec<_>>();
    older[2] = "B".repeat(43);
    let wrong_session_secret = older.join(".");
    for forged in [
        String::new(),
        "not a token".into(),
        wrong_chain,
        wrong_session_secret,
        str_at(&payload, "/token"),
    ] {
        refresh(&server, &forged).await.assert_code("UNAUTHENTICATED");
    }
    assert!(server
        .gql(Some(&str_at(&payload, "/token")), ME, json!({}))
        .await
        .data("me")
        .is_object());
    assert!(refresh(&server, &genuine).await.data("refreshSession").is_object());
}

#[tokio::test]
async fn without_access_token_ttl_there_are_no_refresh_tokens() {
    let server = TestServer::start(Config::for_test()).await;
    let (_, _, username) = server.signup("plain").await;
    let payload = server
        .gql(None, LOGIN, json!({ "u": username, "p": PASSWORD }))
        .await
        .data("login");
    assert_eq!(payload["refreshToken"], Value::Null);
    assert_eq!(payload["expiresAt"], payload["session"]["expiresAt"]);
    refresh(&server, "anything").await.assert_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn close_other_sessions_keeps_exactly_the_current_one() {
    let (server, _) = start(config()).await;
    let (payload, user_id, username, _) = login(&server).await;
    let mut others = vec![];
    for _ in 0..2 {
        let login = server.gql(None, LOGIN, json!({ "u": username, "p": PASSWORD })).await;
        others.push(str_at(&login.data("login"), "/token"));
    }
    let (stranger, _, _) = server.signup("stranger").await;
    let token = str_at(&payload, "/token");
    let reply = server
        .gql(Some(&token), "mutation { closeOtherSessions }", json!({}))
        .await;
    // The signup's session and the two other logins.
    assert_eq!(reply.data("closeOtherSessions"), 3);
    assert!(reply.set_cookies().is_empty(), "the current session's cookie stays");
    for other in &others {
        server.gql(Some(other), ME, json!({})).await.assert_unauthorized();
    }
    let listing = server.gql(Some(&token), "{ sessions { id current } }", json!({})).await;
    assert_eq!(
        listing.data("sessions"),
        json!([{ "id": payload["session"]["id"], "current": true }])
    );
    assert!(server.gql(Some(&stranger), ME, json!({})).await.data("me").is_object());
    let again = server
        .gql(Some(&token), "mutation { closeOtherSessions }", json!({}))
        .await;
    assert_eq!(again.data("closeOtherSessions"), 0);
    let closed = events(&server, &user_id).await;
    // Both at the same (stopped) time, so in no particular order.
    let mut counts: Vec<u64> = closed
        .iter()
        .filter(|(kind, _)| kind == "sessions_closed")
        .filter_map(|(_, detail)| detail["count"].as_u64())
        .collect();
    counts.sort();
    assert_eq!(counts, [0, 3]);
    server
        .gql(None, "mutation { closeOtherSessions }", json!({}))
        .await
        .assert_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn reauthenticate_marks_the_session_fresh_and_counts_wrong_passwords() {
    let (server, _) = start(Config {
        rate_limit_login_user: 2,
        ..config()
    })
    .await;
    let clock = server.state.clock.clone();
    let (payload, user_id, _, _) = login(&server).await;
    let token = str_at(&payload, "/token");
    let signed_in_at = time_at(&payload, "/session/lastAuthenticatedAt");
    assert_eq!(signed_in_at.timestamp(), clock.now().timestamp());
    clock.advance(100);
    let reauth =
        "mutation($input: ReauthenticateInput!) { reauthenticate(input: $input) { id current lastAuthenticatedAt } }";

    for (input, field) in [
        (json!({}), "input"),
        (json!({ "password": PASSWORD, "code": "123456" }), "input"),
        (json!({ "code": "123456" }), "code"),
        (json!({ "recoveryCode": "abcd-efgh" }), "recoveryCode"),
    ] {
        let reply = server.gql(Some(&token), reauth, json!({ "input": input })).await;
        reply.assert_code("BAD_USER_INPUT");
        assert_eq!(reply.body["errors"][0]["extensions"]["field"], field, "{input}");
    }
    let session = server
        .gql(Some(&token), reauth, json!({ "input": { "password": PASSWORD } }))
        .await
        .data("reauthenticate");
    assert_eq!(session["id"], payload["session"]["id"]);
    assert_eq!(session["current"], true);
    assert_eq!(time_at(&session, "/lastAuthenticatedAt"), clock.now());
    let listed = server
        .gql(Some(&token), "{ sessions { current lastAuthenticatedAt } }", json!({}))
        .await;
    let times: Vec<(bool, DateTime<Utc>)> = listed
        .data("sessions")
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| (s["current"] == true, time_at(s, "/lastAuthenticatedAt")))
        .collect();
    assert!(times.contains(&(true, clock.now())), "{times:?}");
    assert!(
        times.contains(&(false, signed_in_at)),
        "the other session is not made fresh: {times:?}"
    );

    // Wrong passwords are failed logins: the third within the window is refused unhashed.
    for _ in 0..2 {
        let reply = server
            .gql(
                Some(&token),
                reauth,
                json!({ "input": { "password": "wrong password!" } }),
            )
            .await;
        reply.assert_code("BAD_USER_INPUT");
        assert_eq!(reply.body["errors"][0]["extensions"]["field"], "password");
    }
    let reply = server
        .gql(Some(&token), reauth, json!({ "input": { "password": PASSWORD } }))
        .await;
    reply.assert_code("RATE_LIMITED");
    server
        .gql(None, reauth, json!({ "input": { "password": PASSWORD } }))
        .await
        .assert_code("UNAUTHENTICATED");

    let kinds: Vec<String> = events(&server, &user_id).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "reauthenticated").count(), 1, "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "login_failed").count(),
        0,
        "reauthentication is not a login: {kinds:?}"
    );
}

/// Two instances on PostgreSQL with stopped clocks that agree; `None` without PostgreSQL.
async fn two_instances(config: Config) -> Option<(TestServer, TestServer, String)> {
    postgres_url()?;
    let (first, admin) = TestServer::start_with_admin_on_postgres(config.clone()).await;
    let second = first.start_sharing(config).await;
    wait_until_trusted(&first, true).await;
    wait_until_trusted(&second, true).await;
    let now = Utc::now();
    Some((frozen(first, now), frozen(second, now), admin))
}

#[tokio::test]
async fn a_replayed_refresh_token_closes_the_session_on_both_instances() {
    let Some((first, second, _)) = two_instances(config()).await else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let (payload, _, _, _) = login(&first).await;
    let spent = str_at(&payload, "/refreshToken");
    let renewed = refresh(&second, &spent).await.data("refreshSession");
    let token = str_at(&renewed, "/token");
    for server in [&first, &second] {
        assert!(server.gql(Some(&token), ME, json!({})).await.data("me").is_object());
    }
    for server in [&first, &second] {
        server.state.clock.advance(11);
    }
    refresh(&second, &spent).await.assert_code("UNAUTHENTICATED");
    second.gql(Some(&token), ME, json!({})).await.assert_unauthorized();
    within_propagation("a replay on the second instance", || async {
        first.gql(Some(&token), ME, json!({})).await.status == 401
    })
    .await;
}

#[tokio::test]
async fn idle_time_counts_uses_on_every_instance() {
    let long_tokens = Config {
        access_token_ttl: 0,
        ..config()
    };
    let Some((first, second, _)) = two_instances(long_tokens).await else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let advance = |seconds| {
        first.state.clock.advance(seconds);
        second.state.clock.advance(seconds);
    };
    let (token, _, _) = first.signup("wandering").await;
    // Both instances cache the session, then only the first one sees it used.
    assert!(second.gql(Some(&token), ME, json!({})).await.data("me").is_object());
    for _ in 0..3 {
        advance(IDLE - 1);
        assert!(first.gql(Some(&token), ME, json!({})).await.data("me").is_object());
    }
    // Once the first instance's batch of last-seen times is written, the second one agrees
    // the session is in use, although its own cached copy last saw it long ago.
    first.state.sessions.flush_last_seen().await.unwrap();
    advance(IDLE - 1);
    assert!(second.gql(Some(&token), ME, json!({})).await.data("me").is_object());
    // Idle on both now: the second instance ends it, and the first hears of it.
    advance(IDLE);
    second.gql(Some(&token), ME, json!({})).await.assert_unauthorized();
    within_propagation("an idle ending on the second instance", || async {
        first.gql(Some(&token), ME, json!({})).await.status == 401
    })
    .await;
}
