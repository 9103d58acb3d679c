//! Relay connections (API.md §5): `XConnection { edges, pageInfo, totalCount }`,
//! `XEdge { node, cursor }` and `PageInfo`, built from a domain `Page`.

use async_graphql::SimpleObject;

use crate::domain::page::Page;
use crate::graphql::site::Site;
use crate::graphql::types::{AuditEvent, User};

/// Where a page ends and whether another follows.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// True when more items follow this page.
    pub has_next_page: bool,
    /// The cursor of the last edge; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// Declares `$connection` and `$edge` for nodes of type `$node`.
macro_rules! connection {
    ($connection:ident, $edge:ident, $node:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, ".")]
        #[derive(SimpleObject)]
        pub struct $connection {
            /// The items of this page, each with its cursor.
            pub edges: Vec<$edge>,
            /// Where this page ends.
            pub page_info: PageInfo,
            /// How many items all pages hold together.
            pub total_count: i32,
        }

        #[doc = concat!("One of ", $what, " in a page.")]
        #[derive(SimpleObject)]
        pub struct $edge {
            /// The item.
            pub node: $node,
            /// An opaque position to pass as `after`.
            pub cursor: String,
        }

        impl $connection {
            pub fn from_page<R>(page: Page<R>, mut node: impl FnMut(R) -> $node) -> Self {
                let page_info = PageInfo {
                    has_next_page: page.has_next,
                    end_cursor: page.end_cursor(),
                };
                // Not counted only when the request did not select `totalCount`.
                let total_count = page
                    .total
                    .map_or(0, |total| i32::try_from(total).unwrap_or(i32::MAX));
                let edges = page
                    .items
                    .into_iter()
                    .map(|(row, cursor)| $edge {
                        node: node(row),
                        cursor,
                    })
                    .collect();
                $connection {
                    edges,
                    page_info,
                    total_count,
                }
            }
        }
    };
}

connection!(SiteConnection, SiteEdge, Site, "sites");
connection!(UserConnection, UserEdge, User, "users");
connection!(AuditEventConnection, AuditEventEdge, AuditEvent, "audit events");
