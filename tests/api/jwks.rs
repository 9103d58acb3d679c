//! Asymmetric tokens (`JWT_PRIVATE_KEY_FILE`) and `/.well-known/jwks.json`: keys made by the
//! openssl CLI, tokens checked by an independent JWT library (jwt-simple) against the
//! published key set, and the algorithm-confusion forgery refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse::Config;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::common::{Reply, TestServer};

const FORGER_SECRET: &[u8] = b"a secret only the forger knows";

fn openssl(args: &[&str]) {
    let output = Command::new("openssl").args(args).output().expect("openssl CLI");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh private key PEM from `openssl genpkey`, and its public half in PEM.
fn generate(dir: &Path, algorithm: &str) -> (PathBuf, String) {
    let private = dir.join(format!("{algorithm}.pem"));
    let public = dir.join(format!("{algorithm}.pub.pem"));
    let private_s = private.to_str().unwrap();
    match algorithm {
        "ed25519" => openssl(&["genpkey", "-algorithm", "ed25519", "-out", private_s]),
        _ => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            private_s,
        ]),
    }
    openssl(&["pkey", "-in", private_s, "-pubout", "-out", public.to_str().unwrap()]);
    (private, std::fs::read_to_string(public).unwrap())
}

async fn start_with_key(path: PathBuf) -> TestServer {
    TestServer::start(Config {
        jwt_private_key_file: Some(path),
        jwt_secret: None,
        ..Config::for_test()
    })
    .await
}

async fn jwks(server: &TestServer) -> Value {
    let response = server
        .http
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert_eq!(reply.status, 200);
    reply.body
}

fn b64(value: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(value.as_str().expect("base64url member"))
        .unwrap()
}

async fn webhook_status(server: &TestServer, token: &str) -> u16 {
    let response = server
        .http
        .get(server.url("/auth/webhook"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// An HS256 token with the real token's claims and `kid`, keyed with `secret`.
fn forge_hs256(token: &str, kid: &str, secret: &[u8]) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let mut custom: serde_json::Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let subject = custom.remove("sub").unwrap();
    for registered in ["iat", "exp", "nbf"] {
        custom.remove(registered);
    }
    let claims = Claims::with_custom_claims(custom, Duration::from_hours(1)).with_subject(subject.as_str().unwrap());
    HS256Key::from_bytes(secret)
        .with_key_id(kid)
        .authenticate(claims)
        .unwrap()
}

/// Checks the served key set, the token against it with jwt-simple, the token's use on
/// `/graphql` and `/auth/webhook`, and that HS256 keyed with the public key is refused.
async fn check_key(algorithm: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (path, public_pem) = generate(dir.path(), algorithm);
    let server = start_with_key(path).await;
    let (token, user_id, _) = server.signup(algorithm).await;

    let set = jwks(&server).await;
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{set}");
    let jwk = &keys[0];
    assert_eq!(jwk["use"], "sig");
    let kid = jwk["kid"].as_str().unwrap();
    for private_member in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(
            jwk.get(private_member).is_none(),
            "private {private_member} published: {jwk}"
        );
    }

    let metadata = Token::decode_metadata(&token).unwrap();
    assert_eq!(metadata.key_id(), Some(kid));
    let claims = match algorithm {
        "ed25519" => {
            assert_eq!(
                (&jwk["kty"], &jwk["crv"], &jwk["alg"]),
                (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"))
            );
            assert_eq!(metadata.algorithm(), "EdDSA");
            let key = Ed25519PublicKey::from_bytes(&b64(&jwk["x"])).unwrap().with_key_id(kid);
            key.verify_token::<NoCustomClaims>(&token, None).unwrap()
        }
        _ => {
            assert_eq!((&jwk["kty"], &jwk["alg"]), (&json!("RSA"), &json!("RS256")));
            assert_eq!(metadata.algorithm(), "RS256");
            let key = RS256PublicKey::from_components(&b64(&jwk["n"]), &b64(&jwk["e"]))
                .unwrap()
                .with_key_id(kid);
            key.verify_token::<NoCustomClaims>(&token, None).unwrap()
        }
    };
    assert_eq!(claims.subject.as_deref(), Some(user_id.as_str()));

    let me = server.gql(Some(&token), "{ me { id } }", json!({})).await.data("me");
    assert_eq!(me["id"], user_id.as_str());
    assert_eq!(webhook_status(&server, &token).await, 200);

    // Algorithm confusion: HS256 "signed" with the public key, as raw bytes or as PEM text.
    let raw_public = match algorithm {
        "ed25519" => b64(&jwk["x"]),
        _ => b64(&jwk["n"]),
    };
    for secret in [raw_public.as_slice(), public_pem.as_bytes()] {
        let forged = forge_hs256(&token, kid, secret);
        server
            .gql(Some(&forged), "{ me { id } }", json!({}))
            .await
            .assert_unauthorized();
        assert_eq!(webhook_status(&server, &forged).await, 401);
    }
    // The same claims in a correctly made HS256 token are accepted by the forger's own key,
    // so the refusal above is the server's algorithm check, not a broken forgery.
    let forged = forge_hs256(&token, kid, FORGER_SECRET);
    HS256Key::from_bytes(FORGER_SECRET)
        .verify_token::<NoCustomClaims>(&forged, None)
        .unwrap();
}

#[tokio::test]
async fn ed25519_tokens_verify_against_the_published_key() {
    check_key("ed25519").await;
}

#[tokio::test]
async fn rsa_tokens_verify_against_the_published_key() {
    check_key("rsa").await;
}

#[tokio::test]
async fn the_shared_secret_default_publishes_no_keys() {
    let server = TestServer::start(Config::for_test()).await;
    assert_eq!(jwks(&server).await, json!({ "keys": [] }));
}

#[test]
fn a_bad_key_file_stops_startup_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/never.db?mode=rwc", data.path().display());
    for file in [garbage, dir.path().join("missing.pem")] {
        let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .env_remove("JWT_SECRET")
            .env("BIND", "127.0.0.1:0")
            .env("DATABASE_URL", &db)
            .env("JWT_PRIVATE_KEY_FILE", &file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "started with {}", file.display());
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("JWT_PRIVATE_KEY_FILE"), "{stderr}");
    }
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}
