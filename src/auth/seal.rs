//! Sealing secrets the server must read back (TOTP secrets): XChaCha20-Poly1305 under a key
//! that is not in the database (see `startup::sealing_key`), so a copy of the database alone
//! does not give them away. A sealed value is a random 24-byte nonce followed by the
//! ciphertext and its tag.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const NONCE_BYTES: usize = 24;

#[derive(Clone)]
pub struct SealingKey(XChaCha20Poly1305);

impl SealingKey {
    /// A key derived from secret material (the signing secret or key, or a key file), kept
    /// apart from the signing use by a label.
    pub fn derive(material: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"gatehouse sealing key v1\0");
        hasher.update(material);
        SealingKey(XChaCha20Poly1305::new(&hasher.finalize()))
    }

    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), plain)
            .expect("BUG: XChaCha20-Poly1305 seals any length a TOTP secret has");
        [nonce.as_slice(), &sealed].concat()
    }

    /// `None` when the value was sealed under another key or altered.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_BYTES)?;
        self.0.decrypt(XNonce::from_slice(nonce), ciphertext).ok()
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_their_key_and_unaltered() {
        let key = SealingKey::derive(b"one");
        let sealed = key.seal(b"a totp secret");
        assert_eq!(key.open(&sealed).as_deref(), Some(&b"a totp secret"[..]));
        assert_ne!(key.seal(b"a totp secret"), sealed, "a fresh nonce each time");
        assert!(SealingKey::derive(b"two").open(&sealed).is_none());
        let mut altered = sealed.clone();
        altered[30] ^= 1;
        assert!(key.open(&altered).is_none());
        assert!(key.open(&sealed[..10]).is_none());
    }
}
