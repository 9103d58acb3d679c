//! `login`, `me`, `user(id)`, the `User.email` guard and the admin bootstrap.

use gatehouse::Config;
use serde_json::json;

use crate::common::{str_at, unique, TestServer, PASSWORD};

const LOGIN: &str = "mutation($u: String!, $p: String!) {
    login(input: {username: $u, password: $p}) { token expiresAt user { id username roles } session { id current } }
}";

#[tokio::test]
async fn login_opens_a_new_session_with_any_username_case() {
    let server = TestServer::start(Config::for_test()).await;
    let (_, user_id, username) = server.signup("Ivy").await;
    let reply = server
        .gql(None, LOGIN, json!({ "u": username.to_uppercase(), "p": PASSWORD }))
        .await;
    let payload = reply.data("login");
    assert_eq!(payload["user"]["id"], user_id.as_str());
    assert_eq!(payload["user"]["username"], username.as_str());
    assert_eq!(payload["session"]["current"], true);
    assert!(reply.set_cookies()[0].starts_with("gatehouse_session=ey"));

    let token = str_at(&payload, "/token");
    let count = server
        .gql(Some(&token), "{ countSessions }", json!({}))
        .await
        .data("countSessions");
    assert_eq!(count, 2, "signup and login each opened a session");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_error() {
    let server = TestServer::start(Config::for_test()).await;
    let (_, _, username) = server.signup("jack").await;
    let wrong_password = server
        .gql(None, LOGIN, json!({ "u": username, "p": "not the password" }))
        .await;
    let unknown_user = server
        .gql(None, LOGIN, json!({ "u": unique("nobody"), "p": PASSWORD }))
        .await;
    wrong_password.assert_code("UNAUTHENTICATED");
    unknown_user.assert_code("UNAUTHENTICATED");
    assert_eq!(
        wrong_password.body["errors"][0]["message"],
        unknown_user.body["errors"][0]["message"]
    );
    assert_eq!(wrong_password.status, 200);
    assert!(wrong_password.set_cookies().is_empty());
}

#[tokio::test]
async fn me_is_null_for_anonymous_callers() {
    let server = TestServer::start(Config::for_test()).await;
    let reply = server.gql(None, "{ me { id } }", json!({})).await;
    assert_eq!(reply.data("me"), serde_json::Value::Null);
}

#[tokio::test]
async fn email_is_visible_to_its_owner_and_admins_only() {
    let admin_name = unique("root");
    let config = Config {
        admin_username: Some(admin_name.clone()),
        admin_password: Some("admin password 1234".into()),
        ..Config::for_test()
    };
    let server = TestServer::start(config).await;
    let signup = "mutation($u: String!, $e: String) { signup(input: {username: $u, password: \"correct horse battery staple\", email: $e}) { token user { id } } }";
    let kim = server
        .gql(None, signup, json!({ "u": unique("kim"), "e": "kim@example.com" }))
        .await
        .data("signup");
    let (kim_token, kim_id) = (str_at(&kim, "/token"), str_at(&kim, "/user/id"));
    let (lee_token, lee_id, _) = server.signup("lee").await;

    let query = "query($id: UUID!) { user(id: $id) { id username email } }";
    let own = server
        .gql(Some(&kim_token), query, json!({ "id": kim_id }))
        .await
        .data("user");
    assert_eq!(own["email"], "kim@example.com");

    // Another user's record is not for plain users.
    let refused = server.gql(Some(&lee_token), query, json!({ "id": kim_id })).await;
    refused.assert_code("FORBIDDEN");
    let anonymous = server.gql(None, query, json!({ "id": lee_id })).await;
    anonymous.assert_code("UNAUTHENTICATED");

    let admin = server
        .gql(None, LOGIN, json!({ "u": admin_name, "p": "admin password 1234" }))
        .await
        .data("login");
    assert_eq!(admin["user"]["roles"], json!(["admin", "user"]));
    let admin_token = str_at(&admin, "/token");
    let seen = server
        .gql(Some(&admin_token), query, json!({ "id": kim_id }))
        .await
        .data("user");
    assert_eq!(seen["email"], "kim@example.com");
    let missing = server
        .gql(Some(&admin_token), query, json!({ "id": uuid::Uuid::new_v4() }))
        .await;
    assert_eq!(missing.data("user"), serde_json::Value::Null);
}

#[tokio::test]
async fn admin_bootstrap_creates_then_updates_the_admin() {
    let name = unique("boss");
    let first = Config {
        admin_username: Some(name.clone()),
        admin_password: Some("first admin password".into()),
        ..Config::for_test()
    };
    let server = TestServer::start(first).await;
    let reply = server
        .gql(None, LOGIN, json!({ "u": name, "p": "first admin password" }))
        .await;
    assert_eq!(reply.data("login")["user"]["roles"], json!(["admin", "user"]));

    // A restart with a new password brings the account up to date.
    let second = Config {
        admin_username: Some(name.clone()),
        admin_password: Some("second admin password".into()),
        ..Config::for_test()
    };
    let restarted = server.start_sharing(second).await;
    let old = restarted
        .gql(None, LOGIN, json!({ "u": name, "p": "first admin password" }))
        .await;
    old.assert_code("UNAUTHENTICATED");
    let new = restarted
        .gql(None, LOGIN, json!({ "u": name, "p": "second admin password" }))
        .await;
    assert_eq!(new.data("login")["user"]["roles"], json!(["admin", "user"]));
}

async fn login(server: &TestServer, username: String) -> crate::common::Reply {
    server.gql(None, LOGIN, json!({ "u": username, "p": PASSWORD })).await
}

/// The argon2 cost of `username`'s stored hash: memory, iterations, lanes.
async fn stored_cost(server: &TestServer, username: &str) -> (u32, u32, u32) {
    let user = gatehouse::domain::account::find_by_username(&server.state.db, username)
        .await
        .unwrap()
        .expect("the user");
    let hash = argon2::password_hash::PasswordHash::new(&user.password_hash).unwrap();
    let params = argon2::Params::try_from(&hash).unwrap();
    (params.m_cost(), params.t_cost(), params.p_cost())
}

#[tokio::test]
async fn a_login_rehashes_at_a_changed_cost_and_unknown_names_cost_what_most_accounts_cost() {
    let first = TestServer::start(Config::for_test()).await;
    let (_, _, alice) = first.signup("alice").await;
    let (_, _, bob) = first.signup("bob").await;
    assert_eq!(stored_cost(&first, &alice).await, (64, 1, 1));

    // Restarted with a higher cost: most stored hashes are still at the old one, and so is
    // the dummy hash an unknown name is checked against.
    let raised = Config {
        argon2_memory_kib: 128,
        argon2_iterations: 2,
        ..Config::for_test()
    };
    let second = first.start_sharing(raised.clone()).await;
    assert_eq!(second.state.passwords.dummy_cost(), Some((64, 1, 1)));
    login(&second, alice.clone()).await.data("login");
    assert_eq!(stored_cost(&second, &alice).await, (128, 2, 1));
    login(&second, bob.clone()).await.data("login");
    assert_eq!(stored_cost(&second, &bob).await, (128, 2, 1));
    // The password is the same, and keeps working.
    login(&second, alice.clone()).await.data("login");
    login(&second, unique("ghost")).await.assert_code("UNAUTHENTICATED");

    // Once most hashes are at the new cost, a restart's dummy hash follows.
    let third = first.start_sharing(raised).await;
    assert_eq!(third.state.passwords.dummy_cost(), Some((128, 2, 1)));
}

/// Sessions and counted login attempts of a user, straight from the database.
async fn sessions_and_attempts(server: &TestServer, user_id: &str, username: &str) -> (u64, u64) {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let user_id: uuid::Uuid = user_id.parse().unwrap();
    let sessions = entity::session::Entity::find()
        .filter(entity::session::Column::UserId.eq(user_id))
        .count(&server.state.db)
        .await
        .unwrap();
    let attempts = entity::attempt::Entity::find()
        .filter(entity::attempt::Column::UsernameKey.eq(username.to_lowercase()))
        .count(&server.state.db)
        .await
        .unwrap();
    (sessions, attempts)
}

/// Makes the database refuse every `login` audit row, or accept them again.
async fn refuse_login_audit_rows(server: &TestServer, refuse: bool) {
    use sea_orm::{ConnectionTrait, DatabaseBackend};
    let db = &server.state.db;
    let sql = match (db.get_database_backend(), refuse) {
        (DatabaseBackend::Postgres, true) => {
            "CREATE FUNCTION refuse_login_audit() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF NEW.kind = 'login' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER refuse_login_audit BEFORE INSERT ON audit_events
               FOR EACH ROW EXECUTE FUNCTION refuse_login_audit();"
        }
        (DatabaseBackend::Postgres, false) => "DROP TRIGGER refuse_login_audit ON audit_events",
        (_, true) => {
            "CREATE TRIGGER refuse_login_audit BEFORE INSERT ON audit_events WHEN NEW.kind = 'login'
             BEGIN SELECT RAISE(ABORT, 'refused'); END"
        }
        (_, false) => "DROP TRIGGER refuse_login_audit",
    };
    db.execute_unprepared(sql).await.expect("trigger");
}

#[tokio::test]
async fn a_login_whose_audit_row_is_refused_opens_no_session_and_still_counts() {
    let server = TestServer::start(Config::for_test()).await;
    let (_, user_id, username) = server.signup("kim").await;
    assert_eq!(sessions_and_attempts(&server, &user_id, &username).await, (1, 0));

    // The session, the audit row and the end of the attempt's count land together or not at all.
    refuse_login_audit_rows(&server, true).await;
    let refused = login(&server, username.clone()).await;
    refused.assert_code("INTERNAL_SERVER_ERROR");
    assert!(refused.set_cookies().is_empty());
    assert_eq!(
        sessions_and_attempts(&server, &user_id, &username).await,
        (1, 1),
        "no session opened, and the attempt still counts"
    );

    refuse_login_audit_rows(&server, false).await;
    login(&server, username.clone()).await.data("login");
    assert_eq!(sessions_and_attempts(&server, &user_id, &username).await, (2, 1));
}

#[tokio::test]
async fn on_postgres_a_login_writes_its_session_with_the_rest_of_its_success_in_one_statement() {
    let Some(_) = crate::common::postgres_url() else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let (server, statements) = TestServer::start_recording_statements(Config::for_test()).await;
    let (_, _, username) = server.signup("lee").await;
    statements.lock().unwrap().clear();
    login(&server, username).await.data("login");
    let seen = statements.lock().unwrap().clone();
    let opening: Vec<&String> = seen
        .iter()
        .filter(|sql| sql.contains(r#"INSERT INTO "sessions""#))
        .collect();
    assert_eq!(opening.len(), 1, "{seen:#?}");
    // The audit row, the end of the attempt's count and the read of the roles go with it.
    for part in [
        r#"INSERT INTO "audit_events""#,
        r#"DELETE FROM "attempts""#,
        r#"FROM "user_roles""#,
    ] {
        assert!(opening[0].contains(part), "{part} is not in {}", opening[0]);
    }
    let elsewhere = seen
        .iter()
        .filter(|sql| sql.contains("audit_events") || sql.contains("user_roles"));
    assert_eq!(elsewhere.count(), 1, "{seen:#?}");
}

#[tokio::test]
async fn a_client_that_leaves_during_its_logins_statement_gets_all_of_it_or_none() {
    let Some(_) = crate::common::postgres_url() else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let server = TestServer::start(Config::for_test()).await;
    let (_, user_id, username) = server.signup("leaves").await;
    let logins = || async {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        entity::audit_event::Entity::find()
            .filter(entity::audit_event::Column::Kind.eq("login"))
            .filter(entity::audit_event::Column::SubjectId.eq(user_id.parse::<uuid::Uuid>().unwrap()))
            .count(&server.state.db)
            .await
            .unwrap()
    };
    // Each login's audit row takes a second to write, so the client can go away mid-statement.
    sea_orm::ConnectionTrait::execute_unprepared(
        &server.state.db,
        "CREATE FUNCTION slow_login_audit() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$;
         CREATE TRIGGER slow_login_audit BEFORE INSERT ON audit_events
           FOR EACH ROW WHEN (NEW.kind = 'login') EXECUTE FUNCTION slow_login_audit();",
    )
    .await
    .expect("trigger");

    let gone = server
        .http
        .post(server.url("/graphql"))
        .timeout(std::time::Duration::from_millis(400))
        .json(&json!({ "query": LOGIN, "variables": { "u": username, "p": PASSWORD } }))
        .send()
        .await;
    assert!(gone.is_err(), "the client was meant to give up first");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (sessions, attempts) = sessions_and_attempts(&server, &user_id, &username).await;
    assert_eq!(
        (sessions - 1, attempts),
        (logins().await, 1 - logins().await),
        "the session, its audit row and the attempt's end land together"
    );

    // The connection went back to the pool in working order: the next login lands whole.
    login(&server, username.clone()).await.data("login");
    let (after, attempts_after) = sessions_and_attempts(&server, &user_id, &username).await;
    assert_eq!((after, attempts_after), (sessions + 1, attempts));
    assert_eq!(logins().await, after - 1);
}
