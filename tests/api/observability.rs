//! `/metrics` and request ids.

use std::sync::OnceLock;

use gatehouse::telemetry::Telemetry;
use gatehouse::Config;
use serde_json::json;

use crate::common::TestServer;

/// The `metrics` recorder is process-wide: one for every server of this test binary.
fn recorder() -> Telemetry {
    static HANDLE: OnceLock<Telemetry> = OnceLock::new();
    HANDLE
        .get_or_init(|| gatehouse::telemetry::install().expect("install the recorder"))
        .clone()
}

#[tokio::test]
async fn metrics_count_operations_outcomes_and_login_failures() {
    let handle = recorder();
    let server = TestServer::start_preparing(Config::for_test(), move |state| state.metrics = Some(handle)).await;
    let (token, _, username) = server.signup("metered").await;
    // Twice: the second count goes through the series the first one registered.
    for _ in 0..2 {
        server.gql(Some(&token), "{ me { id } }", json!({})).await.data("me");
    }
    let login = "mutation($u: String!) { login(input: {username: $u, password: \"not the password\"}) { token } }";
    server
        .gql(None, login, json!({ "u": username }))
        .await
        .assert_code("UNAUTHENTICATED");
    server
        .gql(None, "{ nope }", json!({}))
        .await
        .assert_code("GRAPHQL_VALIDATION_FAILED");
    let webhook = server
        .http
        .get(server.url("/auth/webhook"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 200);
    let refused = server
        .http
        .get(server.url("/auth/webhook"))
        .bearer_auth("not a token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let response = server.http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for expected in [
        "gatehouse_graphql_requests_total{operation=\"me\",outcome=\"ok\"}",
        "gatehouse_graphql_requests_total{operation=\"login\",outcome=\"error\"}",
        "gatehouse_graphql_requests_total{operation=\"invalid\",outcome=\"error\"}",
        "gatehouse_graphql_request_duration_seconds_bucket{operation=\"signup\",le=\"0.001\"}",
        "gatehouse_login_failures_total",
        "gatehouse_webhook_requests_total{outcome=\"allowed\"}",
        "gatehouse_webhook_requests_total{outcome=\"unauthorized\"}",
        "gatehouse_password_hash_queue_depth",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // Only this test runs `me` on a server that counts.
    let me_ok = text
        .lines()
        .find_map(|line| line.strip_prefix("gatehouse_graphql_requests_total{operation=\"me\",outcome=\"ok\"} "));
    assert_eq!(me_ok, Some("2"), "{text}");
    assert!(
        !text.contains("operation=\"me\",outcome=\"error\""),
        "a series appears once it counts something:\n{text}"
    );
}

#[tokio::test]
async fn metrics_are_404_without_a_recorder() {
    let server = TestServer::start(Config::for_test()).await;
    assert_eq!(
        server.http.get(server.url("/metrics")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let server = TestServer::start(Config::for_test()).await;
    let fresh = server.http.get(server.url("/healthz")).send().await.unwrap();
    let id = fresh.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    // A gateway's id is kept, so log lines join up across services.
    let forwarded = server
        .http
        .get(server.url("/healthz"))
        .header("x-request-id", "edge-42")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.headers()["x-request-id"], "edge-42");
}

#[tokio::test]
async fn metrics_bind_moves_metrics_off_the_public_listener() {
    let handle = recorder();
    // A free port for the metrics listener.
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = Config {
        metrics_bind: metrics_addr.to_string(),
        ..Config::for_test()
    };
    let server = TestServer::start_preparing(config, move |state| state.metrics = Some(handle)).await;
    server.signup("metered").await;
    let public = server.http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let private = server
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), 200);
    assert!(private
        .text()
        .await
        .unwrap()
        .contains("gatehouse_graphql_requests_total"));
    let other = server
        .http
        .get(format!("http://{metrics_addr}/graphql"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "only /metrics is served there");
}
