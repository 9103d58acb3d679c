//! The gateway check (API.md §6), every case in both Hasura modes: GET (the request's own
//! headers) and POST (`{"headers": {...}, "request": {...}}`).

use gatehouse::Config;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{Reply, TestServer, PASSWORD};

#[derive(Clone, Copy, Debug)]
enum Mode {
    Get,
    Post,
}

const MODES: [Mode; 2] = [Mode::Get, Mode::Post];

/// Asks `/auth/webhook<query>` about a client request carrying `headers`.
async fn ask(server: &TestServer, mode: Mode, query: &str, headers: &[(&str, &str)]) -> Reply {
    let url = server.url(&format!("/auth/webhook{query}"));
    let request = match mode {
        Mode::Get => headers.iter().fold(server.http.get(url), |request, (name, value)| {
            request.header(*name, *value)
        }),
        Mode::Post => {
            let forwarded: serde_json::Map<String, Value> =
                headers.iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
            let body = json!({
                "headers": forwarded,
                "request": { "query": "{ me { id } }", "variables": {}, "operationName": null }
            });
            server.http.post(url).json(&body)
        }
    };
    Reply::from(request.send().await.expect("request")).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts a 200 for `role`, in the body and as headers, with `user_id` or none.
fn assert_granted(reply: &Reply, user_id: Option<&str>, role: &str, mode: Mode) {
    assert_eq!(reply.status, 200, "{mode:?}: {}", reply.body);
    assert_eq!(reply.body["X-Hasura-Role"], role, "{mode:?}");
    assert_eq!(reply.header("x-hasura-role").as_deref(), Some(role), "{mode:?}");
    match user_id {
        Some(id) => {
            assert_eq!(reply.body["X-Hasura-User-Id"], id, "{mode:?}");
            assert_eq!(reply.header("x-hasura-user-id").as_deref(), Some(id), "{mode:?}");
            assert_eq!(reply.body.as_object().unwrap().len(), 2, "{}", reply.body);
        }
        None => {
            assert_eq!(reply.body, json!({ "X-Hasura-Role": role }), "{mode:?}");
            assert!(reply.header("x-hasura-user-id").is_none(), "{mode:?}");
        }
    }
}

fn assert_refused(reply: &Reply, status: u16, mode: Mode) {
    assert_eq!(reply.status, status, "{mode:?}: {}", reply.body);
    let reason = reply.body["error"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "{mode:?}: {}", reply.body);
    assert_eq!(reply.body.as_object().unwrap().len(), 1, "{}", reply.body);
    assert!(reply.header("x-hasura-role").is_none() && reply.header("x-hasura-user-id").is_none());
}

async fn grant(server: &TestServer, user_id: &str, roles: &[&str]) {
    let id = Uuid::parse_str(user_id).unwrap();
    // Through the session store, as `grantRoles` does: no cached session keeps the old roles.
    let mut change = server.state.sessions.begin().await.unwrap();
    change.grant(id, roles, server.state.clock.now()).await.unwrap();
    change.commit().await.unwrap();
}

async fn logout(server: &TestServer, token: &str) {
    assert_eq!(
        server
            .gql(Some(token), "mutation { logout }", json!({}))
            .await
            .data("logout"),
        true
    );
}

#[tokio::test]
async fn no_token_is_anonymous_whatever_role_is_asked() {
    let server = TestServer::start(Config::for_test()).await;
    for mode in MODES {
        let reply = ask(&server, mode, "", &[]).await;
        assert_granted(&reply, None, "anonymous", mode);
        assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
        let reply = ask(&server, mode, "", &[("X-Hasura-Role", "admin")]).await;
        assert_granted(&reply, None, "anonymous", mode);
    }
}

#[tokio::test]
async fn a_user_gets_role_user_and_their_id() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("hook").await;
    for mode in MODES {
        let reply = ask(&server, mode, "", &[("Authorization", &bearer(&token))]).await;
        assert_granted(&reply, Some(&user_id), "user", mode);
    }
}

#[tokio::test]
async fn an_admin_defaults_to_user_and_gets_admin_when_asked() {
    let config = Config {
        admin_username: Some("root_admin".into()),
        admin_password: Some(PASSWORD.into()),
        ..Config::for_test()
    };
    let server = TestServer::start(config).await;
    let login = server
        .gql(
            None,
            "mutation($p: String!) { login(input: {username: \"root_admin\", password: $p}) { token user { id } } }",
            json!({ "p": PASSWORD }),
        )
        .await
        .data("login");
    let (token, admin_id) = (login["token"].as_str().unwrap(), login["user"]["id"].as_str().unwrap());
    for mode in MODES {
        let auth = bearer(token);
        let reply = ask(&server, mode, "", &[("Authorization", &auth)]).await;
        assert_granted(&reply, Some(admin_id), "user", mode);
        let reply = ask(
            &server,
            mode,
            "",
            &[("Authorization", &auth), ("X-Hasura-Role", "admin")],
        )
        .await;
        assert_granted(&reply, Some(admin_id), "admin", mode);
    }
}

#[tokio::test]
async fn a_requested_role_is_granted_when_held_and_refused_when_lacked() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("editor").await;
    // Granted after login: roles are read live, not from the token.
    grant(&server, &user_id, &["editor"]).await;
    for mode in MODES {
        let auth = bearer(&token);
        let reply = ask(
            &server,
            mode,
            "",
            &[("Authorization", &auth), ("X-Hasura-Role", "editor")],
        )
        .await;
        assert_granted(&reply, Some(&user_id), "editor", mode);
        let reply = ask(
            &server,
            mode,
            "",
            &[("Authorization", &auth), ("X-Hasura-Role", "admin")],
        )
        .await;
        assert_refused(&reply, 401, mode);
        assert!(
            reply.body["error"].as_str().unwrap().contains("admin"),
            "{}",
            reply.body
        );
    }
}

#[tokio::test]
async fn the_allow_list_refuses_other_roles_including_anonymous() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("allow").await;
    grant(&server, &user_id, &["editor"]).await;
    let auth = bearer(&token);
    for mode in MODES {
        let only_editors = "?allow=editor,admin";
        assert_refused(
            &ask(&server, mode, only_editors, &[("Authorization", &auth)]).await,
            401,
            mode,
        );
        assert_refused(&ask(&server, mode, only_editors, &[]).await, 401, mode);
        let editor = [("Authorization", auth.as_str()), ("X-Hasura-Role", "editor")];
        assert_granted(
            &ask(&server, mode, only_editors, &editor).await,
            Some(&user_id),
            "editor",
            mode,
        );

        let public = "?allow=user,anonymous";
        assert_granted(&ask(&server, mode, public, &[]).await, None, "anonymous", mode);
        assert_granted(
            &ask(&server, mode, public, &[("Authorization", &auth)]).await,
            Some(&user_id),
            "user",
            mode,
        );
    }
}

#[tokio::test]
async fn forbidden_status_403_applies_to_authenticated_refusals_only() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("forbidden").await;
    let auth = bearer(&token);
    for mode in MODES {
        let query = "?allow=admin&forbidden_status=403";
        // Not allowed here, and a role lacked: the caller is known, so 403.
        assert_refused(&ask(&server, mode, query, &[("Authorization", &auth)]).await, 403, mode);
        let asks_admin = [("Authorization", auth.as_str()), ("X-Hasura-Role", "admin")];
        let reply = ask(&server, mode, "?forbidden_status=403", &asks_admin).await;
        assert_refused(&reply, 403, mode);
        // Anonymous and bad tokens stay 401.
        assert_refused(&ask(&server, mode, query, &[]).await, 401, mode);
        let reply = ask(&server, mode, query, &[("Authorization", "Bearer not.a.token")]).await;
        assert_refused(&reply, 401, mode);
        assert_eq!(
            reply.header("www-authenticate").as_deref(),
            Some("Bearer error=\"invalid_token\"")
        );
        // Anything but 401 or 403 is a gateway misconfiguration.
        assert_refused(&ask(&server, mode, "?forbidden_status=500", &[]).await, 400, mode);
    }
}

#[tokio::test]
async fn a_forged_user_id_header_is_ignored() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("forged").await;
    let someone_else = Uuid::new_v4().to_string();
    for mode in MODES {
        let forged = [("X-Hasura-User-Id", someone_else.as_str())];
        assert_granted(&ask(&server, mode, "", &forged).await, None, "anonymous", mode);
        let auth = bearer(&token);
        let forged = [
            ("Authorization", auth.as_str()),
            ("X-Hasura-User-Id", someone_else.as_str()),
        ];
        assert_granted(&ask(&server, mode, "", &forged).await, Some(&user_id), "user", mode);
    }
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("revoked").await;
    logout(&server, &token).await;
    for mode in MODES {
        let reply = ask(
            &server,
            mode,
            "?allow=user,anonymous",
            &[("Authorization", &bearer(&token))],
        )
        .await;
        assert_refused(&reply, 401, mode);
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let server = TestServer::start(Config {
        session_ttl: 2,
        ..Config::for_test()
    })
    .await;
    let (token, user_id, _) = server.signup("expired").await;
    let auth = bearer(&token);
    assert_granted(
        &ask(&server, Mode::Get, "", &[("Authorization", &auth)]).await,
        Some(&user_id),
        "user",
        Mode::Get,
    );
    server.state.clock.advance(3);
    for mode in MODES {
        assert_refused(&ask(&server, mode, "", &[("Authorization", &auth)]).await, 401, mode);
    }
}

#[tokio::test]
async fn the_session_cookie_identifies_the_caller() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("cookie").await;
    let cookie = format!("theme=dark; gatehouse_session={token}");
    for mode in MODES {
        let reply = ask(&server, mode, "", &[("Cookie", &cookie)]).await;
        assert_granted(&reply, Some(&user_id), "user", mode);
    }
    let bad = ask(&server, Mode::Get, "", &[("Cookie", "gatehouse_session=garbage")]).await;
    assert_refused(&bad, 401, Mode::Get);
}

#[tokio::test]
async fn post_mode_header_names_are_case_insensitive() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("cases").await;
    grant(&server, &user_id, &["editor"]).await;
    let auth = bearer(&token);
    for (authorization, role) in [
        ("authorization", "x-hasura-role"),
        ("AUTHORIZATION", "X-HASURA-ROLE"),
        ("Authorization", "X-Hasura-Role"),
    ] {
        let reply = ask(&server, Mode::Post, "", &[(authorization, &auth), (role, "editor")]).await;
        assert_granted(&reply, Some(&user_id), "editor", Mode::Post);
    }
}

#[tokio::test]
async fn post_mode_reads_only_the_forwarded_headers() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, _, _) = server.signup("own").await;
    // Hasura's own request to the webhook carries no client credentials: a token on it is
    // not the client's and must not count.
    let reply = server
        .http
        .post(server.url("/auth/webhook"))
        .bearer_auth(&token)
        .json(&json!({ "headers": {}, "request": {} }))
        .send()
        .await
        .unwrap();
    assert_granted(&Reply::from(reply).await, None, "anonymous", Mode::Post);

    let reply = server
        .http
        .post(server.url("/auth/webhook"))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_refused(&Reply::from(reply).await, 400, Mode::Post);
}

/// The requests Hasura sends, as its auth-webhook documentation shows them.
#[tokio::test]
async fn hasura_documented_requests_are_answered() {
    let server = TestServer::start(Config::for_test()).await;
    let (token, user_id, _) = server.signup("hasura").await;

    // POST mode: the client's headers and the GraphQL request, in one body.
    let body = json!({
        "headers": {
            "Authorization": bearer(&token),
            "Content-Type": "application/json",
            "X-Hasura-Role": "user",
            "User-Agent": "Mozilla/5.0"
        },
        "request": {
            "variables": { "a": 1 },
            "operationName": "UserQuery",
            "query": "query UserQuery($a: Int) { users(where: {id: {_eq: $a}}) { id } }"
        }
    });
    let reply = server
        .http
        .post(server.url("/auth/webhook"))
        .header("content-type", "application/json")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_granted(&Reply::from(reply).await, Some(&user_id), "user", Mode::Post);

    // GET mode: the client's headers on a bodiless GET, with the hop-by-hop ones dropped.
    let reply = server
        .http
        .get(server.url("/auth/webhook"))
        .header("Authorization", bearer(&token))
        .header("Content-Type", "application/json")
        .header("X-Hasura-Role", "user")
        .header("User-Agent", "hasura-graphql-engine/v2.40.0")
        .send()
        .await
        .unwrap();
    assert_granted(&Reply::from(reply).await, Some(&user_id), "user", Mode::Get);
}

#[tokio::test]
async fn a_cookie_from_another_site_is_refused_and_bearer_tokens_are_not() {
    let server = TestServer::start(Config {
        cors_origins: vec!["https://app.example.com".into()],
        ..Config::for_test()
    })
    .await;
    let (token, user_id, _) = server.signup("crossed").await;
    let cookie = format!("gatehouse_session={token}");
    for mode in MODES {
        for (name, value) in [
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "https://evil.example"),
            ("Origin", "null"),
        ] {
            let reply = ask(&server, mode, "", &[("Cookie", &cookie), (name, value)]).await;
            assert_refused(&reply, 401, mode);
            // The same request with the bearer token is the caller's own doing.
            let reply = ask(&server, mode, "", &[("Authorization", &bearer(&token)), (name, value)]).await;
            assert_granted(&reply, Some(&user_id), "user", mode);
        }
        for allowed in [
            vec![("Sec-Fetch-Site", "same-site"), ("Origin", "https://app.example.com")],
            vec![("Sec-Fetch-Site", "same-origin")],
            vec![],
        ] {
            let mut headers = vec![("Cookie", cookie.as_str())];
            headers.extend(allowed);
            let reply = ask(&server, mode, "", &headers).await;
            assert_granted(&reply, Some(&user_id), "user", mode);
        }
    }
}
