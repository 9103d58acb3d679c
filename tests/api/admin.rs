//! Administration: users, createUser, deleteUsers, closeUserSessions, grantRoles, revokeRoles.

use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{str_at, unique, TestServer, PASSWORD};

const CREATE: &str = "mutation($input: CreateUserInput!) { createUser(input: $input) { id username roles email } }";
const GRANT: &str = "mutation($id: UUID!, $roles: [String!]!) { grantRoles(userId: $id, roles: $roles) { roles } }";
const REVOKE: &str = "mutation($id: UUID!, $roles: [String!]!) { revokeRoles(userId: $id, roles: $roles) { roles } }";
const USERS: &str = "query($first: Int, $after: String, $search: String) {
    users(first: $first, after: $after, search: $search) {
        totalCount pageInfo { hasNextPage endCursor } edges { cursor node { username email } }
    }
}";

async fn me_roles(server: &TestServer, token: &str) -> Value {
    server.gql(Some(token), "{ me { roles } }", json!({})).await.data("me")["roles"].clone()
}

#[tokio::test]
async fn admin_operations_are_refused_to_others() {
    let (server, _) = TestServer::start_with_admin(Config::for_test()).await;
    let (user, user_id, _) = server.signup("plain").await;
    let operations = [
        (USERS, json!({})),
        ("{ auditEvents { totalCount } }", json!({})),
        (
            CREATE,
            json!({ "input": { "username": unique("x"), "password": PASSWORD } }),
        ),
        (
            "mutation($ids: [UUID!]!) { deleteUsers(ids: $ids) }",
            json!({ "ids": [user_id] }),
        ),
        (GRANT, json!({ "id": user_id, "roles": ["admin"] })),
        (REVOKE, json!({ "id": user_id, "roles": ["read"] })),
        (
            "mutation($id: UUID!) { closeUserSessions(userId: $id) }",
            json!({ "id": user_id }),
        ),
    ];
    for (query, variables) in operations {
        server
            .gql(Some(&user), query, variables.clone())
            .await
            .assert_code("FORBIDDEN");
        server.gql(None, query, variables).await.assert_code("UNAUTHENTICATED");
    }
    // Nothing changed: the user is still a plain user.
    assert_eq!(me_roles(&server, &user).await, json!(["user"]));
}

#[tokio::test]
async fn users_are_paged_and_searchable() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let tag = unique("pg");
    for i in 0..5 {
        let input =
            json!({ "username": format!("{tag}_{i}"), "password": PASSWORD, "email": format!("{tag}{i}@mail.test") });
        server
            .gql(Some(&admin), CREATE, json!({ "input": input }))
            .await
            .data("createUser");
    }
    let first = server
        .gql(Some(&admin), USERS, json!({ "first": 2, "search": tag.to_uppercase() }))
        .await
        .data("users");
    assert_eq!(first["totalCount"], 5);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let names: Vec<String> = first["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| str_at(e, "/node/username"))
        .collect();
    assert_eq!(names, vec![format!("{tag}_0"), format!("{tag}_1")]);

    let mut seen = names;
    let mut after = str_at(&first, "/pageInfo/endCursor");
    loop {
        let page = server
            .gql(
                Some(&admin),
                USERS,
                json!({ "first": 2, "after": after, "search": tag }),
            )
            .await
            .data("users");
        seen.extend(
            page["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| str_at(e, "/node/username")),
        );
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = str_at(&page, "/pageInfo/endCursor");
    }
    assert_eq!(seen, (0..5).map(|i| format!("{tag}_{i}")).collect::<Vec<_>>());

    // The email is searched too, and `%` / `_` are literal characters.
    let by_mail = server
        .gql(Some(&admin), USERS, json!({ "search": format!("{tag}3@MAIL") }))
        .await
        .data("users");
    assert_eq!(by_mail["totalCount"], 1);
    let wildcard = server
        .gql(Some(&admin), USERS, json!({ "search": "%" }))
        .await
        .data("users");
    assert_eq!(wildcard["totalCount"], 0);

    let too_many = server.gql(Some(&admin), USERS, json!({ "first": 101 })).await;
    too_many.assert_code("BAD_USER_INPUT");
    assert_eq!(too_many.body["errors"][0]["extensions"]["field"], "first");
    let bad_cursor = server
        .gql(Some(&admin), USERS, json!({ "after": "not-a-cursor" }))
        .await;
    bad_cursor.assert_code("BAD_USER_INPUT");
    assert_eq!(bad_cursor.body["errors"][0]["extensions"]["field"], "after");
}

#[tokio::test]
async fn create_user_with_roles() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let name = unique("made");
    let input = json!({ "username": name, "password": PASSWORD, "email": "made@example.com", "roles": ["write", "read", "write"] });
    let user = server
        .gql(Some(&admin), CREATE, json!({ "input": input }))
        .await
        .data("createUser");
    assert_eq!(user["roles"], json!(["read", "user", "write"]));
    assert_eq!(user["email"], "made@example.com");

    let login = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { user { roles } } }";
    let login = server
        .gql(None, login, json!({ "u": name, "p": PASSWORD }))
        .await
        .data("login");
    assert_eq!(login["user"]["roles"], json!(["read", "user", "write"]));

    let again = server
        .gql(
            Some(&admin),
            CREATE,
            json!({ "input": { "username": name, "password": PASSWORD } }),
        )
        .await;
    again.assert_code("CONFLICT");
    for roles in [
        json!(["Admin"]),
        json!(["site:admin"]),
        json!([""]),
        json!(["x".repeat(33)]),
    ] {
        let input = json!({ "username": unique("bad"), "password": PASSWORD, "roles": roles });
        let reply = server.gql(Some(&admin), CREATE, json!({ "input": input })).await;
        reply.assert_code("BAD_USER_INPUT");
        assert_eq!(reply.body["errors"][0]["extensions"]["field"], "roles");
    }
    let weak = server
        .gql(
            Some(&admin),
            CREATE,
            json!({ "input": { "username": unique("weak"), "password": "password" } }),
        )
        .await;
    assert_eq!(weak.body["errors"][0]["extensions"]["field"], "password");
}

#[tokio::test]
async fn granted_and_revoked_roles_apply_to_existing_tokens() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (token, user_id, _) = server.signup("promoted").await;
    server
        .gql(Some(&token), USERS, json!({}))
        .await
        .assert_code("FORBIDDEN");

    let granted = server
        .gql(
            Some(&admin),
            GRANT,
            json!({ "id": user_id, "roles": ["admin", "history"] }),
        )
        .await;
    assert_eq!(granted.data("grantRoles")["roles"], json!(["admin", "history", "user"]));
    // The token issued before the grant carries the new roles on its very next request.
    assert_eq!(me_roles(&server, &token).await, json!(["admin", "history", "user"]));
    assert!(
        server.gql(Some(&token), USERS, json!({})).await.data("users")["totalCount"]
            .as_i64()
            .unwrap()
            >= 2
    );

    let revoked = server
        .gql(Some(&admin), REVOKE, json!({ "id": user_id, "roles": ["admin"] }))
        .await;
    assert_eq!(revoked.data("revokeRoles")["roles"], json!(["history", "user"]));
    assert_eq!(me_roles(&server, &token).await, json!(["history", "user"]));
    server
        .gql(Some(&token), USERS, json!({}))
        .await
        .assert_code("FORBIDDEN");

    let keep_user = server
        .gql(Some(&admin), REVOKE, json!({ "id": user_id, "roles": ["user"] }))
        .await;
    keep_user.assert_code("BAD_USER_INPUT");
    assert_eq!(keep_user.body["errors"][0]["extensions"]["field"], "roles");
    let bad_name = server
        .gql(Some(&admin), GRANT, json!({ "id": user_id, "roles": ["site1:admin"] }))
        .await;
    bad_name.assert_code("BAD_USER_INPUT");
    let missing = uuid::Uuid::new_v4();
    server
        .gql(Some(&admin), GRANT, json!({ "id": missing, "roles": ["read"] }))
        .await
        .assert_code("NOT_FOUND");
    server
        .gql(Some(&admin), REVOKE, json!({ "id": missing, "roles": ["read"] }))
        .await
        .assert_code("NOT_FOUND");
}

#[tokio::test]
async fn the_last_admin_stays_an_admin() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let admin_id = str_at(
        &server.gql(Some(&admin), "{ me { id } }", json!({})).await.data("me"),
        "/id",
    );
    let reply = server
        .gql(Some(&admin), REVOKE, json!({ "id": admin_id, "roles": ["admin"] }))
        .await;
    reply.assert_code("BAD_USER_INPUT");
    let reply = server
        .gql(
            Some(&admin),
            "mutation($ids: [UUID!]!) { deleteUsers(ids: $ids) }",
            json!({ "ids": [admin_id] }),
        )
        .await;
    reply.assert_code("BAD_USER_INPUT");
    assert_eq!(me_roles(&server, &admin).await, json!(["admin", "user"]));

    // With a second admin, the first may step down.
    let (second, second_id, _) = server.signup("second").await;
    server
        .gql(Some(&admin), GRANT, json!({ "id": second_id, "roles": ["admin"] }))
        .await
        .data("grantRoles");
    let reply = server
        .gql(Some(&second), REVOKE, json!({ "id": admin_id, "roles": ["admin"] }))
        .await;
    assert_eq!(reply.data("revokeRoles")["roles"], json!(["user"]));
}

#[tokio::test]
async fn delete_users_returns_the_ids_deleted_and_ends_their_sessions() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (doomed, doomed_id, doomed_name) = server.signup("doomed").await;
    let (_, other_id, _) = server.signup("other").await;
    let (bystander, _, _) = server.signup("bystander").await;
    let missing = uuid::Uuid::new_v4().to_string();
    let reply = server
        .gql(
            Some(&admin),
            "mutation($ids: [UUID!]!) { deleteUsers(ids: $ids) }",
            json!({ "ids": [doomed_id, missing, other_id] }),
        )
        .await;
    assert_eq!(reply.data("deleteUsers"), json!([doomed_id, other_id]));
    server
        .gql(Some(&doomed), "{ me { id } }", json!({}))
        .await
        .assert_unauthorized();
    assert!(server
        .gql(Some(&bystander), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());
    let user = server
        .gql(
            Some(&admin),
            "query($id: UUID!) { user(id: $id) { id } }",
            json!({ "id": doomed_id }),
        )
        .await;
    assert_eq!(user.data("user"), Value::Null);
    // The name is free again.
    let signup =
        "mutation($u: String!) { signup(input: {username: $u, password: \"correct horse battery staple\"}) { token } }";
    server
        .gql(None, signup, json!({ "u": doomed_name }))
        .await
        .data("signup");
}

#[tokio::test]
async fn close_user_sessions_ends_every_session_of_that_user() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (token, user_id, username) = server.signup("laptop").await;
    let login = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }";
    let second = str_at(
        &server
            .gql(None, login, json!({ "u": username, "p": PASSWORD }))
            .await
            .data("login"),
        "/token",
    );
    let close = "mutation($id: UUID!) { closeUserSessions(userId: $id) }";
    assert_eq!(
        server
            .gql(Some(&admin), close, json!({ "id": user_id }))
            .await
            .data("closeUserSessions"),
        2
    );
    for token in [&token, &second] {
        server
            .gql(Some(token), "{ me { id } }", json!({}))
            .await
            .assert_unauthorized();
    }
    assert!(server
        .gql(Some(&admin), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());
    server
        .gql(Some(&admin), close, json!({ "id": uuid::Uuid::new_v4() }))
        .await
        .assert_code("NOT_FOUND");
}

#[tokio::test]
async fn deleting_a_sites_last_admin_is_refused() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (founder, founder_id, _) = server.signup("founder").await;
    let (_, deputy_id, _) = server.signup("deputy").await;
    let create = "mutation { createSite(input: {name: \"kept\"}) { id } }";
    let site_id = str_at(
        &server.gql(Some(&founder), create, json!({})).await.data("createSite"),
        "/id",
    );
    let delete = "mutation($ids: [UUID!]!) { deleteUsers(ids: $ids) }";

    let refused = server.gql(Some(&admin), delete, json!({ "ids": [founder_id] })).await;
    refused.assert_code("BAD_USER_INPUT");
    assert_eq!(refused.body["errors"][0]["extensions"]["field"], "ids");
    assert!(server
        .gql(Some(&founder), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());

    // With a second admin on the site, deleting both at once is refused too; one alone works.
    let set_role = "mutation($s: UUID!, $u: UUID!) { setSiteRole(siteId: $s, userId: $u, role: ADMIN) }";
    server
        .gql(Some(&founder), set_role, json!({ "s": site_id, "u": deputy_id }))
        .await
        .data("setSiteRole");
    server
        .gql(Some(&admin), delete, json!({ "ids": [founder_id, deputy_id] }))
        .await
        .assert_code("BAD_USER_INPUT");
    let deleted = server.gql(Some(&admin), delete, json!({ "ids": [founder_id] })).await;
    assert_eq!(deleted.data("deleteUsers"), json!([founder_id]));
}
