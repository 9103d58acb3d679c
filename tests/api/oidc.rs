//! Social login (API.md §8) against a real OpenID Provider: the certified `oidc-provider`
//! started on loopback by tests/clients/src/oidc-provider.ts, plus that helper's "fake" mode
//! for ID tokens a correct provider never sends (wrong nonce, audience, key; expired).

use std::path::PathBuf;
use std::process::Stdio;

use entity::audit_event;
use gatehouse::config::OidcProvider;
use gatehouse::Config;
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use crate::common::{str_at, TestServer, PASSWORD};

/// Where the application under test wants users back; never fetched.
const APP: &str = "http://app.test/after";
const CLIENT_ID: &str = "gatehouse-test";
const CLIENT_SECRET: &str = "a client secret for tests";

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The helper provider, killed on drop.
struct Op {
    issuer: String,
    _child: tokio::process::Child,
}

impl Op {
    async fn start(mode: &str, redirect_uri: &str, fault: Option<&str>, port: Option<u16>) -> Op {
        let dir = clients_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "tests/clients/node_modules is missing: run `npm ci --prefix tests/clients` first"
        );
        let settings = json!({
            "mode": mode,
            "port": port,
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "redirectUris": [redirect_uri],
            "fault": fault,
            "accounts": {
                "alice-sub": { "email": "alice@example.com", "email_verified": true, "preferred_username": "alice", "name": "Alice" },
                "bob-sub": { "email": "bob@example.com", "email_verified": false, "preferred_username": "bob" },
                "carol-sub": { "email": "carol@example.com", "email_verified": true, "preferred_username": "carol" },
            },
        });
        let mut child = tokio::process::Command::new("node")
            .args(["--import", "tsx", "src/oidc-provider.ts", &settings.to_string()])
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start node (tests/clients/src/oidc-provider.ts)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let issuer = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("helper output") {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    return str_at(&value, "/issuer");
                }
            }
            panic!("the OIDC helper exited without starting")
        })
        .await
        .expect("the OIDC helper did not start within 60 s");
        // Keep reading: the helper dies of EPIPE when its stdout is closed.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Op { issuer, _child: child }
    }
}

/// A gatehouse with provider `test` at `op`, on a listener bound first so the helper can
/// register its callback.
struct Setup {
    server: TestServer,
    _op: Op,
}

async fn setup_with(mode: &str, fault: Option<&str>, adjust: impl FnOnce(Config) -> Config) -> Setup {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let op = Op::start(mode, &format!("http://{addr}/auth/oidc/test/callback"), fault, None).await;
    let config = adjust(config_for(&op.issuer, addr));
    let server = TestServer::start_on_listener(listener, config).await;
    Setup { server, _op: op }
}

async fn setup() -> Setup {
    setup_with("real", None, |c| c).await
}

fn config_for(issuer: &str, addr: std::net::SocketAddr) -> Config {
    Config {
        // The test browser speaks plain HTTP to 127.0.0.1.
        cookie_secure: false,
        public_url: format!("http://{addr}"),
        oidc_return_urls: vec![APP.into()],
        oidc: vec![OidcProvider {
            name: "test".into(),
            issuer: issuer.into(),
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
        }],
        ..Config::for_test()
    }
}

/// A browser: its own cookie jar, redirects followed by hand.
struct Browser {
    http: reqwest::Client,
}

/// Where a browser ended: the last response's status and cookies, and the URL it was sent to
/// at the application (or None when a page answered instead).
struct Landing {
    status: StatusCode,
    set_cookies: Vec<String>,
    at_app: Option<reqwest::Url>,
    body: String,
}

impl Landing {
    fn param(&self, key: &str) -> Option<String> {
        let url = self.at_app.as_ref()?;
        url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
    }

    fn login_code(&self) -> String {
        self.param("login_code")
            .unwrap_or_else(|| panic!("no login_code: {:?} {} {}", self.at_app, self.status, self.body))
    }

    fn error(&self) -> String {
        self.param("error")
            .unwrap_or_else(|| panic!("no error: {:?} {} {}", self.at_app, self.status, self.body))
    }

    fn session_cookie(&self) -> Option<String> {
        self.set_cookies
            .iter()
            .find_map(|c| c.strip_prefix("gatehouse_session="))
            .map(|c| c.split(';').next().unwrap_or_default().to_owned())
            .filter(|c| !c.is_empty())
    }
}

impl Browser {
    fn new() -> Browser {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .build()
            .unwrap();
        Browser { http }
    }

    /// GETs `url` and follows redirects, signing in as `account` at the provider, until one
    /// points at the application.
    async fn go(&self, url: &str, account: &str, cookie: Option<&str>) -> Landing {
        let mut url = reqwest::Url::parse(url).unwrap();
        for _ in 0..20 {
            let mut request = self.http.get(url.clone());
            if let Some(token) = cookie.filter(|_| url.path().ends_with("/start")) {
                request = request.header("cookie", format!("gatehouse_session={token}"));
            }
            let response = request.send().await.expect("request");
            let status = response.status();
            let set_cookies = response
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            let Some(location) = response
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned())
            else {
                let body = response.text().await.unwrap_or_default();
                return Landing {
                    status,
                    set_cookies,
                    at_app: None,
                    body,
                };
            };
            let mut next = url.join(&location).unwrap();
            if next.as_str().starts_with(APP) {
                return Landing {
                    status,
                    set_cookies,
                    at_app: Some(next),
                    body: String::new(),
                };
            }
            if next.path().starts_with("/interaction/") {
                next.query_pairs_mut().append_pair("account", account);
            }
            url = next;
        }
        panic!("too many redirects")
    }
}

impl Setup {
    fn start_url(&self) -> String {
        self.server.url(&format!("/auth/oidc/test/start?return_to={APP}"))
    }

    /// A whole sign-in as `account` in a new browser.
    async fn sign_in(&self, account: &str) -> Landing {
        Browser::new().go(&self.start_url(), account, None).await
    }

    async fn exchange(&self, code: &str) -> crate::common::Reply {
        self.server
            .gql(
                None,
                "mutation($c: String!) { exchangeLoginCode(code: $c) { token user { id username email emailVerified roles identities { provider subject email } } } }",
                json!({ "c": code }),
            )
            .await
    }

    async fn kinds_for(&self, user_id: &str) -> Vec<(String, Option<Value>)> {
        let id: uuid::Uuid = user_id.parse().unwrap();
        let mut rows = audit_event::Entity::find()
            .filter(audit_event::Column::SubjectId.eq(id))
            .all(&self.server.state.db)
            .await
            .unwrap();
        rows.sort_by_key(|r| r.at);
        rows.into_iter().map(|r| (r.kind, r.detail)).collect()
    }
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn first_login_creates_an_account_and_the_second_signs_into_it() {
    let setup = setup().await;
    let providers = setup.server.gql(None, "{ oidcProviders }", json!({})).await;
    assert_eq!(providers.data("oidcProviders"), json!(["test"]));

    let first = setup.sign_in("alice-sub").await;
    assert_eq!(first.status, StatusCode::FOUND);
    assert!(
        first.session_cookie().is_some(),
        "callback sets the session cookie: {:?}",
        first.set_cookies
    );
    let cookie_token = first.session_cookie().unwrap();
    let me = setup
        .server
        .gql_with_cookie(&cookie_token, "{ me { username } }", json!({}))
        .await;
    assert_eq!(me.data("me")["username"], "alice");

    let payload = setup.exchange(&first.login_code()).await.data("exchangeLoginCode");
    let user = &payload["user"];
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["emailVerified"], true, "the provider verified it");
    assert_eq!(user["roles"], json!(["user"]));
    assert_eq!(user["identities"][0]["provider"], "test");
    assert_eq!(user["identities"][0]["subject"], "alice-sub");
    let user_id = str_at(user, "/id");
    // The bearer token works.
    let me = setup
        .server
        .gql(Some(&str_at(&payload, "/token")), "{ me { id } }", json!({}))
        .await;
    assert_eq!(me.data("me")["id"], user_id.as_str());

    let second = setup.sign_in("alice-sub").await;
    let again = setup.exchange(&second.login_code()).await.data("exchangeLoginCode");
    assert_eq!(again["user"]["id"], user_id.as_str(), "the same account");

    let kinds = setup.kinds_for(&user_id).await;
    let names: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.starts_with(&["signup", "identity_linked", "login"]), "{names:?}");
    let logins = kinds.iter().filter(|(k, _)| k == "login").count();
    assert_eq!(logins, 4, "two callbacks and two exchanges: {names:?}");
    assert!(kinds
        .iter()
        .filter(|(k, _)| k == "login")
        .all(|(_, d)| d.as_ref().is_some_and(|d| d["provider"] == "test")));
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn usernames_are_made_unique_and_a_local_account_with_the_same_email_is_not_taken_over() {
    let setup = setup().await;
    // A local account already holds bob's name and address.
    let server = &setup.server;
    let signup = server
        .gql(
            None,
            "mutation($p: String!) { signup(input: {username: \"bob\", password: $p, email: \"bob@example.com\"}) { user { id } } }",
            json!({ "p": PASSWORD }),
        )
        .await
        .data("signup");
    let local_id = str_at(&signup, "/user/id");

    let landing = setup.sign_in("bob-sub").await;
    let user = setup.exchange(&landing.login_code()).await.data("exchangeLoginCode")["user"].clone();
    assert_ne!(user["id"], local_id.as_str(), "a new account, not the local one");
    assert_eq!(user["username"], "bob-2");
    assert_eq!(user["email"], Value::Null, "the address stays with the local account");
    assert_eq!(user["identities"][0]["email"], "bob@example.com");

    // The new account has no password: no password logs into it.
    for password in ["", PASSWORD] {
        let login = server
            .gql(
                None,
                "mutation($p: String!) { login(input: {username: \"bob-2\", password: $p}) { token } }",
                json!({ "p": password }),
            )
            .await;
        login.assert_code("UNAUTHENTICATED");
    }
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn a_login_code_works_once_and_for_60_seconds() {
    let setup = setup().await;
    let landing = setup.sign_in("alice-sub").await;
    let code = landing.login_code();
    setup.exchange(&code).await.data("exchangeLoginCode");
    setup.exchange(&code).await.assert_code("BAD_USER_INPUT");

    let late = setup.sign_in("alice-sub").await.login_code();
    setup.server.state.clock.advance(61);
    let reply = setup.exchange(&late).await;
    reply.assert_code("BAD_USER_INPUT");
    assert_eq!(reply.body["errors"][0]["extensions"]["field"], "code");
    setup.exchange("made-up").await.assert_code("BAD_USER_INPUT");
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn with_signup_off_unknown_identities_are_refused() {
    let setup = setup_with("real", None, |c| Config {
        oidc_signup: false,
        ..c
    })
    .await;
    let landing = setup.sign_in("carol-sub").await;
    assert_eq!(landing.error(), "signup_disabled");
    assert!(landing.session_cookie().is_none());
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn with_verified_email_required_only_a_provider_verified_address_signs_in() {
    let setup = setup_with("real", None, |c| Config {
        require_verified_email: true,
        ..c
    })
    .await;
    // bob's provider does not vouch for his address: no account, no session.
    let refused = setup.sign_in("bob-sub").await;
    assert_eq!(refused.error(), "email_not_verified");
    assert!(refused.session_cookie().is_none());
    assert!(refused.param("login_code").is_none());

    let admitted = setup.sign_in("alice-sub").await;
    let payload = setup.exchange(&admitted.login_code()).await.data("exchangeLoginCode");
    assert_eq!(payload["user"]["emailVerified"], true);
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn linking_needs_a_fresh_session_and_unlinking_keeps_a_way_to_sign_in() {
    let setup = setup().await;
    let server = &setup.server;
    let (token, user_id, _) = server.signup("linker").await;
    let link_url = server.url(&format!("/auth/oidc/test/start?return_to={APP}&link=true"));

    // Without a session, and with a stale one: refused before the provider is asked.
    let anonymous = Browser::new().go(&link_url, "carol-sub", None).await;
    assert_eq!(anonymous.error(), "unauthenticated");
    server.state.clock.advance(server.state.config.reauth_window as i64 + 1);
    let stale = Browser::new().go(&link_url, "carol-sub", Some(&token)).await;
    assert_eq!(stale.error(), "reauthentication_required");

    let fresh = server
        .gql(
            Some(&token),
            "mutation($p: String!) { reauthenticate(input: {password: $p}) { id } }",
            json!({ "p": PASSWORD }),
        )
        .await;
    fresh.data("reauthenticate");
    let linked = Browser::new().go(&link_url, "carol-sub", Some(&token)).await;
    assert_eq!(linked.param("linked").as_deref(), Some("test"), "{:?}", linked.at_app);

    // Carol's identity now signs into the linker's account.
    let landing = setup.sign_in("carol-sub").await;
    let user = setup.exchange(&landing.login_code()).await.data("exchangeLoginCode")["user"].clone();
    assert_eq!(user["id"], user_id.as_str());
    let identities = server
        .gql(
            Some(&token),
            "{ me { identities { provider subject linkedAt } } }",
            json!({}),
        )
        .await
        .data("me");
    assert_eq!(identities["identities"][0]["subject"], "carol-sub");

    // The account has a password: unlinking is allowed.
    let unlink = "mutation { unlinkIdentity(provider: \"test\") }";
    assert_eq!(
        server.gql(Some(&token), unlink, json!({})).await.data("unlinkIdentity"),
        true
    );
    server
        .gql(Some(&token), unlink, json!({}))
        .await
        .assert_code("BAD_USER_INPUT");

    let kinds: Vec<String> = setup.kinds_for(&user_id).await.into_iter().map(|(k, _)| k).collect();
    assert!(kinds.contains(&"identity_linked".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"identity_unlinked".to_owned()), "{kinds:?}");
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn unlinking_the_only_way_to_sign_in_is_refused() {
    let setup = setup().await;
    let landing = setup.sign_in("alice-sub").await;
    let token = str_at(
        &setup.exchange(&landing.login_code()).await.data("exchangeLoginCode"),
        "/token",
    );
    let reply = setup
        .server
        .gql(
            Some(&token),
            "mutation { unlinkIdentity(provider: \"test\") }",
            json!({}),
        )
        .await;
    reply.assert_code("BAD_USER_INPUT");
    assert_eq!(reply.body["errors"][0]["extensions"]["field"], "provider");
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn identities_are_for_the_user_themself_and_admins() {
    let setup = setup().await;
    let landing = setup.sign_in("alice-sub").await;
    let alice = setup.exchange(&landing.login_code()).await.data("exchangeLoginCode");
    let (other, _, _) = setup.server.signup("curious").await;
    let reply = setup
        .server
        .gql(
            Some(&other),
            "query($id: UUID!) { user(id: $id) { identities { subject } } }",
            json!({ "id": str_at(&alice, "/user/id") }),
        )
        .await;
    reply.assert_code("FORBIDDEN");
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn tampered_and_replayed_state_and_codes_are_refused() {
    let setup = setup().await;
    let browser = Browser::new();
    // Stop at the callback to keep its URL.
    let start = browser.http.get(setup.start_url()).send().await.unwrap();
    let mut url = reqwest::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let callback = loop {
        let response = browser.http.get(url.clone()).send().await.unwrap();
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let mut next = url.join(&location).unwrap();
        if next.path().starts_with("/interaction/") {
            next.query_pairs_mut().append_pair("account", "alice-sub");
        }
        if next.path().ends_with("/callback") {
            break next;
        }
        url = next;
    };
    let mut tampered = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" { format!("{v}x") } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let reply = browser.http.get(tampered).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    assert!(reply.headers().get("location").is_none());

    let first = browser.http.get(callback.clone()).send().await.unwrap();
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(APP) && location.contains("login_code="),
        "{location}"
    );
    // The same callback again: the state is spent.
    let replay = browser.http.get(callback.clone()).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);

    // The code replayed in a new attempt (fresh state) is refused by the provider.
    let other = Browser::new();
    let start = other.http.get(setup.start_url()).send().await.unwrap();
    let auth_url = reqwest::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let state = auth_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let mut forged = callback.clone();
    forged
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", &state);
    let reply = other.http.get(forged).send().await.unwrap();
    let location = reply.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(APP) && location.contains("error=code_exchange_failed"),
        "{location}"
    );
    assert!(!location.contains("login_code"));
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn a_callback_in_another_browser_is_refused() {
    let setup = setup().await;
    let starter = Browser::new();
    let start = starter.http.get(setup.start_url()).send().await.unwrap();
    let auth = start.headers()["location"].to_str().unwrap().to_owned();
    // The victim's browser completes an attempt it never started (login CSRF).
    let landing = Browser::new().go(&auth, "alice-sub", None).await;
    assert_eq!(landing.error(), "invalid_state");
    assert!(landing.session_cookie().is_none());
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn return_to_outside_the_allow_list_is_refused_without_a_redirect() {
    let setup = setup().await;
    for return_to in [
        "https://evil.example/after",
        "http://app.test.evil.example/",
        "not a url",
    ] {
        let url = setup.server.url("/auth/oidc/test/start");
        let response = Browser::new()
            .http
            .get(url)
            .query(&[("return_to", return_to)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{return_to}");
        assert!(response.headers().get("location").is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    }
    let unknown = Browser::new()
        .http
        .get(setup.server.url(&format!("/auth/oidc/nope/start?return_to={APP}")))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

async fn crafted(fault: &str) -> Landing {
    let setup = setup_with("fake", Some(fault), |c| c).await;
    let landing = setup.sign_in("ignored").await;
    assert!(landing.session_cookie().is_none(), "{fault}");
    landing
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn id_tokens_with_a_wrong_nonce_audience_key_or_expiry_are_refused() {
    // The fake provider's honest token is accepted, so the refusals below are the faults'.
    let honest = setup_with("fake", None, |c| c).await;
    let landing = honest.sign_in("ignored").await;
    assert!(landing.param("login_code").is_some(), "{:?}", landing.at_app);
    for fault in ["wrong_nonce", "wrong_audience", "expired", "bad_signature"] {
        let landing = crafted(fault).await;
        assert_eq!(landing.error(), "invalid_id_token", "{fault}");
        let url = landing.at_app.unwrap().to_string();
        assert!(!url.contains("eyJ"), "no token in the URL: {url}");
    }
}

#[tokio::test]
#[ignore = "needs tests/clients/node_modules (npm ci); .ci/run runs them"]
async fn a_provider_down_at_startup_answers_unavailable_and_is_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A port nothing listens on, for now.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let server = TestServer::start_on_listener(listener, config_for(&issuer, addr)).await;
    let start = format!("/auth/oidc/test/start?return_to={APP}");
    let landing = Browser::new().go(&server.url(&start), "alice-sub", None).await;
    assert_eq!(landing.error(), "provider_unavailable");
    assert_eq!(
        server
            .gql(None, "{ oidcProviders }", json!({}))
            .await
            .data("oidcProviders"),
        json!(["test"])
    );

    let redirect = format!("http://{addr}/auth/oidc/test/callback");
    let _op = Op::start("real", &redirect, None, Some(port)).await;
    let mut waited = 0;
    loop {
        let landing = Browser::new().go(&server.url(&start), "alice-sub", None).await;
        if landing.param("login_code").is_some() {
            break;
        }
        assert!(waited < 30, "still unavailable: {:?}", landing.at_app);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        waited += 1;
    }
}

#[test]
fn a_bad_provider_setting_stops_startup_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/never.db?mode=rwc", dir.path().display());
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("OIDC_ACME_ISSUER", "https://id.example.com")], "OIDC_ACME_CLIENT_ID"),
        (&[("OIDC_ACME_CLIENT_ID", "x")], "OIDC_ACME_ISSUER"),
        (
            &[
                ("OIDC_ACME_ISSUER", "https://id.example.com"),
                ("OIDC_ACME_CLIENT_ID", "x"),
                ("OIDC_ACME_SCOPES", "email"),
            ],
            "openid",
        ),
        (
            &[
                ("OIDC_ACME_ISSUER", "https://id.example.com"),
                ("OIDC_ACME_CLIENT_ID", "x"),
            ],
            "OIDC_RETURN_URLS",
        ),
    ];
    for (env, mentions) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .env("BIND", "127.0.0.1:0")
            .env("DATABASE_URL", &db)
            .env("OIDC_PROVIDERS", "acme")
            .env_remove("OIDC_RETURN_URLS")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{env:?} started");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(mentions), "{mentions} not in {stderr}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
