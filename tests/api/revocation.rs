//! A closed session never comes back: every way a session ends, checked again after the
//! user's other sessions have been used, through the bearer header, the cookie and the
//! webhook; a request dropped half-way through a change; a failed or unheard notification
//! between instances; password hashing that stays bounded when clients walk away.

use std::time::{Duration, Instant};

use gatehouse::Config;
use serde_json::json;

use crate::common::{postgres_url, str_at, TestServer, PASSWORD};

const LOGIN: &str =
    "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token session { id } } }";
const NEW_PASSWORD: &str = "a different long passphrase";

/// The ways a session of the user ends, each leaving the user with some other live session.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Logout,
    ClosedFromAnotherSession,
    CloseAllThenLoginAgain,
    ChangePassword,
    ResetPassword,
    ClosedByAnAdmin,
}

const ENDINGS: [Ending; 6] = [
    Ending::Logout,
    Ending::ClosedFromAnotherSession,
    Ending::CloseAllThenLoginAgain,
    Ending::ChangePassword,
    Ending::ResetPassword,
    Ending::ClosedByAnAdmin,
];

async fn login(server: &TestServer, username: &str, password: &str) -> (String, String) {
    let login = server
        .gql(None, LOGIN, json!({ "u": username, "p": password }))
        .await
        .data("login");
    (str_at(&login, "/token"), str_at(&login, "/session/id"))
}

/// Whether `token` is accepted by bearer `me`, by the cookie and by the webhook; all three
/// must agree.
async fn accepted(server: &TestServer, token: &str) -> bool {
    let bearer = server.gql(Some(token), "{ me { id } }", json!({})).await;
    let cookie = server.gql_with_cookie(token, "{ me { id } }", json!({})).await;
    let webhook = server
        .http
        .get(server.url("/auth/webhook"))
        .bearer_auth(token)
        .send()
        .await
        .expect("webhook")
        .status()
        .as_u16();
    let verdicts = [bearer.status, cookie.status, webhook];
    assert!(
        verdicts == [200; 3] || verdicts == [401; 3],
        "bearer, cookie and webhook disagree: {verdicts:?} ({})",
        bearer.body
    );
    verdicts[0] == 200 && bearer.body["data"]["me"]["id"].is_string()
}

/// Ends session `a` of `username` the way `ending` says; returns a session token of the user
/// that is live afterwards.
async fn end(server: &TestServer, ending: Ending, username: &str, a: (&str, &str), b: &str) -> String {
    let (a_token, a_id) = a;
    match ending {
        Ending::Logout => {
            server
                .gql(Some(a_token), "mutation { logout }", json!({}))
                .await
                .data("logout");
            b.to_owned()
        }
        Ending::ClosedFromAnotherSession => {
            let close = "mutation($id: UUID!) { closeSession(id: $id) }";
            server
                .gql(Some(b), close, json!({ "id": a_id }))
                .await
                .data("closeSession");
            b.to_owned()
        }
        Ending::CloseAllThenLoginAgain => {
            let closed = server.gql(Some(b), "mutation { closeAllSessions }", json!({})).await;
            assert_eq!(closed.data("closeAllSessions"), 3, "signup, a and b");
            login(server, username, PASSWORD).await.0
        }
        Ending::ChangePassword => {
            let change = "mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { token } }";
            let reply = server
                .gql(Some(b), change, json!({ "c": PASSWORD, "n": NEW_PASSWORD }))
                .await;
            str_at(&reply.data("changePassword"), "/token")
        }
        Ending::ResetPassword => {
            let token = crate::reset::mailed_reset_token(server, username).await;
            let reset =
                "mutation($t: String!, $p: String!) { resetPassword(input: {token: $t, newPassword: $p}) { token } }";
            let reply = server.gql(None, reset, json!({ "t": token, "p": NEW_PASSWORD })).await;
            str_at(&reply.data("resetPassword"), "/token")
        }
        Ending::ClosedByAnAdmin => {
            let admin = server.admin_token.as_deref().expect("an admin");
            let me = server.gql(Some(b), "{ me { id } }", json!({})).await.data("me");
            let close = "mutation($id: UUID!) { closeUserSessions(userId: $id) }";
            server
                .gql(Some(admin), close, json!({ "id": me["id"] }))
                .await
                .data("closeUserSessions");
            login(server, username, PASSWORD).await.0
        }
    }
}

#[tokio::test]
async fn a_closed_session_stays_closed_while_the_users_other_sessions_are_used() {
    let (server, _) = TestServer::start_with_admin(Config::for_test()).await;
    for ending in ENDINGS {
        let (first, _, username) = server.signup("revoked").await;
        let a = login(&server, &username, PASSWORD).await;
        let b = login(&server, &username, PASSWORD).await.0;
        for token in [&first, &a.0, &b] {
            assert!(accepted(&server, token).await, "{ending:?}: fresh sessions work");
        }
        let live = end(&server, ending, &username, (&a.0, &a.1), &b).await;
        // Used again and again: each use would put a forgotten entry back in the cache.
        for round in 0..3 {
            assert!(accepted(&server, &live).await, "{ending:?}: the live session works");
            assert!(
                !accepted(&server, &a.0).await,
                "{ending:?}: round {round}: the closed session came back"
            );
        }
        let listed = server
            .gql(Some(&live), "{ sessions { id } }", json!({}))
            .await
            .data("sessions");
        assert!(
            !listed.as_array().unwrap().iter().any(|s| s["id"] == a.1.as_str()),
            "{ending:?}: {listed}"
        );
    }
}

/// Makes every commit that deletes a session take `seconds` on PostgreSQL, so a client can
/// go away while the commit is under way.
async fn slow_session_deletes(server: &TestServer, seconds: f64) {
    let sql = format!(
        "CREATE OR REPLACE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER DELETE ON sessions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();"
    );
    sea_orm::ConnectionTrait::execute_unprepared(&server.state.db, &sql)
        .await
        .expect("trigger");
}

#[tokio::test]
async fn a_client_that_disconnects_during_the_commit_cannot_revive_its_session() {
    let Some(_) = postgres_url() else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, username) = server.signup("walks_away").await;
    let other = login(&server, &username, PASSWORD).await.0;
    assert!(accepted(&server, &token).await);
    slow_session_deletes(&server, 1.0).await;

    // The client gives up while the logout's commit is still running.
    let gone = server
        .http
        .post(server.url("/graphql"))
        .bearer_auth(&token)
        .timeout(Duration::from_millis(300))
        .json(&json!({ "query": "mutation { logout }" }))
        .send()
        .await;
    assert!(gone.is_err(), "the client was meant to give up first");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert!(accepted(&server, &other).await);
    assert!(!accepted(&server, &token).await, "the logout committed: it must hold");
}

/// Two instances on one PostgreSQL database, both trusting their caches.
async fn two_instances() -> Option<(TestServer, TestServer)> {
    postgres_url()?;
    let (first, _) = TestServer::start_with_admin_on_postgres(Config::for_test()).await;
    let second = first.start_sharing(Config::for_test()).await;
    for server in [&first, &second] {
        wait_until(|| server.state.sessions.is_trusted(), "the cache is trusted").await;
    }
    Some((first, second))
}

async fn wait_until(check: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_change_whose_notification_fails_is_not_made() {
    let Some((first, second)) = two_instances().await else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let (token, _, _) = first.signup("unheard").await;
    assert!(accepted(&second, &token).await, "cached on the second instance");

    first
        .state
        .sessions
        .faults()
        .fail_announcements
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = first.gql(Some(&token), "mutation { logout }", json!({})).await;
    refused.assert_code("INTERNAL_SERVER_ERROR");
    // Nothing changed, so neither instance may disagree with the database.
    assert!(accepted(&first, &token).await && accepted(&second, &token).await);
    assert_eq!(
        first
            .gql(Some(&token), "{ countSessions }", json!({}))
            .await
            .data("countSessions"),
        1
    );

    first
        .state
        .sessions
        .faults()
        .fail_announcements
        .store(false, std::sync::atomic::Ordering::SeqCst);
    first
        .gql(Some(&token), "mutation { logout }", json!({}))
        .await
        .data("logout");
    let started = Instant::now();
    while second.gql(Some(&token), "{ me { id } }", json!({})).await.status == 200 {
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "the second instance never heard"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!accepted(&second, &token).await);
}

#[tokio::test]
async fn an_instance_that_stops_hearing_its_peers_stops_trusting_its_cache() {
    let Some((first, second)) = two_instances().await else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let (token, user_id, _) = first.signup("deaf").await;
    assert!(accepted(&second, &token).await, "cached on the second instance");

    // The channel stays connected but delivers nothing, heartbeats included.
    let faults = second.state.sessions.faults();
    faults.deaf.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_until(
        || !second.state.sessions.is_trusted(),
        "the deaf instance distrusts its cache",
    )
    .await;
    // A change made behind everyone's back, announcing nothing: only the database knows.
    let delete = format!("DELETE FROM sessions WHERE user_id = '{user_id}'");
    sea_orm::ConnectionTrait::execute_unprepared(&first.state.db, &delete)
        .await
        .unwrap();
    assert!(!accepted(&second, &token).await, "served from a cache it cannot trust");

    faults.deaf.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_until(
        || second.state.sessions.is_trusted(),
        "trust comes back with the heartbeat",
    )
    .await;
    assert!(!accepted(&second, &token).await, "the cache started over");
}

#[tokio::test]
async fn hashing_stays_bounded_when_clients_disconnect() {
    // A cost that keeps a hash running long enough for a client to give up on it: about
    // 60 ms a hash on a fast core, well past the 20 ms the check below waits.
    let config = Config {
        argon2_memory_kib: 16 * 1024,
        argon2_iterations: 10,
        rate_limit_login_user: 1000,
        rate_limit_login_ip: 1000,
        ..Config::for_test()
    };
    let server = TestServer::start(config).await;
    let (_, _, username) = server.signup("impatient").await;
    let hasher = server.state.passwords.clone();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let login = |server: &TestServer| {
        let request = server
            .http
            .post(server.url("/graphql"))
            .json(&json!({ "query": LOGIN, "variables": { "u": username, "p": PASSWORD } }));
        tokio::spawn(request.send())
    };

    // One login per core starts hashing, then its client goes away mid-hash.
    let abandoned: Vec<_> = (0..cores).map(|_| login(&server)).collect();
    wait_until(|| hasher.running() == cores, "every core is hashing").await;
    abandoned.iter().for_each(|client| client.abort());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        hasher.running() > 0,
        "the abandoned hashes are meant to be still running"
    );

    // New logins must wait for those hashes, not run beside them.
    let patient: Vec<_> = (0..cores).map(|_| login(&server)).collect();
    for client in patient {
        assert_eq!(client.await.unwrap().unwrap().status(), 200);
    }
    wait_until(|| hasher.running() == 0, "every hash finishes").await;
    assert!(
        hasher.peak_running() <= cores,
        "{} hashes ran at once on {cores} cores",
        hasher.peak_running()
    );
}

#[tokio::test]
async fn me_follows_profile_changes_on_every_instance() {
    let first = TestServer::start(Config::for_test()).await;
    let second = match postgres_url() {
        Some(_) => Some(first.start_sharing(Config::for_test()).await),
        None => None,
    };
    let (token, _, _) = first.signup("renamed").await;
    let name = |server: &TestServer| {
        let token = token.clone();
        let server_url = server.url("/graphql");
        let http = server.http.clone();
        async move {
            let reply = http
                .post(server_url)
                .bearer_auth(token)
                .json(&json!({ "query": "{ me { name } }" }))
                .send()
                .await
                .unwrap();
            crate::common::Reply::from(reply).await.data("me")["name"].clone()
        }
    };
    let instances: Vec<&TestServer> = std::iter::once(&first).chain(second.as_ref()).collect();
    for server in &instances {
        assert_eq!(name(server).await, serde_json::Value::Null, "cached with no name");
    }
    let update = "mutation { updateProfile(input: {name: \"Ada\"}) { name } }";
    first.gql(Some(&token), update, json!({})).await.data("updateProfile");
    assert_eq!(
        name(&first).await,
        "Ada",
        "at once on the instance that made the change"
    );
    if let Some(second) = &second {
        let started = Instant::now();
        while name(second).await != "Ada" {
            assert!(
                started.elapsed() < Duration::from_millis(100),
                "the other instance kept the old row"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
