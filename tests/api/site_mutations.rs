//! What `createSite` and `joinSite` answer: the site as the caller now sees it, with the role
//! the mutation just gave them, although roles are read when a request begins.

use gatehouse::Config;
use serde_json::json;

use crate::common::{str_at, TestServer};

#[tokio::test]
async fn create_and_join_answer_with_the_role_just_given() {
    let server = TestServer::start(Config::for_test()).await;
    let (owner, _, _) = server.signup("siteowner").await;
    let created = server
        .gql(
            Some(&owner),
            "mutation { createSite(input: {name: \"Atelier\"}) { id code myRoles members { role } } }",
            json!({}),
        )
        .await
        .data("createSite");
    assert_eq!(created["myRoles"], json!(["ADMIN"]));
    assert_eq!(created["members"], json!([{ "role": "ADMIN" }]));
    let code = str_at(&created, "/code");
    assert!(!code.is_empty());

    let (joiner, _, _) = server.signup("sitejoiner").await;
    let joined = server
        .gql(
            Some(&joiner),
            "mutation($code: String!) { joinSite(code: $code) { id myRoles } }",
            json!({ "code": code }),
        )
        .await
        .data("joinSite");
    assert_eq!(joined["myRoles"], json!(["USER"]));
    // A plain member still may not read the code.
    let reply = server
        .gql(
            Some(&joiner),
            "mutation($code: String!) { joinSite(code: $code) { code } }",
            json!({ "code": code }),
        )
        .await;
    reply.assert_code("FORBIDDEN");
}
