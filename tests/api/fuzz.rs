//! Property-based fuzzing: token parsing with arbitrary and mutated tokens, and the HTTP
//! handlers with arbitrary bodies and headers on a live server, which must always answer
//! with a sane status and JSON, and keep serving. `PROPTEST_CASES` sets how many cases
//! (`.ci/run` raises it); without it each target runs `DEFAULT_CASES`.

use std::time::Duration;

use gatehouse::auth::token::{Claims, TokenKeys};
use gatehouse::Config;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::json;
use uuid::Uuid;

use crate::common::TestServer;

/// Cases per target in an ordinary `cargo test`: a quick smoke run.
const DEFAULT_CASES: u32 = 48;
/// The statuses the HTTP surface may answer with (API.md §2, §3, §6).
const EXPECTED_STATUSES: &[u16] = &[200, 400, 401, 403, 405, 413, 415];

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    TestRunner::new(RunnerConfig {
        cases,
        // Failures are reported with their minimal input; no files are written next to tests.
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// Edits a string the way a forger or a broken client would: flip, insert, delete, cut.
fn mutate(original: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut bytes = original.as_bytes().to_vec();
    for &(position, kind, byte) in edits {
        let at = if bytes.is_empty() { 0 } else { position % bytes.len() };
        match kind % 4 {
            0 if !bytes.is_empty() => bytes[at] ^= byte.max(1),
            1 => bytes.insert(at, byte),
            2 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn fuzz_token_verification() {
    let keys = TokenKeys::hs256(b"fuzzing-secret-fuzzing-secret-0123");
    let claims = Claims::new(
        Uuid::new_v4(),
        Uuid::new_v4(),
        "session-secret".into(),
        1_000,
        2_000,
        &["user".into()],
    );
    let token = keys.sign(&claims).unwrap();
    assert_eq!(keys.verify(&token, 1_500).as_deref(), Some(&claims));

    let segment = "[A-Za-z0-9_=+/-]{0,60}";
    let genuine = token.clone();
    let shapes = prop_oneof![
        any::<String>(),
        "[ -~]{0,300}",
        (segment, segment, segment).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
            .prop_map(move |edits| mutate(&genuine, &edits)),
    ];
    runner()
        .run(&shapes, |candidate| {
            // Never a panic, and nothing but the genuine token verifies.
            let verified = keys.verify(&candidate, 1_500);
            prop_assert!(verified.is_none() || candidate == token, "{candidate:?} verified");
            Ok(())
        })
        .unwrap();
}

/// One arbitrary request: method, path, headers and body.
#[derive(Debug, Clone)]
struct Fuzzed {
    post: bool,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn requests(token: String) -> impl Strategy<Value = Fuzzed> {
    let header_value = |choices: &'static [&'static str]| {
        prop_oneof![
            prop::sample::select(choices).prop_map(str::to_owned),
            "[ -~]{0,80}".prop_map(|v| v.trim().to_owned()),
        ]
    };
    let credential = prop_oneof![
        Just(format!("Bearer {token}")),
        prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)
            .prop_map(move |edits| format!("Bearer {}", mutate(&token, &edits))),
        "[ -~]{0,120}".prop_map(|v| v.trim().to_owned()),
    ];
    let headers = (
        prop::option::of(header_value(&[
            "application/json",
            "application/graphql-response+json",
            "text/plain",
            "multipart/form-data; boundary=x",
        ])),
        prop::option::of(header_value(&["application/graphql-response+json", "text/html", "*/*"])),
        prop::option::of(credential),
        prop::option::of("[ -~]{0,120}".prop_map(|v| format!("gatehouse_session={}", v.trim()))),
        prop::option::of(header_value(&["true"])),
    )
        .prop_map(|(content_type, accept, authorization, cookie, preflight)| {
            [
                ("content-type", content_type),
                ("accept", accept),
                ("authorization", authorization),
                ("cookie", cookie),
                ("apollo-require-preflight", preflight),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect::<Vec<_>>()
        });
    let query = prop_oneof![
        prop::sample::select(
            &[
                "{ me { id } }",
                "{ __typename }",
                "mutation { logout }",
                "{ sessions { id } }",
                "query Q($f: Int) { users(first: $f) { totalCount } }",
                "{ __schema { types { name } } }",
                "mutation { login(input: {username: \"fuzz\", password: \"fuzzfuzzfuzz\"}) { token } }",
            ][..]
        )
        .prop_map(str::to_owned),
        "[ -~]{0,200}",
        "[{}():$!@a-z ]{0,200}",
    ];
    let json_body = (query, prop::option::of(any::<i64>()), prop::option::of("[ -~]{0,20}")).prop_map(
        |(query, first, operation)| {
            serde_json::to_vec(&json!({ "query": query, "variables": { "f": first }, "operationName": operation }))
                .unwrap_or_default()
        },
    );
    let body = prop_oneof![
        3 => json_body,
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => "[ -~]{0,300}".prop_map(String::into_bytes),
    ];
    (
        any::<bool>(),
        prop::sample::select(&["/graphql", "/auth/webhook"][..]),
        headers,
        body,
    )
        .prop_map(|(post, path, headers, body)| Fuzzed {
            post,
            path,
            headers,
            body,
        })
}

#[test]
fn fuzz_http_handlers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start(Config::for_test()));
    let (token, _, _) = runtime.block_on(server.signup("fuzz"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    runner()
        .run(&requests(token.clone()), |fuzzed| {
            runtime.block_on(async {
                let url = server.url(fuzzed.path);
                let mut request = if fuzzed.post {
                    client.post(&url).body(fuzzed.body.clone())
                } else {
                    // A GET carries the body as the query string.
                    let query = String::from_utf8_lossy(&fuzzed.body).into_owned();
                    client.get(&url).query(&[("query", query)])
                };
                for (name, value) in &fuzzed.headers {
                    request = request.header(*name, value);
                }
                let request = match request.build() {
                    Ok(request) => request,
                    // A header value reqwest itself refuses never reaches the server.
                    Err(_) => return Ok(()),
                };
                // A panicking handler drops the connection: that shows up here.
                let response = client
                    .execute(request)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
                let status = response.status().as_u16();
                prop_assert!(EXPECTED_STATUSES.contains(&status), "status {status}");
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let text = response.text().await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                if content_type.starts_with("text/html") {
                    return Ok(());
                }
                let body: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|_| TestCaseError::fail(format!("not JSON ({status}): {text}")))?;
                prop_assert!(body.is_object(), "{body}");
                if status >= 500 || text.contains("INTERNAL_SERVER_ERROR") {
                    return Err(TestCaseError::fail(format!("internal error: {text}")));
                }
                Ok(())
            })
        })
        .unwrap();

    // Still serving: a fresh account signs up and is recognised (the fuzzed requests may
    // have logged the first one out).
    let (fresh, user_id, _) = runtime.block_on(server.signup("after_fuzz"));
    let reply = runtime.block_on(server.gql(Some(&fresh), "{ me { id } }", json!({})));
    assert_eq!(reply.data("me")["id"], user_id.as_str());
    drop(server);
}
