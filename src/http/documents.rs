//! Parsed documents by their text: a client sends the same few documents over and over, and
//! parsing (pest) is a large part of answering a small one. Only documents that passed every
//! limit and async-graphql's validation are kept; execution gets its own copy, so nothing is
//! shared between requests. The limits run again on every request with variables (a page size
//! may come from them). Without variables, they read nothing but the text and the operation's
//! name, so their answer is kept with the document and reused.

use std::sync::{Arc, OnceLock};

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use moka::sync::Cache;

/// Document text kept at most (the parsed form is a few times larger); least used go first.
const MAX_TEXT_BYTES: u64 = 4 * 1024 * 1024;

pub struct Documents(Cache<String, Arc<Checked>>);

/// A document that passed every limit and async-graphql's validation.
pub struct Checked {
    document: ExecutableDocument,
    /// The limits' answer (the operation's type) for the document sent without variables,
    /// for the first operation name it came with.
    limits: OnceLock<(Option<String>, Option<OperationType>)>,
}

impl Checked {
    /// What the limits answered for this document sent without variables, under this name.
    pub fn unvaried_limits(&self, operation_name: Option<&str>) -> Option<Option<OperationType>> {
        let (name, answer) = self.limits.get()?;
        (name.as_deref() == operation_name).then_some(*answer)
    }

    /// Keeps what the limits answered for the document sent without variables.
    pub fn keep_unvaried_limits(&self, operation_name: Option<&str>, answer: Option<OperationType>) {
        let _ = self.limits.set((operation_name.map(str::to_owned), answer));
    }
}

impl Default for Documents {
    fn default() -> Self {
        let cache = Cache::builder()
            .max_capacity(MAX_TEXT_BYTES)
            .weigher(|text: &String, _: &Arc<Checked>| u32::try_from(text.len()).unwrap_or(u32::MAX))
            .build();
        Documents(cache)
    }
}

impl Documents {
    /// The document `text` parses to, and its cache entry if it came from the cache.
    pub fn parse(
        &self,
        text: &str,
    ) -> Result<(ExecutableDocument, Option<Arc<Checked>>), async_graphql::parser::Error> {
        match self.0.get(text) {
            Some(checked) => Ok((checked.document.clone(), Some(checked))),
            None => Ok((async_graphql::parser::parse_query(text)?, None)),
        }
    }

    /// Keeps a document that passed every limit and validation.
    pub fn remember(&self, text: &str, document: ExecutableDocument) {
        let checked = Checked {
            document,
            limits: OnceLock::new(),
        };
        self.0.insert(text.to_owned(), Arc::new(checked));
    }
}
