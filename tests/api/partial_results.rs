//! Partial results (API.md §2, GraphQL spec §6.4.4): a refused field is `null` in `data`,
//! key present, with its error and code in `errors`; a `null` in a non-null position makes the
//! nearest nullable parent `null`.

use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{str_at, unique, Reply, TestServer, PASSWORD};

const CREATE: &str = "mutation($n: String!) { createSite(input: {name: $n}) { id code } }";
const JOIN: &str = "mutation($c: String!) { joinSite(code: $c) { id } }";

/// Signs a user up with an e-mail address; returns (token, id).
async fn signup_with_email(server: &TestServer, name: &str) -> (String, String) {
    let username = unique(name);
    let payload = server
        .gql(
            None,
            "mutation($u: String!, $p: String!, $e: String) { signup(input: {username: $u, password: $p, email: $e}) { token user { id } } }",
            json!({ "u": username, "p": PASSWORD, "e": format!("{username}@example.com") }),
        )
        .await
        .data("signup");
    (str_at(&payload, "/token"), str_at(&payload, "/user/id"))
}

/// A site owned by `owner` that `member` joined as a plain user; returns its id.
async fn shared_site(server: &TestServer, owner: &str, member: &str) -> String {
    let site = server
        .gql(Some(owner), CREATE, json!({ "n": "Shared" }))
        .await
        .data("createSite");
    server
        .gql(Some(member), JOIN, json!({ "c": str_at(&site, "/code") }))
        .await
        .data("joinSite");
    str_at(&site, "/id")
}

/// Signs up an owner and a member of one shared site; returns their tokens and the site's id.
async fn owner_and_member(server: &TestServer) -> (String, String, String) {
    let (owner, _, _) = server.signup("owner").await;
    let (member, _, _) = server.signup("member").await;
    let id = shared_site(server, &owner, &member).await;
    (owner, member, id)
}

/// The value at `pointer`, asserting that the key is there: `null` must be present, not missing.
fn present(body: &Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let object = body
        .pointer(parent)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no object at {parent} in {body}"));
    object
        .get(key)
        .unwrap_or_else(|| panic!("key {key} missing at {parent} in {body}"))
        .clone()
}

/// (path, code) of every error.
fn errors(reply: &Reply) -> Vec<(Value, String)> {
    reply.body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {}", reply.body))
        .iter()
        .map(|e| (e["path"].clone(), str_at(e, "/extensions/code")))
        .collect()
}

#[tokio::test]
async fn a_refused_field_is_null_and_the_rest_resolves() {
    let server = TestServer::start(Config::for_test()).await;
    let (_, member, id) = owner_and_member(&server).await;

    let reply = server
        .gql(
            Some(&member),
            "query($id: UUID!) { site(id: $id) { id name code } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body["data"],
        json!({ "site": { "id": id, "name": "Shared", "code": null } })
    );
    assert_eq!(errors(&reply), vec![(json!(["site", "code"]), "FORBIDDEN".into())]);
    // The null keeps the place the query gave its field (read from the text: a parsed
    // `Value` sorts its keys).
    let text = server
        .http
        .post(server.url("/graphql"))
        .bearer_auth(&member)
        .json(&json!({ "query": "query($id: UUID!) { site(id: $id) { code id name } }", "variables": { "id": id } }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(r#"{"data":{"site":{"code":null,"id":"#), "{text}");

    // Aliases: the path and the null use the response key.
    let reply = server
        .gql(
            Some(&member),
            "query($id: UUID!) { mine: site(id: $id) { label: name invite: code } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        reply.body["data"],
        json!({ "mine": { "label": "Shared", "invite": null } })
    );
    assert_eq!(errors(&reply), vec![(json!(["mine", "invite"]), "FORBIDDEN".into())]);

    // Every field of an object refused: the object is there with its nulls, not `null`.
    let reply = server
        .gql(
            Some(&member),
            "query($id: UUID!) { site(id: $id) { code } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(reply.body["data"], json!({ "site": { "code": null } }));

    // In a page: each site keeps its other fields, with `code` null in every edge.
    let reply = server
        .gql(
            Some(&member),
            "{ sites { totalCount edges { node { name code } } } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.body["data"]["sites"]["totalCount"], 1);
    assert_eq!(present(&reply.body, "/data/sites/edges/0/node/code"), Value::Null);
    assert_eq!(reply.body["data"]["sites"]["edges"][0]["node"]["name"], "Shared");
    assert_eq!(
        errors(&reply),
        vec![(json!(["sites", "edges", 0, "node", "code"]), "FORBIDDEN".into())]
    );
}

#[tokio::test]
async fn another_members_email_is_null_in_a_list() {
    let server = TestServer::start(Config::for_test()).await;
    let (owner, owner_id) = signup_with_email(&server, "owner").await;
    let (member, member_id) = signup_with_email(&server, "member").await;
    let id = shared_site(&server, &owner, &member).await;

    let query = "query($id: UUID!) { site(id: $id) { members { role user { id username email } } } }";
    let reply = server.gql(Some(&owner), query, json!({ "id": id })).await;
    let members = reply.body["data"]["site"]["members"].as_array().unwrap().clone();
    assert_eq!(members.len(), 2, "{}", reply.body);
    let index = |user_id: &str| members.iter().position(|m| m["user"]["id"] == user_id).unwrap();
    let (mine, theirs) = (index(&owner_id), index(&member_id));
    // The site admin reads their own address, and gets null for the member's.
    assert!(members[mine]["user"]["email"]
        .as_str()
        .unwrap()
        .ends_with("@example.com"));
    assert_eq!(
        present(&reply.body, &format!("/data/site/members/{theirs}/user/email")),
        Value::Null
    );
    assert!(members[theirs]["user"]["username"].is_string());
    assert_eq!(
        errors(&reply),
        vec![(json!(["site", "members", theirs, "user", "email"]), "FORBIDDEN".into())]
    );
}

#[tokio::test]
async fn a_refused_members_list_is_null_and_the_site_stays() {
    let server = TestServer::start(Config::for_test()).await;
    let (_, member, id) = owner_and_member(&server).await;

    // Guarded, so nullable (API.md §2): refused, `members` alone is null.
    let reply = server
        .gql(
            Some(&member),
            "query($id: UUID!) { me { username } site(id: $id) { id name members { role } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body["data"]["me"]["username"].is_string());
    assert_eq!(reply.body["data"]["site"]["id"], id.as_str());
    assert_eq!(present(&reply.body, "/data/site/members"), Value::Null);
    assert_eq!(errors(&reply), vec![(json!(["site", "members"]), "FORBIDDEN".into())]);

    // The same inside a page of sites.
    let reply = server
        .gql(
            Some(&member),
            "{ sites { edges { node { name members { role } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.body["data"]["sites"]["edges"][0]["node"]["name"], "Shared");
    assert_eq!(present(&reply.body, "/data/sites/edges/0/node/members"), Value::Null);
}

#[tokio::test]
async fn a_refused_non_null_field_nulls_its_nearest_nullable_parent() {
    let server = TestServer::start(Config::for_test()).await;
    let (_, member, id) = owner_and_member(&server).await;

    // `generateSiteCode: String!` is for site admins: refused, its null has nowhere nullable
    // to stop but `data` itself, although `leaveSite` after it ran.
    let reply = server
        .gql(
            Some(&member),
            "mutation($id: UUID!) { generateSiteCode(id: $id) leaveSite(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(present(&reply.body, "/data"), Value::Null);
    assert_eq!(errors(&reply), vec![(json!(["generateSiteCode"]), "FORBIDDEN".into())]);
}

#[tokio::test]
async fn admin_fields_refused_to_others_are_null() {
    let (server, admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (user, user_id, _) = server.signup("plain").await;
    let (_, other_id, _) = server.signup("other").await;

    // `user(id:)` is nullable: the rest resolves.
    let reply = server
        .gql(
            Some(&user),
            "query($id: UUID!) { me { id } user(id: $id) { id } }",
            json!({ "id": other_id }),
        )
        .await;
    assert_eq!(reply.body["data"]["me"]["id"], user_id.as_str());
    assert_eq!(present(&reply.body, "/data/user"), Value::Null);
    assert_eq!(errors(&reply), vec![(json!(["user"]), "FORBIDDEN".into())]);

    // `users` and `auditEvents` are guarded, so nullable: each is null beside `me`, and each
    // error keeps its path and code.
    for field in ["users", "auditEvents"] {
        let reply = server
            .gql(
                Some(&user),
                &format!("{{ me {{ id }} {field} {{ totalCount }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["data"]["me"]["id"], user_id.as_str());
        assert_eq!(present(&reply.body, &format!("/data/{field}")), Value::Null);
        assert_eq!(errors(&reply), vec![(json!([field]), "FORBIDDEN".into())]);
    }

    // An admin reads all of it.
    let reply = server
        .gql(
            Some(&admin),
            "{ users { edges { node { email } } } auditEvents(first: 1) { totalCount } }",
            json!({}),
        )
        .await;
    assert!(reply.body.get("errors").is_none(), "{}", reply.body);
}
