//! Keyset pagination for Relay connections (API.md §5): opaque cursors over a stable order,
//! `first` capped so one request cannot ask for the whole table.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::AppError;

/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: i32 = 100;
/// The page size when a client does not say (API.md §5: `first: Int = 20`).
pub const DEFAULT_PAGE_SIZE: i32 = 20;
/// Cursors carry a version so their format can change without misreading old ones.
const CURSOR_PREFIX: &str = "v1:";

pub struct PageRequest {
    pub first: u64,
    /// The sort key of the last item already seen, decoded from the `after` cursor.
    pub after: Option<String>,
}

impl PageRequest {
    /// `first: null` means the default page size.
    pub fn new(first: Option<i32>, after: Option<&str>) -> Result<Self, AppError> {
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(AppError::bad_input(
                "first",
                format!("first must be between 0 and {MAX_PAGE_SIZE}"),
            ));
        }
        let after = after.map(decode_cursor).transpose()?;
        Ok(PageRequest {
            first: first as u64,
            after,
        })
    }

    /// How many rows to fetch: one more than asked, to learn whether a next page exists.
    pub fn fetch(&self) -> u64 {
        self.first + 1
    }
}

pub struct Page<T> {
    /// Items with their cursors, in order.
    pub items: Vec<(T, String)>,
    pub has_next: bool,
    /// How many items all pages hold; `None` when the caller did not ask for it.
    pub total: Option<u64>,
}

impl<T> Page<T> {
    /// Builds a page from `fetch()` rows, the key of each row giving its cursor.
    pub fn from_rows(request: &PageRequest, mut rows: Vec<T>, total: Option<u64>, key: impl Fn(&T) -> String) -> Self {
        let has_next = rows.len() as u64 > request.first;
        rows.truncate(request.first as usize);
        let items = rows
            .into_iter()
            .map(|row| {
                let cursor = encode_cursor(&key(&row));
                (row, cursor)
            })
            .collect();
        Page { items, has_next, total }
    }

    pub fn end_cursor(&self) -> Option<String> {
        self.items.last().map(|(_, cursor)| cursor.clone())
    }
}

/// The sort key of a row ordered by a timestamp, its id breaking ties.
pub fn time_key(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}|{id}", at.to_rfc3339())
}

/// Reads back a `time_key` from an `after` cursor.
pub fn parse_time_key(key: &str) -> Result<(DateTime<Utc>, Uuid), AppError> {
    let bad = || AppError::bad_input("after", "after is not a cursor from this connection");
    let (at, id) = key.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?.with_timezone(&Utc);
    Ok((at, id.parse().map_err(|_| bad())?))
}

pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{key}"))
}

fn decode_cursor(cursor: &str) -> Result<String, AppError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_PREFIX).map(str::to_owned))
        .ok_or_else(|| AppError::bad_input("after", "after is not a cursor from this connection"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let request = PageRequest::new(Some(2), Some(&encode_cursor("alice"))).unwrap();
        assert_eq!(request.after.as_deref(), Some("alice"));
        assert!(PageRequest::new(Some(2), Some("bm9wZQ")).is_err());
        assert!(PageRequest::new(Some(2), Some("%%%")).is_err());
    }

    #[test]
    fn time_keys_round_trip() {
        let (at, id) = (Utc::now(), Uuid::new_v4());
        assert_eq!(parse_time_key(&time_key(at, id)).unwrap(), (at, id));
        assert!(parse_time_key("2026-01-01T00:00:00Z|nope").is_err());
    }

    #[test]
    fn first_is_capped() {
        assert!(PageRequest::new(Some(100), None).is_ok());
        assert!(matches!(
            PageRequest::new(Some(101), None),
            Err(AppError::BadUserInput { field: "first", .. })
        ));
        assert!(matches!(
            PageRequest::new(Some(-1), None),
            Err(AppError::BadUserInput { field: "first", .. })
        ));
    }

    #[test]
    fn one_extra_row_means_a_next_page() {
        let request = PageRequest::new(Some(2), None).unwrap();
        let page = Page::from_rows(&request, vec!["a", "b", "c"], Some(3), |s| s.to_string());
        assert!(page.has_next);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.end_cursor(), Some(encode_cursor("b")));
    }
}
