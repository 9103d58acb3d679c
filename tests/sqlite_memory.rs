//! SQLite allocates through mimalloc (`configure_sqlite_memory`, src/startup.rs). A test
//! binary of its own, so a process of its own: the setting only takes before SQLite first
//! initialises, which a test in a shared process could do before the server starts.

use gatehouse::config::Config;
use serde_json::{json, Value};
use tokio::net::TcpListener;

#[tokio::test]
async fn a_server_on_sqlite_allocates_sqlite_memory_through_mimalloc_and_reads_back_what_it_wrote() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let dir = tempfile::tempdir().expect("a folder for the database");
    let mut config = Config::for_test();
    config.database_url = format!("sqlite://{}?mode=rwc", dir.path().join("db.sqlite").display());
    let state = gatehouse::startup::start(config).await.expect("start gatehouse");
    tokio::spawn(gatehouse::app::serve(listener, state, std::future::pending()));

    let graphql = format!("http://{addr}/graphql");
    let http = reqwest::Client::new();
    let post = |query: &'static str, token: Option<String>| {
        let mut request = http.post(&graphql).json(&json!({ "query": query }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            request
                .send()
                .await
                .expect("request")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    let signup = post(
        r#"mutation { signup(input: {username: "mimalloc_reader", password: "correct horse battery staple"}) { token } }"#,
        None,
    )
    .await;
    let token = signup["data"]["signup"]["token"].as_str().expect("a token").to_owned();
    let site = post(
        r#"mutation { createSite(input: {name: "a site on mimalloc"}) { id } }"#,
        Some(token.clone()),
    )
    .await;
    assert!(site["errors"].is_null(), "{site}");
    let page = post(
        "{ me { username } sites(first: 5) { edges { node { name } } } }",
        Some(token),
    )
    .await;
    assert_eq!(page["data"]["me"]["username"], "mimalloc_reader", "{page}");
    assert_eq!(
        page["data"]["sites"]["edges"][0]["node"]["name"], "a site on mimalloc",
        "{page}"
    );

    // SAFETY: memory from sqlite3_malloc goes back through sqlite3_free; mimalloc only reads
    // the address to tell whether it is one of its own.
    let from_sqlite = unsafe { libsqlite3_sys::sqlite3_malloc(100) };
    assert!(!from_sqlite.is_null());
    let in_mimalloc = unsafe { libmimalloc_sys::mi_is_in_heap_region(from_sqlite) };
    unsafe { libsqlite3_sys::sqlite3_free(from_sqlite) };
    assert!(in_mimalloc, "SQLite's allocation is not mimalloc's");
}
