//! The JWT codec: signs and verifies session tokens with one fixed algorithm: HS256 by
//! default, or EdDSA / RS256 with `JWT_PRIVATE_KEY_FILE` (`auth::jwk`). It knows nothing of
//! the database: a verified token still needs a live session.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::jwk::PrivateKey;
use crate::IssuedKeyHasher;

/// Clock skew tolerated on `iat` between instances sharing a database.
const IAT_LEEWAY_SECONDS: i64 = 30;
/// Token text kept verified in memory at most (a token is about 400 bytes), and how long an
/// unused one stays.
const VERIFIED_TOKENS_BYTES: u64 = 8 * 1024 * 1024;
const VERIFIED_TOKENS_IDLE: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: Uuid,
    pub sid: Uuid,
    /// The session secret; the database only keeps its SHA-256 (see `auth::session`).
    pub sk: String,
    pub iat: i64,
    pub exp: i64,
    /// The claim namespace Hasura reads (API.md §3).
    #[serde(rename = "https://hasura.io/jwt/claims")]
    pub hasura: HasuraClaims,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HasuraClaims {
    #[serde(rename = "x-hasura-user-id")]
    pub user_id: String,
    #[serde(rename = "x-hasura-default-role")]
    pub default_role: String,
    #[serde(rename = "x-hasura-allowed-roles")]
    pub allowed_roles: Vec<String>,
}

pub struct TokenKeys {
    algorithm: Algorithm,
    /// Set for asymmetric keys, so verifiers can pick the key from the published set.
    kid: Option<String>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// The public key for `/.well-known/jwks.json`; none for a shared secret.
    jwk: Option<Value>,
    verified: Cache<String, Arc<Claims>, IssuedKeyHasher>,
}

impl TokenKeys {
    pub fn hs256(secret: &[u8]) -> Self {
        TokenKeys {
            algorithm: Algorithm::HS256,
            kid: None,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256),
            jwk: None,
            verified: verified_tokens(),
        }
    }

    pub fn asymmetric(key: PrivateKey) -> Self {
        TokenKeys {
            algorithm: key.algorithm,
            kid: Some(key.kid),
            encoding: key.encoding,
            decoding: key.decoding,
            validation: validation(key.algorithm),
            jwk: Some(key.jwk),
            verified: verified_tokens(),
        }
    }

    /// The JWK Set of the public keys: empty under a shared secret, which must stay private.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.jwk.iter().collect::<Vec<_>>() })
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(self.algorithm);
        header.kid = self.kid.clone();
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Checks key id, signature, algorithm and times; `None` for anything short of a valid
    /// token. Expiry has no leeway (the token and its session expire together, on the same
    /// clock); an `iat` in the future is allowed `IAT_LEEWAY_SECONDS` of clock skew between
    /// instances.
    pub fn verify(&self, token: &str, now_unix: i64) -> Option<Arc<Claims>> {
        // A token's signature and key id never change their verdict under the same keys, so
        // a token verified once is taken from memory; its times are checked on every use.
        let claims = match self.verified.get(token) {
            Some(claims) => claims,
            None => {
                let decoded = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
                // A token naming another key (or any key, under a shared secret) was not made
                // by this server.
                if decoded.header.kid != self.kid {
                    return None;
                }
                let claims = Arc::new(decoded.claims);
                self.verified.insert(token.to_owned(), claims.clone());
                claims
            }
        };
        let fresh = claims.exp > now_unix && claims.iat <= now_unix.saturating_add(IAT_LEEWAY_SECONDS);
        fresh.then_some(claims)
    }
}

/// Tokens that passed `verify`, by their text. Bounded by text size, and an entry unused for
/// a while goes first: a miss only costs a signature check.
fn verified_tokens() -> Cache<String, Arc<Claims>, IssuedKeyHasher> {
    Cache::builder()
        .max_capacity(VERIFIED_TOKENS_BYTES)
        .weigher(|token: &String, _: &Arc<Claims>| u32::try_from(token.len()).unwrap_or(u32::MAX))
        .time_to_idle(VERIFIED_TOKENS_IDLE)
        .build_with_hasher(IssuedKeyHasher::default())
}

/// Only `algorithm` is accepted: `alg: none`, and any other algorithm (such as HS256 keyed
/// with a public key's bytes), fail to decode.
fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    // Expiry is checked against the server clock in `verify` (tests move it forward);
    // the session row's own expiry is checked again when the session is loaded.
    validation.validate_exp = false;
    validation.required_spec_claims = ["sub", "exp"].into_iter().map(String::from).collect();
    validation
}

/// A fresh 256-bit random secret (a session's, or a single-use ticket, link or code), and the
/// hash the database keeps of it.
pub fn new_secret() -> (String, Vec<u8>) {
    let bytes: [u8; 32] = rand::random();
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let hash = secret_hash(&secret);
    (secret, hash)
}

pub fn secret_hash(secret: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn secret_matches(secret: &str, stored_hash: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    // Compared where it was computed: this runs on every authenticated request.
    Sha256::digest(secret.as_bytes()).as_slice().ct_eq(stored_hash).into()
}

/// A random 64-byte secret for the database-kept signing key.
pub fn generate_signing_secret() -> String {
    let bytes: [u8; 64] = {
        let mut b = [0u8; 64];
        rand::Rng::fill(&mut rand::thread_rng(), &mut b[..]);
        b
    };
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Claims {
    pub fn new(user_id: Uuid, session_id: Uuid, secret: String, iat: i64, exp: i64, roles: &[String]) -> Self {
        let mut allowed_roles: Vec<String> = roles.iter().filter(|r| !r.contains(':')).cloned().collect();
        if !allowed_roles.iter().any(|r| r == "user") {
            allowed_roles.push("user".into());
        }
        Claims {
            sub: user_id,
            sid: session_id,
            sk: secret,
            iat,
            exp,
            hasura: HasuraClaims {
                user_id: user_id.to_string(),
                default_role: "user".into(),
                allowed_roles,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims::new(
            Uuid::new_v4(),
            Uuid::new_v4(),
            "s".into(),
            0,
            exp,
            &["admin".into(), "user".into()],
        )
    }

    #[test]
    fn round_trip_keeps_claims() {
        let keys = TokenKeys::hs256(b"0123456789abcdef0123456789abcdef");
        let c = claims(100);
        let token = keys.sign(&c).unwrap();
        assert_eq!(keys.verify(&token, 50).as_deref(), Some(&c));
    }

    #[test]
    fn a_remembered_token_still_has_its_times_checked() {
        let keys = TokenKeys::hs256(b"0123456789abcdef0123456789abcdef");
        let mut c = claims(100);
        c.iat = 40;
        let token = keys.sign(&c).unwrap();
        assert_eq!(keys.verify(&token, 50).as_deref(), Some(&c));
        assert!(keys.verified.contains_key(token.as_str()));
        assert_eq!(keys.verify(&token, 100), None, "expired since it was remembered");
        assert_eq!(
            keys.verify(&token, 9),
            None,
            "issued too far in the future for that clock"
        );
        assert_eq!(keys.verify(&token, 99).as_deref(), Some(&c));
    }

    #[test]
    fn a_refused_token_is_not_remembered() {
        let keys = TokenKeys::hs256(b"0123456789abcdef0123456789abcdef");
        let forged = TokenKeys::hs256(b"another-secret-another-secret-xx")
            .sign(&claims(100))
            .unwrap();
        for _ in 0..2 {
            assert_eq!(keys.verify(&forged, 50), None);
        }
        assert!(!keys.verified.contains_key(forged.as_str()));
    }

    #[test]
    fn expired_token_is_refused() {
        let keys = TokenKeys::hs256(b"0123456789abcdef0123456789abcdef");
        let token = keys.sign(&claims(100)).unwrap();
        assert_eq!(keys.verify(&token, 100), None);
    }

    #[test]
    fn wrong_key_and_alg_none_are_refused() {
        let keys = TokenKeys::hs256(b"0123456789abcdef0123456789abcdef");
        let other = TokenKeys::hs256(b"another-secret-another-secret-xx");
        let token = other.sign(&claims(100)).unwrap();
        assert_eq!(keys.verify(&token, 50), None);

        let payload = token.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(keys.verify(&format!("{none_header}.{payload}."), 50), None);
    }

    /// RFC 8037 appendix A.1's Ed25519 key.
    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
        -----END PRIVATE KEY-----\n";

    #[test]
    fn ed25519_tokens_carry_kid_and_refuse_other_algorithms() {
        let key = crate::auth::jwk::from_pem(ED25519_PEM).unwrap();
        let x = key.jwk["x"].as_str().unwrap().to_owned();
        let keys = TokenKeys::asymmetric(key);
        let c = claims(100);
        let token = keys.sign(&c).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(
            header.kid.as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
        assert_eq!(keys.verify(&token, 50).as_deref(), Some(&c));
        assert_eq!(keys.jwks()["keys"][0]["x"], x.as_str());

        // Algorithm confusion: HS256 keyed with the public key's bytes.
        let public = URL_SAFE_NO_PAD.decode(&x).unwrap();
        let forged = TokenKeys::hs256(&public).sign(&c).unwrap();
        assert_eq!(keys.verify(&forged, 50), None);
        let forged = TokenKeys::hs256(x.as_bytes()).sign(&c).unwrap();
        assert_eq!(keys.verify(&forged, 50), None);

        let payload = token.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(keys.verify(&format!("{none_header}.{payload}."), 50), None);
    }

    #[test]
    fn other_key_ids_and_future_issue_times_are_refused() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let keys = TokenKeys::hs256(secret);
        let c = claims(1000);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("other-key".into());
        let with_kid = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(secret)).unwrap();
        assert_eq!(keys.verify(&with_kid, 50), None, "a kid under a shared secret");

        let key = crate::auth::jwk::from_pem(ED25519_PEM).unwrap();
        let encoding = key.encoding.clone();
        let ed_keys = TokenKeys::asymmetric(key);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("not-our-thumbprint".into());
        let wrong_kid = jsonwebtoken::encode(&header, &c, &encoding).unwrap();
        assert_eq!(ed_keys.verify(&wrong_kid, 50), None, "a different kid");
        let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &c, &encoding).unwrap();
        assert_eq!(ed_keys.verify(&no_kid, 50), None, "no kid");

        let mut future = claims(1000);
        future.iat = 50 + IAT_LEEWAY_SECONDS + 1;
        assert_eq!(keys.verify(&keys.sign(&future).unwrap(), 50), None);
        future.iat = 50 + IAT_LEEWAY_SECONDS;
        assert!(keys.verify(&keys.sign(&future).unwrap(), 50).is_some());
    }

    #[test]
    fn shared_secret_publishes_no_keys() {
        let keys = TokenKeys::hs256(b"0123456789abcdef0123456789abcdef");
        assert_eq!(keys.jwks(), json!({ "keys": [] }));
        let token = keys.sign(&claims(100)).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&token).unwrap().kid, None);
    }

    #[test]
    fn hasura_claims_carry_global_roles_only() {
        let c = Claims::new(
            Uuid::nil(),
            Uuid::nil(),
            "s".into(),
            0,
            1,
            &["admin".into(), "site:admin".into()],
        );
        assert_eq!(c.hasura.allowed_roles, vec!["admin".to_string(), "user".to_string()]);
        assert_eq!(c.hasura.default_role, "user");
    }

    #[test]
    fn secret_hash_compares() {
        let (secret, hash) = new_secret();
        assert!(secret_matches(&secret, &hash));
        assert!(!secret_matches("other", &hash));
    }
}
