//! Several instances on one PostgreSQL database: revocations and role changes made on one
//! reach the others' session caches through LISTEN/NOTIFY, and a cache whose channel is down
//! is not trusted.

use std::time::{Duration, Instant};

use gatehouse::Config;
use serde_json::json;

use crate::common::{postgres_url, TestServer};

/// The contract's bound for other instances to see a change (API.md §3).
const PROPAGATION: Duration = Duration::from_millis(100);

pub(crate) async fn wait_until_trusted(server: &TestServer, trusted: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.state.sessions.is_trusted() != trusted {
        assert!(
            Instant::now() < deadline,
            "the session cache never became trusted={trusted}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until `check` holds, failing when it took longer than `PROPAGATION`.
pub(crate) async fn within_propagation<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            started.elapsed() <= PROPAGATION,
            "{what}: not seen within {PROPAGATION:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn roles(server: &TestServer, token: &str) -> serde_json::Value {
    server.gql(Some(token), "{ me { roles } }", json!({})).await.data("me")["roles"].clone()
}

/// Two instances on the suite's PostgreSQL database; `None` (the test is skipped) without one.
async fn two_instances() -> Option<(TestServer, TestServer)> {
    postgres_url()?;
    let (first, _) = TestServer::start_with_admin_on_postgres(Config::for_test()).await;
    let second = first.start_sharing(Config::for_test()).await;
    wait_until_trusted(&first, true).await;
    wait_until_trusted(&second, true).await;
    Some((first, second))
}

#[tokio::test]
async fn a_token_revoked_on_one_instance_is_refused_by_the_other() {
    let Some((first, second)) = two_instances().await else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let (token, _, _) = first.signup("roaming").await;
    // The second instance caches the session on first use.
    for _ in 0..3 {
        assert!(second
            .gql(Some(&token), "{ me { id } }", json!({}))
            .await
            .data("me")
            .is_object());
    }
    first
        .gql(Some(&token), "mutation { logout }", json!({}))
        .await
        .data("logout");
    within_propagation("logout on the first instance", || async {
        second.gql(Some(&token), "{ me { id } }", json!({})).await.status == 401
    })
    .await;
}

#[tokio::test]
async fn a_role_granted_on_one_instance_is_seen_by_the_other() {
    let Some((first, second)) = two_instances().await else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let admin = first.admin_token.clone().expect("admin");
    let (token, user_id, _) = first.signup("promoted").await;
    assert_eq!(roles(&second, &token).await, json!(["user"]));
    let grant = "mutation($id: UUID!) { grantRoles(userId: $id, roles: [\"editor\"]) { roles } }";
    first
        .gql(Some(&admin), grant, json!({ "id": user_id }))
        .await
        .data("grantRoles");
    within_propagation("a grant on the first instance", || async {
        roles(&second, &token).await == json!(["editor", "user"])
    })
    .await;
}

#[tokio::test]
async fn while_the_channel_is_down_the_cache_is_bypassed() {
    let Some((first, second)) = two_instances().await else {
        return eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    };
    let (token, _, _) = first.signup("cut_off").await;
    assert!(second
        .gql(Some(&token), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());

    // Cut the second instance's notification connection, as a network blip would.
    let kill =
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()";
    sea_orm::ConnectionTrait::execute_unprepared(&first.state.db, kill)
        .await
        .unwrap();
    wait_until_trusted(&second, false).await;

    // A revocation it cannot hear about is still honoured: nothing is served from the cache.
    first
        .gql(Some(&token), "mutation { logout }", json!({}))
        .await
        .data("logout");
    second
        .gql(Some(&token), "{ me { id } }", json!({}))
        .await
        .assert_unauthorized();

    // The channel comes back by itself, and caching resumes.
    wait_until_trusted(&second, true).await;
    let (fresh, _, _) = second.signup("back").await;
    assert!(second
        .gql(Some(&fresh), "{ me { id } }", json!({}))
        .await
        .data("me")
        .is_object());
}
