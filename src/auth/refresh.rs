//! Refresh tokens (API.md §8): `<session id>.<generation>.<session secret>.<chain secret>`.
//!
//! Each rotation takes one step along a keyed hash chain, chain secret n+1 = HMAC(key, chain
//! secret n), and the session row keeps only the SHA-256 of the current chain secret and its
//! generation. A spent token is recognised by hashing it forward to the current one, so no
//! spent token is stored, and a tab that lost a refresh race can be handed the very token
//! that replaced its own. The key lives on the server: a stolen spent token alone cannot be
//! walked forward. The session secret rides along so that renewed access tokens can carry it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The server's key for stepping chains, the same on every instance.
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    pub fn from_secret(secret: &str) -> Self {
        ChainKey(Sha256::digest(secret.as_bytes()).into())
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub session_id: Uuid,
    pub generation: i64,
    pub session_secret: String,
    chain_secret: String,
}

impl RefreshToken {
    /// The first token of a session: a fresh random chain.
    pub fn first(session_id: Uuid, session_secret: &str) -> Self {
        let bytes: [u8; 32] = rand::random();
        RefreshToken {
            session_id,
            generation: 0,
            session_secret: session_secret.to_owned(),
            chain_secret: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    /// The token that replaces this one.
    pub fn next(&self, key: &ChainKey) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("BUG: HMAC takes keys of any length");
        mac.update(self.chain_secret.as_bytes());
        RefreshToken {
            generation: self.generation + 1,
            chain_secret: URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
            ..self.clone()
        }
    }

    /// What the session row keeps of the chain secret.
    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.chain_secret.as_bytes()).to_vec()
    }

    /// Whether this token is the one `stored_hash` was made from (constant time).
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.hash().ct_eq(stored_hash).into()
    }

    pub fn encode(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.session_id.simple(),
            self.generation,
            self.session_secret,
            self.chain_secret
        )
    }

    /// `None` for anything that is not shaped like a refresh token.
    pub fn parse(token: &str) -> Option<Self> {
        let mut parts = token.trim().split('.');
        let (id, generation, session_secret, chain_secret) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let well_formed = parts.next().is_none()
            && [session_secret, chain_secret].iter().all(|s| {
                !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            });
        if !well_formed {
            return None;
        }
        Some(RefreshToken {
            session_id: Uuid::try_parse(id).ok()?,
            generation: generation.parse().ok().filter(|g: &i64| *g >= 0)?,
            session_secret: session_secret.to_owned(),
            chain_secret: chain_secret.to_owned(),
        })
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("session_id", &self.session_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_chains_are_keyed() {
        let key = ChainKey::from_secret("one key");
        let first = RefreshToken::first(Uuid::new_v4(), "c2Vzc2lvbg");
        assert_eq!(RefreshToken::parse(&first.encode()), Some(first.clone()));
        let second = first.next(&key);
        assert_eq!(second.generation, 1);
        assert_eq!(second, first.next(&key), "the chain is deterministic");
        assert_ne!(second, first.next(&ChainKey::from_secret("another key")));
        assert!(second.matches(&second.hash()) && !first.matches(&second.hash()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let id = Uuid::new_v4().simple();
        for bad in [
            String::new(),
            "a.b.c.d".into(),
            format!("{id}.-1.abc.def"),
            format!("{id}.0.abc"),
            format!("{id}.0.abc.def.ghi"),
            format!("{id}.0.a+c.def"),
            format!("{id}.0..def"),
        ] {
            assert!(RefreshToken::parse(&bad).is_none(), "{bad}");
        }
    }
}
