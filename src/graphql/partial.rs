//! Partial results as the GraphQL spec has them (§6.4.4, API.md §2): a field that failed is
//! `null` in `data`, and a `null` in a non-null position makes its nearest nullable parent
//! `null`. async-graphql 7 instead leaves a failed field's key out, and answers `null` for an
//! object all of whose fields failed; this pass rewrites `data` from the errors' paths.

use std::collections::HashSet;

use async_graphql::parser::types::{BaseType, ExecutableDocument, Field, OperationDefinition, Selection, SelectionSet};
use async_graphql::{Name, PathSegment, Response, Value};

use crate::graphql::field_types::{named, FieldTypes};

/// Rewrites `response.data` so that every field error sits on a `null`, propagated as the
/// spec says. `document` is the one that ran.
pub fn null_failed_fields(
    response: &mut Response,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    types: &FieldTypes,
) {
    let paths: Vec<&[PathSegment]> = response
        .errors
        .iter()
        .map(|error| error.path.as_slice())
        .filter(|path| !path.is_empty())
        .collect();
    if paths.is_empty() {
        return;
    }
    let operation = match operation_name {
        Some(name) => document
            .operations
            .iter()
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == name)),
        None => document.operations.iter().next(),
    };
    let Some((_, operation)) = operation else {
        return;
    };
    // Every `null` above an error's position stands for an object whose fields all failed
    // (nothing else is null and has errors below it): open those again first, so each failed
    // field gets its own `null` and the others stay.
    for path in &paths {
        reopen(&mut response.data, path);
    }
    for path in &paths {
        if let Some(positions) = positions(document, &operation.node, types, path) {
            place_null(&mut response.data, path, &positions);
        }
    }
}

fn reopen(data: &mut Value, path: &[PathSegment]) {
    let mut value = data;
    for segment in path {
        if matches!(value, Value::Null) {
            *value = Value::Object(Default::default());
        }
        let next = match (value, segment) {
            (Value::Object(object), PathSegment::Field(key)) => object.get_mut(key.as_str()),
            (Value::List(list), PathSegment::Index(index)) => list.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        value = next;
    }
}

/// What the null pass knows of each position along a path: whether it may hold `null`, and
/// for a field, the response keys of its parent's selection in document order.
struct Position {
    nullable: bool,
    sibling_keys: Vec<Name>,
}

/// Follows `path` (response keys, so aliases, and list indexes) through the operation and the
/// schema; `None` where it leaves them (introspection, which never fails a field).
fn positions(
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    types: &FieldTypes,
    path: &[PathSegment],
) -> Option<Vec<Position>> {
    let mut object = types.root(operation.ty)?;
    let mut sets = vec![&operation.selection_set.node];
    let mut ty = None;
    let mut positions = Vec::with_capacity(path.len());
    for segment in path {
        match segment {
            PathSegment::Field(key) => {
                let mut fields = Vec::new();
                let mut sibling_keys = Vec::new();
                let mut seen = HashSet::new();
                for set in &sets {
                    collect(document, set, key, &mut fields, &mut sibling_keys, &mut seen);
                }
                let info = types.field(object, fields.first()?.name.node.as_str())?;
                object = named(&info.ty);
                sets = fields.iter().map(|field| &field.selection_set.node).collect();
                ty = Some(&info.ty);
                positions.push(Position {
                    nullable: info.ty.nullable,
                    sibling_keys,
                });
            }
            PathSegment::Index(_) => {
                let BaseType::List(item) = &ty?.base else {
                    return None;
                };
                ty = Some(item);
                positions.push(Position {
                    nullable: item.nullable,
                    sibling_keys: Vec::new(),
                });
            }
        }
    }
    Some(positions)
}

/// The fields of `set` (fragments followed) whose response key is `key`, and every response
/// key of the set in order.
fn collect<'d>(
    document: &'d ExecutableDocument,
    set: &'d SelectionSet,
    key: &str,
    fields: &mut Vec<&'d Field>,
    keys: &mut Vec<Name>,
    seen_fragments: &mut HashSet<&'d Name>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let response_key = &field.node.response_key().node;
                if response_key == key {
                    fields.push(&field.node);
                }
                if !keys.contains(response_key) {
                    keys.push(response_key.clone());
                }
            }
            Selection::InlineFragment(inline) => {
                collect(
                    document,
                    &inline.node.selection_set.node,
                    key,
                    fields,
                    keys,
                    seen_fragments,
                );
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if let Some(fragment) = document.fragments.get(name) {
                    if seen_fragments.insert(name) {
                        collect(
                            document,
                            &fragment.node.selection_set.node,
                            key,
                            fields,
                            keys,
                            seen_fragments,
                        );
                    }
                }
            }
        }
    }
}

/// Puts `null` where the error at `path` happened and propagates it to the nearest nullable
/// position, `data` itself when there is none.
fn place_null(data: &mut Value, path: &[PathSegment], positions: &[Position]) {
    // Where the error left its mark: the failed field, or a list above it that failed with
    // one of its items (async-graphql drops the whole list then).
    let mut end = 0;
    let mut value = &*data;
    while end < path.len() {
        let next = match (value, &path[end]) {
            // Already inside a `null` that an earlier error propagated.
            (Value::Null, _) => return,
            (Value::Object(object), PathSegment::Field(key)) => object.get(key.as_str()),
            (Value::List(list), PathSegment::Index(index)) => list.get(*index),
            _ => return,
        };
        end += 1;
        match next {
            Some(next) => value = next,
            None => break,
        }
    }
    let target = match (0..end).rev().find(|&i| positions[i].nullable) {
        Some(nullable) => nullable + 1,
        None => 0,
    };
    if target == 0 {
        *data = Value::Null;
        return;
    }
    let Some(Value::Object(parent)) = value_at(data, &path[..target - 1]) else {
        // A list item: lists keep their length, so the item is there to be replaced.
        if let Some(item) = value_at(data, &path[..target]) {
            *item = Value::Null;
        }
        return;
    };
    let PathSegment::Field(key) = &path[target - 1] else {
        return;
    };
    parent.insert(Name::new(key), Value::Null);
    // Keep the order the query asked for.
    let order = &positions[target - 1].sibling_keys;
    parent.sort_by(|a, _, b, _| {
        let rank = |k: &Name| order.iter().position(|o| o == k);
        rank(a).cmp(&rank(b))
    });
}

fn value_at<'v>(data: &'v mut Value, path: &[PathSegment]) -> Option<&'v mut Value> {
    path.iter().try_fold(data, |value, segment| match (value, segment) {
        (Value::Object(object), PathSegment::Field(key)) => object.get_mut(key.as_str()),
        (Value::List(list), PathSegment::Index(index)) => list.get_mut(*index),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use async_graphql::{ServerError, Value};
    use serde_json::json;

    use super::*;

    const SDL: &str = "
        schema { query: Query }
        type Query { a: A, n: A!, list: [A!] }
        type A { x: String, y: String!, b: B }
        type B { z: String! }
    ";

    /// Runs the pass over `data` as async-graphql left it, with one error at `path`.
    fn after_pass(query: &str, data: serde_json::Value, path: serde_json::Value) -> serde_json::Value {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let mut response = Response::new(Value::from_json(data).unwrap());
        let mut error = ServerError::new("refused", None);
        error.path = serde_json::from_value(path).unwrap();
        response.errors.push(error);
        null_failed_fields(&mut response, &document, None, &FieldTypes::from_sdl(SDL));
        response.data.into_json().unwrap()
    }

    #[test]
    fn a_nullable_field_becomes_null_in_its_place() {
        let data = after_pass(
            "{ a { x b { z } } }",
            json!({ "a": { "b": { "z": "z" } } }),
            json!(["a", "x"]),
        );
        assert_eq!(data, json!({ "a": { "x": null, "b": { "z": "z" } } }));
    }

    #[test]
    fn a_non_null_field_nulls_its_nearest_nullable_parent() {
        let data = after_pass(
            "{ a { x b { z } } }",
            json!({ "a": { "x": "x", "b": {} } }),
            json!(["a", "b", "z"]),
        );
        assert_eq!(data, json!({ "a": { "x": "x", "b": null } }));
        let data = after_pass("{ a { y x } }", json!({ "a": { "x": "x" } }), json!(["a", "y"]));
        assert_eq!(data, json!({ "a": null }));
    }

    #[test]
    fn nulls_climb_through_non_null_lists_and_fields_up_to_data() {
        let data = after_pass(
            "{ list { y } }",
            json!({ "list": [{ "y": "1" }, {}] }),
            json!(["list", 1, "y"]),
        );
        assert_eq!(data, json!({ "list": null }), "the item is non-null, the list is not");
        let data = after_pass(
            "{ a { x } n { y } }",
            json!({ "a": { "x": "x" }, "n": {} }),
            json!(["n", "y"]),
        );
        assert_eq!(data, json!(null));
    }

    #[test]
    fn aliases_are_followed() {
        let data = after_pass(
            "{ first: a { x } second: a { x } }",
            json!({ "first": { "x": "x" }, "second": {} }),
            json!(["second", "x"]),
        );
        assert_eq!(data, json!({ "first": { "x": "x" }, "second": { "x": null } }));
    }
}
