//! Document limits of API.md §2, checked on the parsed document before anything runs:
//! depth, complexity (one per field, times `first` on connections), alias count, and at
//! most one credential operation (`login`, `signup`, ...) per document.
//! Introspection fields are exempt while introspection is on, so GraphiQL and codegen work.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Name, Positioned, Variables};
use async_graphql_value::Value;

/// The page size a connection field is charged for when the query does not say `first`.
const DEFAULT_PAGE_SIZE: usize = 20;
/// Fields that return a page of `first` items.
const CONNECTION_FIELDS: &[&str] = &["sites", "users", "auditEvents"];
/// Mutations that check or set a password: one per document, so aliases cannot batch
/// password guesses or hashing work into a single request.
const CREDENTIAL_FIELDS: &[&str] = &["login", "signup", "changePassword", "resetPassword"];

pub struct Limits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_aliases: usize,
    /// How many of `CREDENTIAL_FIELDS` one document may run (1 by default).
    pub max_credential_operations: usize,
    pub introspection: bool,
}

/// Checks the document; returns the type of the operation that will run, when it can be told.
pub fn check(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    limits: &Limits,
) -> Result<Option<OperationType>, String> {
    let aliases = count_aliases(doc);
    if aliases > limits.max_aliases {
        return Err(format!(
            "document has {aliases} aliases, more than the limit of {}",
            limits.max_aliases
        ));
    }
    let operation = match operation_name {
        Some(name) => doc
            .operations
            .iter()
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == name)),
        None => {
            let mut ops = doc.operations.iter();
            match (ops.next(), ops.next()) {
                (Some(op), None) => Some(op),
                _ => None,
            }
        }
    };
    // No single operation to run: execution reports that as a validation error.
    let Some((_, operation)) = operation else {
        return Ok(None);
    };
    let credential_operations = count_credential_fields(doc, &operation.node.selection_set.node);
    if credential_operations > limits.max_credential_operations {
        return Err(format!(
            "document runs {credential_operations} of {}; at most {} allowed per request",
            CREDENTIAL_FIELDS.join(", "),
            limits.max_credential_operations
        ));
    }
    let mut meter = Meter {
        doc,
        variables,
        introspection: limits.introspection,
        asks_introspection: false,
        fragments: HashMap::new(),
        visiting: HashSet::new(),
    };
    let cost = meter.selection_set(&operation.node.selection_set.node);
    if meter.asks_introspection {
        return Err("introspection is disabled on this server".into());
    }
    if cost.depth > limits.max_depth {
        return Err(format!(
            "document depth {} exceeds the limit of {}",
            cost.depth, limits.max_depth
        ));
    }
    if cost.complexity > limits.max_complexity {
        return Err(format!(
            "document complexity {} exceeds the limit of {}",
            cost.complexity, limits.max_complexity
        ));
    }
    Ok(Some(operation.node.ty))
}

#[derive(Clone, Copy, Default)]
struct Cost {
    depth: usize,
    complexity: usize,
}

struct Meter<'d> {
    doc: &'d ExecutableDocument,
    variables: &'d Variables,
    introspection: bool,
    /// Set when the operation selects `__schema` or `__type` while introspection is off.
    asks_introspection: bool,
    /// Each fragment is measured once, so spreading one many times cannot blow up the walk.
    fragments: HashMap<&'d Name, Cost>,
    /// Fragments being measured: a cycle (invalid anyway) is cut here.
    visiting: HashSet<&'d Name>,
}

impl<'d> Meter<'d> {
    fn selection_set(&mut self, set: &'d SelectionSet) -> Cost {
        let mut total = Cost::default();
        for item in &set.items {
            let cost = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    if name == "__schema" || name == "__type" {
                        if self.introspection {
                            continue;
                        }
                        self.asks_introspection = true;
                    }
                    let children = self.selection_set(&field.selection_set.node);
                    let page = self.page_size(name, &field.arguments);
                    Cost {
                        depth: children.depth + 1,
                        complexity: children.complexity.saturating_mul(page).saturating_add(1),
                    }
                }
                Selection::FragmentSpread(spread) => self.fragment(&spread.node.fragment_name.node),
                // Fragments add no depth: their fields sit at the level they are spread into.
                Selection::InlineFragment(inline) => self.selection_set(&inline.node.selection_set.node),
            };
            total.depth = total.depth.max(cost.depth);
            total.complexity = total.complexity.saturating_add(cost.complexity);
        }
        total
    }

    fn fragment(&mut self, name: &'d Name) -> Cost {
        if let Some(cost) = self.fragments.get(name) {
            return *cost;
        }
        let Some(fragment) = self.doc.fragments.get(name) else {
            return Cost::default();
        };
        if !self.visiting.insert(name) {
            return Cost::default();
        }
        let cost = self.selection_set(&fragment.node.selection_set.node);
        self.visiting.remove(name);
        self.fragments.insert(name, cost);
        cost
    }

    fn page_size(&self, field: &str, arguments: &[(Positioned<Name>, Positioned<Value>)]) -> usize {
        let first = arguments
            .iter()
            .find(|(name, _)| name.node.as_str() == "first")
            .map(|(_, value)| &value.node);
        let number = match first {
            Some(Value::Variable(var)) => match self.variables.get(var) {
                Some(async_graphql::Value::Number(n)) => Some(n),
                _ => None,
            },
            Some(Value::Number(n)) => Some(n),
            _ => None,
        };
        match number {
            Some(n) => n
                .as_u64()
                .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX))
                .max(1),
            _ if CONNECTION_FIELDS.contains(&field) => DEFAULT_PAGE_SIZE,
            _ => 1,
        }
    }
}

/// Credential fields at the root of an operation, aliases and fragments included. A fragment
/// spread twice counts twice: refusing such a document is harmless, and each fragment is
/// walked once, so nesting spreads cannot blow the walk up.
fn count_credential_fields(doc: &ExecutableDocument, root: &SelectionSet) -> usize {
    fn in_set<'d>(
        doc: &'d ExecutableDocument,
        set: &'d SelectionSet,
        seen: &mut HashMap<&'d Name, usize>,
        visiting: &mut HashSet<&'d Name>,
    ) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => usize::from(CREDENTIAL_FIELDS.contains(&f.node.name.node.as_str())),
                Selection::InlineFragment(i) => in_set(doc, &i.node.selection_set.node, seen, visiting),
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if let Some(count) = seen.get(name) {
                        return *count;
                    }
                    let Some(fragment) = doc.fragments.get(name) else {
                        return 0;
                    };
                    if !visiting.insert(name) {
                        return 0;
                    }
                    let count = in_set(doc, &fragment.node.selection_set.node, seen, visiting);
                    visiting.remove(name);
                    seen.insert(name, count);
                    count
                }
            })
            .fold(0, usize::saturating_add)
    }
    in_set(doc, root, &mut HashMap::new(), &mut HashSet::new())
}

fn count_aliases(doc: &ExecutableDocument) -> usize {
    fn in_set(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => usize::from(f.node.alias.is_some()) + in_set(&f.node.selection_set.node),
                Selection::InlineFragment(i) => in_set(&i.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    let in_operations: usize = doc
        .operations
        .iter()
        .map(|(_, op)| in_set(&op.node.selection_set.node))
        .sum();
    let in_fragments: usize = doc.fragments.values().map(|f| in_set(&f.node.selection_set.node)).sum();
    in_operations + in_fragments
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn limits() -> Limits {
        Limits {
            max_depth: 12,
            max_complexity: 1000,
            max_aliases: 30,
            max_credential_operations: 1,
            introspection: true,
        }
    }

    fn run(query: &str, limits: &Limits) -> Result<Option<OperationType>, String> {
        check(&parse_query(query).unwrap(), None, &Variables::default(), limits)
    }

    #[test]
    fn depth_counts_nested_fields() {
        let two = Limits {
            max_depth: 2,
            ..limits()
        };
        assert!(run("{ me { id } }", &two).is_ok());
        assert!(run(
            "{ me { id } }",
            &Limits {
                max_depth: 1,
                ..limits()
            }
        )
        .unwrap_err()
        .contains("depth 2"));
        // Fragments count where they are spread.
        assert!(run("query { me { ...F } } fragment F on User { id }", &two).is_ok());
    }

    #[test]
    fn complexity_multiplies_connection_pages() {
        let l = Limits {
            max_complexity: 100,
            ..limits()
        };
        assert!(run("{ sites(first: 10) { edges { node { id } } } }", &l).is_ok());
        let err = run("{ sites(first: 50) { edges { node { id } } } }", &l).unwrap_err();
        assert!(err.contains("complexity"), "{err}");
        // Without `first`, a connection is charged its default page.
        assert!(
            run("{ sites { edges { node { id name description createdAt } } } }", &l)
                .unwrap_err()
                .contains("complexity")
        );
    }

    #[test]
    fn aliases_are_counted() {
        let q = format!(
            "{{ {} }}",
            (0..31)
                .map(|i| format!("a{i}: me {{ id }}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(run(&q, &limits()).unwrap_err().contains("31 aliases"));
    }

    #[test]
    fn introspection_is_exempt_only_while_enabled() {
        let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } }";
        assert!(run(deep, &limits()).is_ok());
        assert!(run(
            deep,
            &Limits {
                introspection: false,
                ..limits()
            }
        )
        .is_err());
    }

    #[test]
    fn fragment_bombs_are_measured_once() {
        let mut q = String::from("{ me { ...F0 } }");
        for i in 0..40 {
            q.push_str(&format!(" fragment F{i} on User {{ ...F{} ...F{} }}", i + 1, i + 1));
        }
        q.push_str(" fragment F40 on User { id }");
        let err = run(&q, &limits()).unwrap_err();
        assert!(err.contains("complexity"), "{err}");
    }

    #[test]
    fn one_credential_operation_per_document() {
        let login = r#"login(input: {username: "a", password: "b"}) { token }"#;
        assert!(run(&format!("mutation {{ {login} }}"), &limits()).is_ok());
        for doc in [
            format!("mutation {{ a: {login} b: {login} }}"),
            format!("mutation {{ {login} signup(input: {{username: \"a\", password: \"b\"}}) {{ token }} }}"),
            format!("mutation {{ ...F }} fragment F on Mutation {{ a: {login} b: {login} }}"),
            format!("mutation {{ {login} ... on Mutation {{ x: {login} }} }}"),
            format!("mutation {{ ...F ...F }} fragment F on Mutation {{ {login} }}"),
        ] {
            let err = run(&doc, &limits()).unwrap_err();
            assert!(err.contains("at most 1 allowed"), "{doc}: {err}");
        }
        // Only the operation that runs counts.
        let doc = format!("mutation A {{ {login} }} mutation B {{ {login} }}");
        let parsed = parse_query(&doc).unwrap();
        assert!(check(&parsed, Some("A"), &Variables::default(), &limits()).is_ok());
        // Nested fields of the same name are not credential operations.
        assert!(run("{ me { id } }", &limits()).is_ok());
    }

    #[test]
    fn reports_the_operation_type() {
        assert_eq!(
            run("mutation { logout }", &limits()).unwrap(),
            Some(OperationType::Mutation)
        );
        assert_eq!(
            run("query A { me { id } } query B { me { id } }", &limits()).unwrap(),
            None
        );
    }
}
