//! What client developers read: the schema's descriptions (GraphiQL's docs, codegen comments,
//! IDE hovers) on every type, field, argument, input field and enum value, and the README's
//! frontend setup, which must be the files `tests/clients/` runs.

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

/// `text` indented by four spaces, as a README code block holds it.
fn indented(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.is_empty() {
                String::new()
            } else {
                format!("    {line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_frontend_setup_is_the_tested_client_code() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    for file in ["tests/clients/src/client.ts", "tests/clients/codegen.ts"] {
        let code = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        assert!(
            readme.contains(&indented(code.trim_end())),
            "README.md \"Use it from a frontend\" no longer shows {file} as it is"
        );
    }
}
