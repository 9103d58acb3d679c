//! Document limits of API.md §2, checked on the parsed document before anything else reads
//! it (async-graphql's validation follows every fragment spread, so it must never see a
//! document whose expansion is huge): size, nesting and fragment cycles of every definition,
//! then depth, complexity, aliases and credential operations of the operation that runs.
//! Each fragment is measured once, so refusing takes time in proportion to the text.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet};
use async_graphql::{Name, Positioned, Variables};
use async_graphql_value::{ConstValue, Value};

use crate::graphql::field_types::{named, FieldTypes};

/// API.md §2: the most field selections any definition may expand to, introspection included.
const MAX_SELECTIONS: usize = 10_000;
/// API.md §2: how deep introspection may nest, counted from `__schema` / `__type`.
const MAX_INTROSPECTION_DEPTH: usize = 20;
/// How deep fields, inline fragments and spreads may nest with fragments expanded: the
/// parser's own limit for one selection set, so that no walk over the expanded document
/// (here, in validation, in execution) recurses deeper than parsing did.
const MAX_NESTING: usize = 64;
/// Mutations that check or set a password: one per document, so aliases cannot batch
/// password guesses or hashing work into a single request.
const CREDENTIAL_FIELDS: &[&str] = &[
    "login",
    "signup",
    "changePassword",
    "resetPassword",
    "reauthenticate",
    "refreshSession",
    "verifySecondFactor",
    "finishPasskeyLogin",
];

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
    types: &FieldTypes,
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
    let mut meter = Meter {
        doc,
        types,
        variables,
        defaults: operation.map(|(_, op)| variable_defaults(&op.node)).unwrap_or_default(),
        fragments: HashMap::new(),
        visiting: HashSet::new(),
    };
    // Every definition is bounded, whichever operation runs: validation walks them all.
    for name in doc.fragments.keys() {
        let measure = meter.fragment(name, 0)?;
        bound(&measure, &format!("fragment {name}"))?;
    }
    let mut chosen = None;
    for (name, op) in doc.operations.iter() {
        let root = Scope::Schema(types.root(op.node.ty));
        let measure = meter.selection_set(&op.node.selection_set.node, root, 0)?;
        bound(
            &measure,
            &name.map_or("the operation".into(), |n| format!("operation {n}")),
        )?;
        if operation.is_some_and(|(_, chosen_op)| std::ptr::eq(chosen_op, op)) {
            chosen = Some(measure);
        }
    }
    // No single operation to run: execution reports that as a validation error.
    let (Some((_, operation)), Some(cost)) = (operation, chosen) else {
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
    if cost.introspects && !limits.introspection {
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

/// The bounds every definition keeps, introspection included (API.md §2).
fn bound(measure: &Measure, what: &str) -> Result<(), String> {
    if measure.selections > MAX_SELECTIONS {
        return Err(format!(
            "{what} expands to {} field selections, more than the limit of {MAX_SELECTIONS}",
            measure.selections
        ));
    }
    if measure.introspection_depth > MAX_INTROSPECTION_DEPTH {
        return Err(format!(
            "{what} nests introspection {} levels deep, more than the limit of {MAX_INTROSPECTION_DEPTH}",
            measure.introspection_depth
        ));
    }
    Ok(())
}

fn variable_defaults(operation: &OperationDefinition) -> HashMap<&Name, &ConstValue> {
    operation
        .variable_definitions
        .iter()
        .filter_map(|v| Some((&v.node.name.node, &v.node.default_value.as_ref()?.node)))
        .collect()
}

/// What a selection set costs, every fragment spread expanded.
#[derive(Clone, Copy, Default)]
struct Measure {
    /// Field selections, introspection and `__typename` included.
    selections: usize,
    /// Levels of fields, inline fragments and spreads.
    nesting: usize,
    /// Nested fields outside introspection: `{ me { id } }` is 2.
    depth: usize,
    /// Nested fields inside introspection, `__schema` / `__type` being the first.
    introspection_depth: usize,
    /// One per field outside introspection, a connection's selection times its page.
    complexity: usize,
    /// Whether `__schema` or `__type` is selected.
    introspects: bool,
}

impl Measure {
    fn and(self, other: Measure) -> Measure {
        Measure {
            selections: self.selections.saturating_add(other.selections),
            nesting: self.nesting.max(other.nesting),
            depth: self.depth.max(other.depth),
            introspection_depth: self.introspection_depth.max(other.introspection_depth),
            complexity: self.complexity.saturating_add(other.complexity),
            introspects: self.introspects || other.introspects,
        }
    }
}

/// Where a selection set sits: on a schema type (unknown when the document names a field
/// that does not exist; validation reports that later), or inside introspection.
#[derive(Clone, Copy)]
enum Scope<'t> {
    Schema(Option<&'t str>),
    Introspection,
}

impl<'t> Scope<'t> {
    /// The scope a type condition puts its selections in; introspection types start with `__`.
    fn on(type_name: &'t str) -> Self {
        if type_name.starts_with("__") {
            Scope::Introspection
        } else {
            Scope::Schema(Some(type_name))
        }
    }
}

struct Meter<'d> {
    doc: &'d ExecutableDocument,
    types: &'d FieldTypes,
    variables: &'d Variables,
    /// Default values of the running operation's variables.
    defaults: HashMap<&'d Name, &'d ConstValue>,
    /// Each fragment is measured once: its measure does not depend on where it is spread.
    fragments: HashMap<&'d Name, Measure>,
    /// Fragments being measured, to refuse cycles.
    visiting: HashSet<&'d Name>,
}

impl<'d> Meter<'d> {
    /// `level` is how deep this set sits in the expanded document, to stop long chains of
    /// spreads before they run deep.
    fn selection_set(&mut self, set: &'d SelectionSet, scope: Scope<'d>, level: usize) -> Result<Measure, String> {
        if level >= MAX_NESTING {
            return Err(format!(
                "document nests more than {MAX_NESTING} levels deep with its fragments expanded"
            ));
        }
        let mut total = Measure::default();
        for item in &set.items {
            let measure = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    let inner = &field.selection_set.node;
                    match scope {
                        Scope::Introspection => {
                            let children = self.selection_set(inner, Scope::Introspection, level + 1)?;
                            introspection_field(children)
                        }
                        // `__typename` is always allowed and counted like any field.
                        Scope::Schema(_) if name == "__schema" || name == "__type" => {
                            let children = self.selection_set(inner, Scope::Introspection, level + 1)?;
                            Measure {
                                introspects: true,
                                ..introspection_field(children)
                            }
                        }
                        Scope::Schema(parent) => {
                            let info = parent.and_then(|parent| self.types.field(parent, name));
                            let child_scope = Scope::Schema(info.map(|info| named(&info.ty)));
                            let children = self.selection_set(inner, child_scope, level + 1)?;
                            // API.md §2: only a connection multiplies its selection by its page.
                            let page = match info.and_then(|info| info.default_page) {
                                Some(default) => self.page_size(&field.arguments, default),
                                None => 1,
                            };
                            Measure {
                                selections: children.selections.saturating_add(1),
                                nesting: children.nesting + 1,
                                depth: children.depth + 1,
                                introspection_depth: children.introspection_depth,
                                complexity: children.complexity.saturating_mul(page).saturating_add(1),
                                introspects: children.introspects,
                            }
                        }
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let measure = self.fragment(&spread.node.fragment_name.node, level + 1)?;
                    Measure {
                        nesting: measure.nesting + 1,
                        ..measure
                    }
                }
                // Fragments add no depth: their fields sit at the level they are spread into.
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    let scope = match (&inline.type_condition, scope) {
                        (_, Scope::Introspection) => Scope::Introspection,
                        (Some(condition), _) => Scope::on(condition.node.on.node.as_str()),
                        (None, scope) => scope,
                    };
                    let measure = self.selection_set(&inline.selection_set.node, scope, level + 1)?;
                    Measure {
                        nesting: measure.nesting + 1,
                        ..measure
                    }
                }
            };
            total = total.and(measure);
        }
        if level + total.nesting > MAX_NESTING {
            return Err(format!(
                "document nests more than {MAX_NESTING} levels deep with its fragments expanded"
            ));
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'d Name, level: usize) -> Result<Measure, String> {
        if let Some(measure) = self.fragments.get(name) {
            return Ok(*measure);
        }
        let Some(fragment) = self.doc.fragments.get(name) else {
            return Ok(Measure::default());
        };
        if !self.visiting.insert(name) {
            return Err(format!("fragment {name} spreads itself"));
        }
        let fragment = &fragment.node;
        let scope = Scope::on(fragment.type_condition.node.on.node.as_str());
        let measure = self.selection_set(&fragment.selection_set.node, scope, level)?;
        self.visiting.remove(name);
        self.fragments.insert(name, measure);
        Ok(measure)
    }

    /// `first` from a literal, a variable or the variable's default; the schema's default
    /// when absent or null.
    fn page_size(&self, arguments: &[(Positioned<Name>, Positioned<Value>)], default: usize) -> usize {
        let first = arguments
            .iter()
            .find(|(name, _)| name.node.as_str() == "first")
            .map(|(_, value)| &value.node);
        let number = match first {
            Some(Value::Variable(var)) => match self.variables.get(var).or(self.defaults.get(var).copied()) {
                Some(ConstValue::Number(n)) => Some(n),
                _ => None,
            },
            Some(Value::Number(n)) => Some(n),
            _ => None,
        };
        // A page below 1 is refused when the field runs; charge it as one.
        number.map_or(default, |n| {
            n.as_u64()
                .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX))
                .max(1)
        })
    }
}

/// A field inside introspection: exempt from depth and complexity, never from size.
fn introspection_field(children: Measure) -> Measure {
    Measure {
        selections: children.selections.saturating_add(1),
        nesting: children.nesting + 1,
        depth: 0,
        introspection_depth: children.introspection_depth + 1,
        complexity: 0,
        introspects: children.introspects,
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
        run_with(query, &Variables::default(), limits)
    }

    fn run_with(query: &str, variables: &Variables, limits: &Limits) -> Result<Option<OperationType>, String> {
        let types = FieldTypes::from_sdl(&crate::graphql::sdl());
        check(&parse_query(query).unwrap(), None, variables, limits, &types)
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
        assert!(err.contains("field selections"), "{err}");
        // Introspection is exempt from depth and complexity, not from size.
        let mut q = String::from("{ ...F0 }");
        for i in 0..40 {
            q.push_str(&format!(" fragment F{i} on Query {{ ...F{} ...F{} }}", i + 1, i + 1));
        }
        q.push_str(" fragment F40 on Query { __schema { __typename } }");
        let err = run(&q, &limits()).unwrap_err();
        assert!(err.contains("field selections"), "{err}");
        // An unused fragment or another operation is bounded too: validation walks them all.
        let q = q.replacen("{ ...F0 }", "{ __typename }", 1);
        assert!(run(&q, &limits()).unwrap_err().contains("field selections"));
    }

    #[test]
    fn fragment_cycles_and_chains_are_refused() {
        let err = run(
            "{ me { ...A } } fragment A on User { ...B } fragment B on User { ...A }",
            &limits(),
        )
        .unwrap_err();
        assert!(err.contains("spreads itself"), "{err}");
        // A long chain of spreads holds little, but every walk over it recurses once per link.
        let mut q = String::from("{ me { ...F0 } }");
        for i in 0..1000 {
            q.push_str(&format!(" fragment F{i} on User {{ ...F{} }}", i + 1));
        }
        q.push_str(" fragment F1000 on User { id }");
        assert!(run(&q, &limits()).unwrap_err().contains("levels deep"));
    }

    #[test]
    fn introspection_nesting_is_bounded() {
        let nest = |levels: usize| {
            format!(
                "{{ __schema {{ types {{ {} name {} }} }} }}",
                "fields { type { ".repeat(levels),
                "} } ".repeat(levels)
            )
        };
        // __schema, types, then two levels per repetition, then `name`.
        assert!(run(&nest(8), &limits()).is_ok());
        let err = run(&nest(9), &limits()).unwrap_err();
        assert!(err.contains("introspection 21 levels"), "{err}");
    }

    #[test]
    fn complexity_is_counted_by_type() {
        // `User.sites` is a plain list: its selection counts once, however it is named.
        let cycle = "{ me { sites { site { members { user { sites { site { members { user { sites { site { id } } } } } } } } } } } }";
        assert!(run(cycle, &limits()).is_ok());
        // A page of 20 sites with their members and users: 20 * 9 + 1.
        let page = "{ sites(first: 20) { edges { node { id name members { role user { id username } } } } } }";
        assert!(run(page, &limits()).is_ok());
        let tight = Limits {
            max_complexity: 181,
            ..limits()
        };
        assert!(run(page, &tight).is_ok());
        let tighter = Limits {
            max_complexity: 180,
            ..limits()
        };
        assert!(run(page, &tighter).unwrap_err().contains("complexity 181"));
        // `first` from a variable, or from the variable's default when it is not given.
        let by_variable =
            "query($n: Int = 100) { sites(first: $n) { edges { node { id name description createdAt code } } } }";
        assert!(run_with(by_variable, &Variables::default(), &tight)
            .unwrap_err()
            .contains("complexity 701"));
        let five = Variables::from_json(serde_json::json!({ "n": 5 }));
        assert!(run_with(by_variable, &five, &tight).is_ok());
        // Explicit null: the field's own default page.
        let null = Variables::from_json(serde_json::json!({ "n": null }));
        assert!(run_with(by_variable, &null, &tight).is_ok());
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
        let types = FieldTypes::from_sdl(&crate::graphql::sdl());
        assert!(check(&parsed, Some("A"), &Variables::default(), &limits(), &types).is_ok());
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
