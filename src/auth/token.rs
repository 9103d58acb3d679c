//! The JWT codec: signs and verifies session tokens with one fixed algorithm (HS256).
//! It knows nothing of the database: a verified token still needs a live session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn hs256(secret: &[u8]) -> Self {
        // Only HS256 is accepted: `alg: none` and any other algorithm fail to decode.
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the server clock in `verify` (tests move it forward);
        // the session row's own expiry is checked again when the session is loaded.
        validation.validate_exp = false;
        validation.required_spec_claims = ["sub", "exp"].into_iter().map(String::from).collect();
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// Checks signature, algorithm and expiry; `None` for anything short of a valid token.
    pub fn verify(&self, token: &str, now_unix: i64) -> Option<Claims> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        (claims.exp > now_unix).then_some(claims)
    }
}

/// A fresh random secret for a session token, and the hash the database keeps of it.
pub fn new_session_secret() -> (String, Vec<u8>) {
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
    use subtle::ConstantTimeEq;
    secret_hash(secret).ct_eq(stored_hash).into()
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
        assert_eq!(keys.verify(&token, 50), Some(c));
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
        let (secret, hash) = new_session_secret();
        assert!(secret_matches(&secret, &hash));
        assert!(!secret_matches("other", &hash));
    }
}
