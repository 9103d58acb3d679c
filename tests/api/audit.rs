//! The audit log: what is recorded, the `auditEvents` connection, and what never is.

use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{str_at, unique, TestServer, ADMIN_PASSWORD, PASSWORD};

const EVENTS: &str = "query($first: Int, $after: String, $user: UUID) {
    auditEvents(first: $first, after: $after, userId: $user) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { cursor node { id at kind actor { id username } subjectId ip userAgent detail } }
    }
}";

fn kinds(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| str_at(e, "/node/kind"))
        .collect()
}

#[tokio::test]
async fn security_events_are_recorded_with_actor_subject_and_client() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let signup = "mutation($u: String!) { signup(input: {username: $u, password: \"correct horse battery staple\"}) { token user { id } session { id } } }";
    let username = unique("audited");
    let response = server
        .http
        .post(server.url("/graphql"))
        .header("user-agent", "audit-test/1")
        .json(&json!({ "query": signup, "variables": { "u": username } }))
        .send()
        .await
        .unwrap();
    let payload = crate::common::Reply::from(response).await.data("signup");
    let (token, user_id) = (str_at(&payload, "/token"), str_at(&payload, "/user/id"));

    let login =
        "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token session { id } } }";
    server
        .gql(None, login, json!({ "u": username, "p": "wrong password!" }))
        .await
        .assert_code("UNAUTHENTICATED");
    let second = server
        .gql(None, login, json!({ "u": username, "p": PASSWORD }))
        .await
        .data("login");
    let second_session = str_at(&second, "/session/id");
    server
        .gql(
            Some(&token),
            "mutation($id: UUID!) { closeSession(id: $id) }",
            json!({ "id": second_session }),
        )
        .await
        .data("closeSession");
    server
        .gql(
            Some(&token),
            "mutation { updateProfile(input: {name: \"A\"}) { name } }",
            json!({}),
        )
        .await
        .data("updateProfile");
    server
        .gql(
            Some(&admin),
            "mutation($id: UUID!) { grantRoles(userId: $id, roles: [\"read\"]) { id } }",
            json!({ "id": user_id }),
        )
        .await
        .data("grantRoles");
    server
        .gql(Some(&token), "mutation { closeAllSessions }", json!({}))
        .await
        .data("closeAllSessions");

    let events = server
        .gql(Some(&admin), EVENTS, json!({ "user": user_id }))
        .await
        .data("auditEvents");
    assert_eq!(
        kinds(&events),
        vec![
            "sessions_closed",
            "roles_granted",
            "profile_updated",
            "session_closed",
            "login",
            "login_failed",
            "signup"
        ]
    );
    let nodes: Vec<&Value> = events["edges"].as_array().unwrap().iter().map(|e| &e["node"]).collect();
    let signup_event = nodes[6];
    assert_eq!(signup_event["actor"]["id"], user_id.as_str());
    assert_eq!(signup_event["subjectId"], user_id.as_str());
    assert_eq!(signup_event["ip"], "127.0.0.1");
    assert_eq!(signup_event["userAgent"], "audit-test/1");
    let failed = nodes[5];
    assert_eq!(failed["actor"], Value::Null);
    assert_eq!(failed["subjectId"], user_id.as_str());
    let granted = nodes[1];
    assert_eq!(granted["detail"]["roles"], json!(["read"]));
    assert_ne!(granted["actor"]["id"], user_id.as_str());
    assert_eq!(nodes[2]["detail"]["fields"], json!(["name"]));
    assert_eq!(nodes[3]["detail"]["sessionId"], second_session.as_str());

    // No password or token anywhere in the log.
    let everything = server
        .gql(Some(&admin), EVENTS, json!({ "first": 50 }))
        .await
        .data("auditEvents")
        .to_string();
    for secret in [PASSWORD, "wrong password!", ADMIN_PASSWORD, token.as_str()] {
        assert!(!everything.contains(secret), "{secret} leaked into the audit log");
    }
}

#[tokio::test]
async fn unknown_usernames_fail_with_no_actor_or_subject() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let login = "mutation($u: String!) { login(input: {username: $u, password: \"whatever it is\"}) { token } }";
    server
        .gql(None, login, json!({ "u": unique("ghost") }))
        .await
        .assert_code("UNAUTHENTICATED");
    let events = server
        .gql(Some(&admin), EVENTS, json!({ "first": 1 }))
        .await
        .data("auditEvents");
    let node = &events["edges"][0]["node"];
    assert_eq!(node["kind"], "login_failed");
    assert_eq!(node["actor"], Value::Null);
    assert_eq!(node["subjectId"], Value::Null);
}

#[tokio::test]
async fn admin_actions_and_logout_are_recorded() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let create = "mutation($u: String!) { createUser(input: {username: $u, password: \"correct horse battery staple\"}) { id } }";
    let created = str_at(
        &server
            .gql(Some(&admin), create, json!({ "u": unique("made") }))
            .await
            .data("createUser"),
        "/id",
    );
    server
        .gql(
            Some(&admin),
            "mutation($id: UUID!) { closeUserSessions(userId: $id) }",
            json!({ "id": created }),
        )
        .await
        .data("closeUserSessions");
    server
        .gql(
            Some(&admin),
            "mutation($id: UUID!) { revokeRoles(userId: $id, roles: [\"read\"]) { id } }",
            json!({ "id": created }),
        )
        .await
        .data("revokeRoles");
    server
        .gql(
            Some(&admin),
            "mutation($ids: [UUID!]!) { deleteUsers(ids: $ids) }",
            json!({ "ids": [created] }),
        )
        .await
        .data("deleteUsers");
    let events = server
        .gql(Some(&admin), EVENTS, json!({ "user": created }))
        .await
        .data("auditEvents");
    assert_eq!(
        kinds(&events),
        vec!["user_deleted", "roles_revoked", "sessions_closed", "user_created"]
    );

    let (token, user_id, _) = server.signup("leaver").await;
    server
        .gql(Some(&token), "mutation { logout }", json!({}))
        .await
        .data("logout");
    let events = server
        .gql(Some(&admin), EVENTS, json!({ "user": user_id, "first": 1 }))
        .await
        .data("auditEvents");
    assert_eq!(kinds(&events), vec!["logout"]);
}

#[tokio::test]
async fn audit_events_are_paged_newest_first() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (token, user_id, _) = server.signup("pager").await;
    for i in 0..4 {
        server.state.clock.advance(1);
        let update = format!("mutation {{ updateProfile(input: {{name: \"n{i}\"}}) {{ name }} }}");
        server.gql(Some(&token), &update, json!({})).await.data("updateProfile");
    }
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = server
            .gql(
                Some(&admin),
                EVENTS,
                json!({ "first": 2, "after": after, "user": user_id }),
            )
            .await
            .data("auditEvents");
        assert_eq!(page["totalCount"], 5);
        all.extend(page["edges"].as_array().unwrap().iter().map(|e| str_at(e, "/node/at")));
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = Some(str_at(&page, "/pageInfo/endCursor"));
    }
    assert_eq!(all.len(), 5);
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(all, sorted, "newest first");
    let bad = server
        .gql(Some(&admin), "{ auditEvents(first: 101) { totalCount } }", json!({}))
        .await;
    bad.assert_code("BAD_USER_INPUT");
    assert_eq!(bad.body["errors"][0]["extensions"]["field"], "first");
}
