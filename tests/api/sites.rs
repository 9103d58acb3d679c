//! Sites: operations, site-scoped roles and their guards, invitation codes, pagination,
//! DataLoaders and the live effect of role changes.

use gatehouse::Config;
use serde_json::{json, Value};

use crate::common::{str_at, TestServer};

const CREATE: &str = "mutation($n: String!, $d: String) { createSite(input: {name: $n, description: $d}) { id name description code myRoles } }";
const SET_ROLE: &str = "mutation($s: UUID!, $u: UUID!, $r: SiteRole) { setSiteRole(siteId: $s, userId: $u, role: $r) }";
const JOIN: &str = "mutation($c: String!) { joinSite(code: $c) { id myRoles } }";
const SITE: &str = "query($id: UUID!) { site(id: $id) { id name myRoles code members { role user { username } } } }";

async fn create_site(server: &TestServer, token: &str, name: &str) -> (String, String) {
    let site = server
        .gql(Some(token), CREATE, json!({ "n": name }))
        .await
        .data("createSite");
    (str_at(&site, "/id"), str_at(&site, "/code"))
}

async fn roles(server: &TestServer, token: &str) -> Vec<String> {
    let me = server.gql(Some(token), "{ me { roles } }", json!({})).await.data("me");
    me["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

fn error_paths(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["path"]
                            .as_array()
                            .unwrap()
                            .last()
                            .unwrap()
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        str_at(e, "/extensions/code"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn create_site_makes_the_caller_its_admin() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, username) = server.signup("founder").await;
    let site = server
        .gql(Some(&token), CREATE, json!({ "n": "Acme", "d": "Widgets" }))
        .await
        .data("createSite");
    assert_eq!(site["name"], "Acme");
    assert_eq!(site["description"], "Widgets");
    assert_eq!(site["myRoles"], json!(["ADMIN"]));
    let code = str_at(&site, "/code");
    assert!(code.len() >= 16, "at least 64 bits: {code}");
    let id = str_at(&site, "/id");
    assert!(roles(&server, &token).await.contains(&format!("{id}:admin")));

    let me = server
        .gql(
            Some(&token),
            "{ me { sites { role site { id name } user { username } } } }",
            json!({}),
        )
        .await
        .data("me");
    assert_eq!(
        me["sites"],
        json!([{ "role": "ADMIN", "site": { "id": id, "name": "Acme" }, "user": { "username": username } }])
    );

    let bad = server.gql(Some(&token), CREATE, json!({ "n": "  " })).await;
    bad.assert_code("BAD_USER_INPUT");
    assert_eq!(bad.body["errors"][0]["extensions"]["field"], "name");
    server
        .gql(None, CREATE, json!({ "n": "Anon" }))
        .await
        .assert_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn code_and_members_are_guarded_per_field() {
    let (server, global_admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (owner, _, owner_name) = server.signup("owner").await;
    let (member, member_id, _) = server.signup("member").await;
    let (id, code) = create_site(&server, &owner, "Guarded").await;
    server
        .gql(Some(&member), JOIN, json!({ "c": code }))
        .await
        .data("joinSite");

    // A plain member sees the site, but not its code or members: both are null.
    let reply = server.gql(Some(&member), SITE, json!({ "id": id })).await;
    assert_eq!(reply.body["data"]["site"]["code"], serde_json::Value::Null);
    assert_eq!(reply.body["data"]["site"]["members"], serde_json::Value::Null);
    assert_eq!(reply.body["data"]["site"]["name"], "Guarded");
    assert_eq!(
        error_paths(&reply.body),
        vec![
            ("code".to_owned(), "FORBIDDEN".to_owned()),
            ("members".to_owned(), "FORBIDDEN".to_owned())
        ]
    );
    let without_members = "query($id: UUID!) { site(id: $id) { name myRoles code } }";
    let reply = server.gql(Some(&member), without_members, json!({ "id": id })).await;
    assert_eq!(
        reply.body["data"],
        json!({ "site": { "name": "Guarded", "myRoles": ["USER"], "code": null } })
    );

    // A manager sees the members but not the code.
    server
        .gql(
            Some(&owner),
            SET_ROLE,
            json!({ "s": id, "u": member_id, "r": "MANAGER" }),
        )
        .await
        .data("setSiteRole");
    let reply = server.gql(Some(&member), SITE, json!({ "id": id })).await;
    assert_eq!(
        error_paths(&reply.body),
        vec![("code".to_owned(), "FORBIDDEN".to_owned())]
    );
    assert_eq!(reply.body["data"]["site"]["members"].as_array().unwrap().len(), 2);

    // The site admin and a global admin see everything.
    for token in [&owner, &global_admin] {
        let site = server.gql(Some(token), SITE, json!({ "id": id })).await.data("site");
        assert_eq!(site["code"], code.as_str());
        assert_eq!(
            site["members"][0],
            json!({ "role": "ADMIN", "user": { "username": owner_name } })
        );
    }

    // Anyone else does not learn the site exists.
    let (stranger, _, _) = server.signup("stranger").await;
    assert_eq!(
        server
            .gql(Some(&stranger), SITE, json!({ "id": id }))
            .await
            .data("site"),
        Value::Null
    );
}

#[tokio::test]
async fn join_by_code_and_regenerate_the_code() {
    let server = TestServer::start(Config::for_test()).await;
    let (owner, _, _) = server.signup("owner").await;
    let (joiner, _, _) = server.signup("joiner").await;
    let (id, code) = create_site(&server, &owner, "Club").await;

    let preview = server
        .gql(
            Some(&joiner),
            "query($c: String!) { siteByCode(code: $c) { id name } }",
            json!({ "c": code }),
        )
        .await;
    assert_eq!(preview.data("siteByCode"), json!({ "id": id, "name": "Club" }));
    let joined = server
        .gql(Some(&joiner), JOIN, json!({ "c": code }))
        .await
        .data("joinSite");
    assert_eq!(joined["myRoles"], json!(["USER"]));
    // Joining twice changes nothing, and an admin joining keeps being admin.
    assert_eq!(
        server
            .gql(Some(&joiner), JOIN, json!({ "c": code }))
            .await
            .data("joinSite")["myRoles"],
        json!(["USER"])
    );
    assert_eq!(
        server
            .gql(Some(&owner), JOIN, json!({ "c": code }))
            .await
            .data("joinSite")["myRoles"],
        json!(["ADMIN"])
    );
    assert!(roles(&server, &joiner).await.contains(&format!("{id}:user")));

    // Only the site admin may replace the code; the old one stops working at once.
    let regenerate = "mutation($id: UUID!) { generateSiteCode(id: $id) }";
    server
        .gql(Some(&joiner), regenerate, json!({ "id": id }))
        .await
        .assert_code("FORBIDDEN");
    let new_code = str_at(
        &server.gql(Some(&owner), regenerate, json!({ "id": id })).await.body,
        "/data/generateSiteCode",
    );
    assert_ne!(new_code, code);
    let (late, _, _) = server.signup("late").await;
    server
        .gql(Some(&late), JOIN, json!({ "c": code }))
        .await
        .assert_code("NOT_FOUND");
    let old = server
        .gql(
            Some(&late),
            "query($c: String!) { siteByCode(code: $c) { id } }",
            json!({ "c": code }),
        )
        .await;
    assert_eq!(old.data("siteByCode"), Value::Null);
    assert_eq!(
        server
            .gql(Some(&late), JOIN, json!({ "c": new_code }))
            .await
            .data("joinSite")["id"],
        id.as_str()
    );
    server
        .gql(Some(&late), regenerate, json!({ "id": uuid::Uuid::new_v4() }))
        .await
        .assert_code("NOT_FOUND");
}

#[tokio::test]
async fn update_and_delete_follow_site_roles() {
    let (server, global_admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (owner, _, _) = server.signup("owner").await;
    let (manager, manager_id, _) = server.signup("manager").await;
    let (user, _, _) = server.signup("user").await;
    let (id, code) = create_site(&server, &owner, "Old name").await;
    server
        .gql(
            Some(&owner),
            SET_ROLE,
            json!({ "s": id, "u": manager_id, "r": "MANAGER" }),
        )
        .await
        .data("setSiteRole");
    server
        .gql(Some(&user), JOIN, json!({ "c": code }))
        .await
        .data("joinSite");

    let update = "mutation($id: UUID!, $n: String, $d: String) { updateSite(id: $id, input: {name: $n, description: $d}) { name description } }";
    let updated = server
        .gql(
            Some(&manager),
            update,
            json!({ "id": id, "n": "New name", "d": "About" }),
        )
        .await
        .data("updateSite");
    assert_eq!(updated, json!({ "name": "New name", "description": "About" }));
    server
        .gql(Some(&user), update, json!({ "id": id, "n": "Mine" }))
        .await
        .assert_code("FORBIDDEN");
    server
        .gql(Some(&global_admin), update, json!({ "id": id, "n": "Mine" }))
        .await
        .assert_code("FORBIDDEN");
    let (stranger, _, _) = server.signup("stranger").await;
    server
        .gql(Some(&stranger), update, json!({ "id": id, "n": "Mine" }))
        .await
        .assert_code("NOT_FOUND");

    let delete = "mutation($id: UUID!) { deleteSite(id: $id) }";
    server
        .gql(Some(&manager), delete, json!({ "id": id }))
        .await
        .assert_code("FORBIDDEN");
    assert_eq!(
        server
            .gql(Some(&owner), delete, json!({ "id": id }))
            .await
            .data("deleteSite"),
        true
    );
    // Every membership went with it, visible on existing tokens.
    for token in [&owner, &manager, &user] {
        assert!(!roles(&server, token).await.iter().any(|r| r.starts_with(&id)));
    }
    let (other, _) = create_site(&server, &owner, "Other").await;
    assert_eq!(
        server
            .gql(Some(&global_admin), delete, json!({ "id": other }))
            .await
            .data("deleteSite"),
        true
    );
    server
        .gql(Some(&global_admin), delete, json!({ "id": other }))
        .await
        .assert_code("NOT_FOUND");
}

#[tokio::test]
async fn a_site_never_loses_its_last_admin() {
    let server = TestServer::start(Config::for_test()).await;
    let (owner, owner_id, _) = server.signup("owner").await;
    let (second, second_id, _) = server.signup("second").await;
    let (id, code) = create_site(&server, &owner, "Kept").await;
    let leave = "mutation($id: UUID!) { leaveSite(id: $id) }";

    server
        .gql(Some(&owner), leave, json!({ "id": id }))
        .await
        .assert_code("BAD_USER_INPUT");
    server
        .gql(Some(&owner), SET_ROLE, json!({ "s": id, "u": owner_id, "r": "USER" }))
        .await
        .assert_code("BAD_USER_INPUT");
    server
        .gql(Some(&owner), SET_ROLE, json!({ "s": id, "u": owner_id, "r": null }))
        .await
        .assert_code("BAD_USER_INPUT");

    // With a second admin, the first may go.
    server
        .gql(Some(&second), JOIN, json!({ "c": code }))
        .await
        .data("joinSite");
    server
        .gql(Some(&second), SET_ROLE, json!({ "s": id, "u": owner_id, "r": "USER" }))
        .await
        .assert_code("FORBIDDEN");
    server
        .gql(Some(&owner), SET_ROLE, json!({ "s": id, "u": second_id, "r": "ADMIN" }))
        .await
        .data("setSiteRole");
    assert_eq!(
        server
            .gql(Some(&owner), leave, json!({ "id": id }))
            .await
            .data("leaveSite"),
        true
    );
    assert!(!roles(&server, &owner).await.iter().any(|r| r.starts_with(&id)));
    server
        .gql(Some(&owner), leave, json!({ "id": id }))
        .await
        .assert_code("NOT_FOUND");
}

#[tokio::test]
async fn set_site_role_adds_changes_and_removes_members() {
    let server = TestServer::start(Config::for_test()).await;
    let (owner, _, _) = server.signup("owner").await;
    let (target, target_id, _) = server.signup("target").await;
    let (id, _) = create_site(&server, &owner, "Team").await;
    let site_roles = |roles: Vec<String>| roles.into_iter().filter(|r| r.starts_with(&id)).collect::<Vec<_>>();

    server
        .gql(
            Some(&owner),
            SET_ROLE,
            json!({ "s": id, "u": target_id, "r": "MANAGER" }),
        )
        .await
        .data("setSiteRole");
    // The target's existing token sees the new role on its next request.
    assert_eq!(site_roles(roles(&server, &target).await), vec![format!("{id}:manager")]);
    let site = server
        .gql(
            Some(&target),
            "query($id: UUID!) { site(id: $id) { myRoles members { role } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(site.data("site")["myRoles"], json!(["MANAGER"]));

    server
        .gql(Some(&owner), SET_ROLE, json!({ "s": id, "u": target_id, "r": null }))
        .await
        .data("setSiteRole");
    assert!(site_roles(roles(&server, &target).await).is_empty());
    assert_eq!(
        server.gql(Some(&target), SITE, json!({ "id": id })).await.data("site"),
        Value::Null
    );

    server
        .gql(Some(&owner), SET_ROLE, json!({ "s": id, "u": target_id, "r": null }))
        .await
        .assert_code("NOT_FOUND");
    server
        .gql(
            Some(&owner),
            SET_ROLE,
            json!({ "s": id, "u": uuid::Uuid::new_v4(), "r": "USER" }),
        )
        .await
        .assert_code("NOT_FOUND");
    server
        .gql(
            Some(&target),
            SET_ROLE,
            json!({ "s": id, "u": target_id, "r": "ADMIN" }),
        )
        .await
        .assert_code("NOT_FOUND");
}

#[tokio::test]
async fn sites_are_paged_and_scoped_to_the_caller() {
    let (server, global_admin) = TestServer::start_with_admin(Config::for_test()).await;
    let (alice, _, _) = server.signup("alice").await;
    let (bob, bob_id, _) = server.signup("bob").await;
    let mut mine = Vec::new();
    for i in 0..5 {
        server.state.clock.advance(1);
        mine.push(create_site(&server, &alice, &format!("A{i}")).await.0);
    }
    create_site(&server, &bob, "B").await;

    let page = "query($after: String) { sites(first: 2, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } } }";
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let sites = server
            .gql(Some(&alice), page, json!({ "after": after }))
            .await
            .data("sites");
        assert_eq!(sites["totalCount"], 5);
        seen.extend(sites["edges"].as_array().unwrap().iter().map(|e| str_at(e, "/node/id")));
        after = Some(str_at(&sites, "/pageInfo/endCursor"));
        if sites["pageInfo"]["hasNextPage"] == false {
            break;
        }
    }
    assert_eq!(seen, mine);
    // Past the last site: an empty page, counted all the same.
    let past = server
        .gql(Some(&alice), page, json!({ "after": after }))
        .await
        .data("sites");
    assert_eq!(
        (past["edges"].clone(), past["totalCount"].clone()),
        (json!([]), json!(5))
    );
    let (nobody, _, _) = server.signup("nobody").await;
    let none = server.gql(Some(&nobody), page, json!({})).await.data("sites");
    assert_eq!(
        (none["edges"].clone(), none["totalCount"].clone()),
        (json!([]), json!(0))
    );
    let all = server
        .gql(Some(&global_admin), "{ sites(first: 100) { totalCount } }", json!({}))
        .await
        .data("sites");
    assert_eq!(all["totalCount"], 6);
    // Counted only when asked for, however it is asked: through an alias and a fragment too.
    let fragment = "{ sites(first: 1) { ...Counted edges { node { id } } } } \
                    fragment Counted on SiteConnection { n: totalCount }";
    let sites = server.gql(Some(&alice), fragment, json!({})).await.data("sites");
    assert_eq!(
        (sites["n"].clone(), sites["edges"].as_array().unwrap().len()),
        (json!(5), 1)
    );
    let inline = "{ sites(first: 1) { ... on SiteConnection { totalCount } } }";
    let count = |token: String| {
        let server = &server;
        async move { server.gql(Some(&token), inline, json!({})).await.data("sites")["totalCount"].clone() }
    };
    assert_eq!(count(bob.clone()).await, 1);
    // A role on someone else's site counts; a deleted site no longer does, for anyone.
    server
        .gql(
            Some(&alice),
            SET_ROLE,
            json!({ "s": mine[0], "u": bob_id, "r": "USER" }),
        )
        .await
        .data("setSiteRole");
    assert_eq!(count(bob.clone()).await, 2);
    server
        .gql(
            Some(&alice),
            "mutation($id: UUID!) { deleteSite(id: $id) }",
            json!({ "id": mine[0] }),
        )
        .await
        .data("deleteSite");
    assert_eq!(count(alice.clone()).await, 4);
    assert_eq!(count(bob.clone()).await, 1);
    assert_eq!(count(global_admin.clone()).await, 5);
    server
        .gql(Some(&alice), "{ sites(first: 101) { totalCount } }", json!({}))
        .await
        .assert_code("BAD_USER_INPUT");
    server
        .gql(Some(&alice), "{ sites(after: \"junk\") { totalCount } }", json!({}))
        .await
        .assert_code("BAD_USER_INPUT");
    server
        .gql(None, "{ sites { totalCount } }", json!({}))
        .await
        .assert_code("UNAUTHENTICATED");
}

/// Statements of one request, leaving out the background upkeep (last-seen writes, sweeps,
/// and on PostgreSQL the heartbeats an instance sends itself every 0.4 s).
fn request_statements(log: &std::sync::Mutex<Vec<String>>) -> usize {
    let upkeep = ["\"last_seen_at\" =", "\"expires_at\" <=", "pg_notify"];
    log.lock()
        .unwrap()
        .iter()
        .filter(|sql| !upkeep.iter().any(|part| sql.contains(part)))
        .count()
}

/// Statements of one request for a page of `sites` sites of 5 members each, asking `members`
/// of each site: the first time, and again once the session store has kept the members.
async fn statements_for_a_page_of(sites: usize, members_selection: &str) -> (usize, usize) {
    let (server, log) = TestServer::start_recording_statements(Config::for_test()).await;
    let (owner, _, _) = server.signup("owner").await;
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(server.signup(&format!("m{i}")).await.1);
    }
    for i in 0..sites {
        let (id, _) = create_site(&server, &owner, &format!("S{i}")).await;
        for member in &members {
            server
                .gql(Some(&owner), SET_ROLE, json!({ "s": id, "u": member, "r": "USER" }))
                .await
                .data("setSiteRole");
        }
    }
    let query = format!("{{ sites(first: 50) {{ edges {{ node {{ members {members_selection} }} }} }} }}");
    server.wait_for_cache().await;
    let mut counts = Vec::new();
    for _ in 0..2 {
        log.lock().unwrap().clear();
        let page = server.gql(Some(&owner), &query, json!({})).await.data("sites");
        let edges = page["edges"].as_array().unwrap();
        assert_eq!(edges.len(), sites);
        for edge in edges {
            let members = edge["node"]["members"].as_array().unwrap();
            assert_eq!(members.len(), 5);
            // The owner joined first, as the site's admin.
            assert!(members[0].get("role").is_none_or(|role| role == "ADMIN"), "{members:?}");
            let owner = |user: &Value| user["username"].as_str().is_some_and(|name| name.starts_with("owner"));
            assert!(members[0].get("user").is_none_or(owner), "{members:?}");
        }
        counts.push(request_statements(&log));
    }
    (counts[0], counts[1])
}

#[tokio::test]
async fn a_page_of_sites_with_members_costs_the_same_statements_whatever_its_size() {
    let (small, small_again) = statements_for_a_page_of(5, "{ user { username } }").await;
    let (large, large_again) = statements_for_a_page_of(50, "{ user { username } }").await;
    // The page, its members and their users, all seen (they run on one held connection).
    assert_eq!(small, 3, "5 sites: {small} statements seen");
    assert_eq!(small, large, "5 sites: {small} statements, 50 sites: {large}");
    // Asked again, the members and their users come from the session store's cache.
    assert_eq!((small_again, large_again), (1, 1), "the page asked again");
    let (small, small_again) = statements_for_a_page_of(5, "{ role }").await;
    let (large, large_again) = statements_for_a_page_of(50, "{ role }").await;
    assert_eq!(small, 2, "5 sites, members' roles: {small} statements seen");
    assert_eq!(
        small, large,
        "members' roles: 5 sites: {small} statements, 50 sites: {large}"
    );
    assert_eq!((small_again, large_again), (1, 1), "members' roles, asked again");
}

#[tokio::test]
async fn another_users_roles_show_only_the_sites_shared_with_the_caller() {
    let server = TestServer::start(Config::for_test()).await;
    let (alice, alice_id, _) = server.signup("alice").await;
    let (bob, _, _) = server.signup("bob").await;
    let (shared, _) = create_site(&server, &bob, "shared").await;
    let (private, _) = create_site(&server, &alice, "private").await;
    server
        .gql(
            Some(&bob),
            SET_ROLE,
            json!({ "s": shared, "u": alice_id, "r": "MANAGER" }),
        )
        .await
        .data("setSiteRole");

    // Bob, admin of the shared site, reads its members: Alice's role on her private site is
    // not his to know.
    let members = "query($id: UUID!) { site(id: $id) { members { user { id roles } } } }";
    let site = server
        .gql(Some(&bob), members, json!({ "id": shared }))
        .await
        .data("site");
    let alice_seen = site["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"]["id"] == alice_id.as_str())
        .expect("alice is a member")["user"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(alice_seen, ["user".to_owned(), format!("{shared}:manager")].into());

    // Alice herself sees every role.
    let mut own = roles(&server, &alice).await;
    own.sort();
    let mut expected = vec![
        "user".to_owned(),
        format!("{shared}:manager"),
        format!("{private}:admin"),
    ];
    expected.sort();
    assert_eq!(own, expected);
}
