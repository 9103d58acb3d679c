//! Asymmetric signing keys (`JWT_PRIVATE_KEY_FILE`): reads an Ed25519 or RSA private key PEM
//! and derives its public JWK and `kid`. Signing and verifying stay in `auth::token`; serving
//! the key set is `http::jwks`'s.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// RSA keys shorter than this are refused: NIST's floor, and ring will not sign below it.
const MIN_RSA_BITS: usize = 2048;

/// A private key read from PEM, with the public half in the forms the codec and JWKS need.
pub struct PrivateKey {
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// RFC 7638 thumbprint of the public key: stable across restarts, and changes with the key.
    pub kid: String,
    /// The public key as a JWK (RFC 7517), `kid`, `alg` and `use` included.
    pub jwk: Value,
}

/// Reads and parses the key file; the error is one line naming the setting.
pub fn load(path: &Path) -> Result<PrivateKey, String> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| format!("JWT_PRIVATE_KEY_FILE: cannot read {}: {e}", path.display()))?;
    from_pem(&pem).map_err(|reason| format!("JWT_PRIVATE_KEY_FILE: {}: {reason}", path.display()))
}

/// The algorithm follows from the key: Ed25519 signs EdDSA, RSA signs RS256. One key, one
/// algorithm, so a token can never choose how it is checked.
pub fn from_pem(pem: &str) -> Result<PrivateKey, String> {
    // One trait for both crates: they share the `pkcs8` crate.
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::traits::PublicKeyParts as _;

    if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|_| "unusable Ed25519 key")?;
        let decoding = DecodingKey::from_ed_components(&x).map_err(|_| "unusable Ed25519 key")?;
        // RFC 7638: the required members, in lexicographic order, without whitespace.
        let kid = thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
        let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig", "kid": kid });
        return Ok(PrivateKey {
            algorithm: Algorithm::EdDSA,
            encoding,
            decoding,
            kid,
            jwk,
        });
    }

    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|_| "not an unencrypted Ed25519 or RSA private key in PEM")?;
    if key.size() * 8 < MIN_RSA_BITS {
        return Err(format!("RSA keys must have at least {MIN_RSA_BITS} bits"));
    }
    let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
    let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| "unusable RSA key")?;
    let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|_| "unusable RSA key")?;
    let kid = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
    let jwk = json!({ "kty": "RSA", "n": n, "e": e, "alg": "RS256", "use": "sig", "kid": kid });
    Ok(PrivateKey {
        algorithm: Algorithm::RS256,
        encoding,
        decoding,
        kid,
        jwk,
    })
}

fn thumbprint(canonical_jwk: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical_jwk.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8037 appendix A.1: the Ed25519 test key, and its thumbprint from A.3.
    const RFC8037_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
        -----END PRIVATE KEY-----\n";

    #[test]
    fn ed25519_key_gives_the_rfc_jwk_and_thumbprint() {
        let key = from_pem(RFC8037_KEY).unwrap();
        assert_eq!(key.algorithm, Algorithm::EdDSA);
        assert_eq!(key.jwk["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        assert_eq!(key.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(key.jwk["kid"], key.kid);
    }

    #[test]
    fn other_text_is_refused_with_a_reason() {
        let error = from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .err()
            .unwrap();
        assert!(error.contains("Ed25519 or RSA"), "{error}");
        assert!(from_pem("").is_err());
    }
}
