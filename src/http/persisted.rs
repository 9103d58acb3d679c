//! Apollo's automatic persisted queries (API.md §2): a client sends only the SHA-256 of a
//! document it sent before, and sends the text again when the server does not know it.
//! Known documents are kept by hash in a bounded cache; a document is remembered only after
//! it passed every limit, and one sent by hash is checked exactly as if sent in full.

use std::sync::Arc;

use async_graphql::Value;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Text and hashes kept at most: past this the least used documents go.
const MAX_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct PersistedQueries {
    documents: Cache<String, Arc<str>>,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        let documents = Cache::builder()
            .max_capacity(MAX_BYTES)
            .weigher(|hash: &String, text: &Arc<str>| u32::try_from(hash.len() + text.len()).unwrap_or(u32::MAX))
            .build();
        PersistedQueries { documents }
    }
}

/// What a request asks of the persisted documents.
#[derive(Debug, PartialEq, Eq)]
pub enum Persisted {
    /// No `persistedQuery` extension: an ordinary request.
    No,
    /// The document known under this hash, if any.
    Lookup(String),
    /// The text sent along hashes to this: remember it once it passes the limits.
    Register(String),
}

impl PersistedQueries {
    /// What `request` asks for, or why its `persistedQuery` extension is refused (a 400).
    pub fn requested(request: &async_graphql::Request) -> Result<Persisted, &'static str> {
        let Some(extension) = request.extensions.get("persistedQuery") else {
            return Ok(Persisted::No);
        };
        let Value::Object(extension) = extension else {
            return Err("extensions.persistedQuery must be an object");
        };
        if extension.get("version") != Some(&Value::from(1)) {
            return Err("unsupported persisted query version: only version 1 is");
        }
        let hash = match extension.get("sha256Hash") {
            Some(Value::String(hash)) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                hash.to_ascii_lowercase()
            }
            _ => return Err("extensions.persistedQuery.sha256Hash must be 64 hexadecimal digits"),
        };
        if request.query.is_empty() {
            return Ok(Persisted::Lookup(hash));
        }
        let actual = hex::encode(Sha256::digest(request.query.as_bytes()));
        if !bool::from(actual.as_bytes().ct_eq(hash.as_bytes())) {
            return Err("provided sha does not match query");
        }
        Ok(Persisted::Register(hash))
    }

    pub fn get(&self, hash: &str) -> Option<Arc<str>> {
        self.documents.get(hash)
    }

    pub fn remember(&self, hash: String, text: &str) {
        self.documents.insert(hash, text.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, extension: serde_json::Value) -> async_graphql::Request {
        let mut request = async_graphql::Request::new(query);
        request
            .extensions
            .insert("persistedQuery".into(), Value::from_json(extension).unwrap());
        request
    }

    #[test]
    fn hashes_are_checked_against_the_text() {
        let text = "{ me { id } }";
        let hash = hex::encode(Sha256::digest(text));
        let with = |query: &str, hash: &str| {
            PersistedQueries::requested(&request(query, serde_json::json!({ "version": 1, "sha256Hash": hash })))
        };
        assert_eq!(with("", &hash), Ok(Persisted::Lookup(hash.clone())));
        assert_eq!(with(text, &hash), Ok(Persisted::Register(hash.clone())));
        assert_eq!(with(text, &hash.to_uppercase()), Ok(Persisted::Register(hash.clone())));
        assert!(with("{ me { username } }", &hash).is_err());
        assert!(with("", "abc").is_err());
        let other_version = request("", serde_json::json!({ "version": 2, "sha256Hash": hash }));
        assert!(PersistedQueries::requested(&other_version).is_err());
        assert_eq!(
            PersistedQueries::requested(&async_graphql::Request::new(text)),
            Ok(Persisted::No)
        );
    }
}
