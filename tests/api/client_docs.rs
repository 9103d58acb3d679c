//! What client developers read: the schema's descriptions (GraphiQL's docs, codegen comments,
//! IDE hovers) on every type, field, argument, input field and enum value.

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use async_graphql::Positioned;

fn missing(description: &Option<Positioned<String>>) -> bool {
    description.as_ref().is_none_or(|d| d.node.trim().is_empty())
}

#[test]
fn every_type_field_argument_and_enum_value_is_described() {
    let document = parse_schema(gatehouse::graphql::sdl()).expect("the SDL parses");
    let mut undescribed = Vec::new();
    for definition in &document.definitions {
        // Built-in directives (`@include`, `@skip`, `@specifiedBy`) are the spec's, not ours.
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let ty = &ty.node;
        let name = ty.name.node.as_str();
        if missing(&ty.description) {
            undescribed.push(name.to_string());
        }
        match &ty.kind {
            TypeKind::Object(object) => {
                for field in &object.fields {
                    let field = &field.node;
                    if missing(&field.description) {
                        undescribed.push(format!("{name}.{}", field.name.node));
                    }
                    for argument in &field.arguments {
                        if missing(&argument.node.description) {
                            undescribed.push(format!("{name}.{}({}:)", field.name.node, argument.node.name.node));
                        }
                    }
                }
            }
            TypeKind::InputObject(input) => {
                for field in &input.fields {
                    if missing(&field.node.description) {
                        undescribed.push(format!("{name}.{}", field.node.name.node));
                    }
                }
            }
            TypeKind::Enum(enumeration) => {
                for value in &enumeration.values {
                    if missing(&value.node.description) {
                        undescribed.push(format!("{name}.{}", value.node.value.node));
                    }
                }
            }
            TypeKind::Scalar | TypeKind::Interface(_) | TypeKind::Union(_) => {}
        }
    }
    assert!(undescribed.is_empty(), "undescribed in the SDL: {undescribed:#?}");
}
