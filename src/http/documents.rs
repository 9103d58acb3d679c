//! Parsed documents by their text: a client sends the same few documents over and over, and
//! parsing (pest) is a large part of answering a small one. Only documents that passed every
//! limit and async-graphql's validation are kept, and the limits still run on every request (a
//! page size may come from the variables); execution gets its own copy, so nothing is shared
//! between requests.

use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;
use moka::sync::Cache;

/// Document text kept at most (the parsed form is a few times larger); least used go first.
const MAX_TEXT_BYTES: u64 = 4 * 1024 * 1024;

pub struct Documents(Cache<String, Arc<ExecutableDocument>>);

impl Default for Documents {
    fn default() -> Self {
        let cache = Cache::builder()
            .max_capacity(MAX_TEXT_BYTES)
            .weigher(|text: &String, _: &Arc<ExecutableDocument>| u32::try_from(text.len()).unwrap_or(u32::MAX))
            .build();
        Documents(cache)
    }
}

impl Documents {
    /// The document `text` parses to, and whether it came from the cache.
    pub fn parse(&self, text: &str) -> Result<(ExecutableDocument, bool), async_graphql::parser::Error> {
        match self.0.get(text) {
            Some(document) => Ok((ExecutableDocument::clone(&document), true)),
            None => Ok((async_graphql::parser::parse_query(text)?, false)),
        }
    }

    /// Keeps a document that passed every limit and validation.
    pub fn remember(&self, text: &str, document: ExecutableDocument) {
        self.0.insert(text.to_owned(), Arc::new(document));
    }
}
