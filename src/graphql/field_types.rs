//! The schema's object fields as data, read once from its SDL: their types and whether they
//! are connections (take `first`). The document limits and the null pass use it; async-graphql
//! keeps its own registry private.

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{BaseType, OperationType, Type, TypeKind, TypeSystemDefinition};
use async_graphql_value::ConstValue;

/// The page a connection is charged for when neither the query nor the schema says `first`
/// (API.md §2).
const DEFAULT_PAGE_SIZE: usize = 20;

/// One field of an object type.
pub struct FieldInfo {
    pub ty: Type,
    /// For a connection (a field taking `first`): the page size when `first` is not given.
    pub default_page: Option<usize>,
}

/// With SipHash, these lookups were 2.4% of the instructions of a `me` request; with
/// foldhash, 1.1%.
type HashMap<K, V> = std::collections::HashMap<K, V, crate::SchemaNameHasher>;

/// Fields by object type, and the root type of each operation type.
pub struct FieldTypes {
    objects: HashMap<String, HashMap<String, FieldInfo>>,
    roots: [Option<String>; 3],
}

impl FieldTypes {
    /// Reads the object types of `sdl`, the schema's own SDL.
    pub fn from_sdl(sdl: &str) -> Self {
        let document = parse_schema(sdl).expect("BUG: the schema's own SDL parses");
        let mut objects = HashMap::default();
        let mut roots = [None, None, None];
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Schema(schema) => {
                    let schema = schema.node;
                    roots = [schema.query, schema.mutation, schema.subscription]
                        .map(|name| name.map(|name| name.node.to_string()));
                }
                TypeSystemDefinition::Type(ty) => {
                    let ty = ty.node;
                    let fields = match ty.kind {
                        TypeKind::Object(object) => object.fields,
                        TypeKind::Interface(interface) => interface.fields,
                        _ => continue,
                    };
                    let fields = fields
                        .into_iter()
                        .map(|field| {
                            let field = field.node;
                            let default_page = field
                                .arguments
                                .iter()
                                .find(|argument| argument.node.name.node == "first")
                                .map(|first| match first.node.default_value.as_ref().map(|v| &v.node) {
                                    Some(ConstValue::Number(n)) => n
                                        .as_u64()
                                        .and_then(|n| usize::try_from(n).ok())
                                        .unwrap_or(DEFAULT_PAGE_SIZE),
                                    _ => DEFAULT_PAGE_SIZE,
                                });
                            let info = FieldInfo {
                                ty: field.ty.node,
                                default_page,
                            };
                            (field.name.node.to_string(), info)
                        })
                        .collect();
                    objects.insert(ty.name.node.to_string(), fields);
                }
                TypeSystemDefinition::Directive(_) => {}
            }
        }
        FieldTypes { objects, roots }
    }

    /// The root object type an operation of this type starts from.
    pub fn root(&self, operation: OperationType) -> Option<&str> {
        let index = match operation {
            OperationType::Query => 0,
            OperationType::Mutation => 1,
            OperationType::Subscription => 2,
        };
        self.roots[index].as_deref()
    }

    /// The fields of the query and mutation types: the names an operation can start with.
    pub fn root_fields(&self) -> impl Iterator<Item = &str> {
        [OperationType::Query, OperationType::Mutation]
            .into_iter()
            .filter_map(|operation| self.objects.get(self.root(operation)?))
            .flat_map(|fields| fields.keys().map(String::as_str))
    }

    pub fn field(&self, object: &str, field: &str) -> Option<&FieldInfo> {
        self.objects.get(object)?.get(field)
    }
}

/// The object type a field of type `ty` holds, lists unwrapped: `Site` for `[Site!]!`.
pub fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(item) => named(item),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_types_roots_and_connections() {
        let types = FieldTypes::from_sdl(&crate::graphql::sdl());
        assert_eq!(types.root(OperationType::Query), Some("Query"));
        assert_eq!(types.root(OperationType::Mutation), Some("Mutation"));
        let sites = types.field("Query", "sites").unwrap();
        assert_eq!(sites.default_page, Some(20));
        assert_eq!(named(&sites.ty), "SiteConnection");
        // A plain list is not a connection.
        let memberships = types.field("User", "sites").unwrap();
        assert_eq!(memberships.default_page, None);
        assert_eq!(memberships.ty.to_string(), "[SiteMembership!]!");
        assert!(types.field("Site", "code").unwrap().ty.nullable);
        let roots: Vec<&str> = types.root_fields().collect();
        assert!(roots.contains(&"me") && roots.contains(&"login"), "{roots:?}");
        assert!(!roots.contains(&"username"), "{roots:?}");
    }
}
