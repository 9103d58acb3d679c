//! The nginx configuration of `docs/gateway.md`, run as written against a real nginx: the
//! test swaps in real ports and a temporary prefix, puts an echo service behind it, and
//! checks what reaches that service. Needs the `nginx` binary; `.ci/run` installs it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::Json;
use gatehouse::Config;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::common::{TestServer, PASSWORD};

/// The addresses `docs/gateway.md` uses, replaced by the test's own.
const DOC_GATEHOUSE: &str = "127.0.0.1:8080";
const DOC_UPSTREAM: &str = "127.0.0.1:9000";
const DOC_GATEWAY: &str = "127.0.0.1:8000";

/// nginx as a child process, stopped when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first ```nginx block of the gateway guide.
fn documented_config() -> String {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/gateway.md")).unwrap();
    let start = guide.find("```nginx\n").expect("an nginx block in docs/gateway.md") + "```nginx\n".len();
    let length = guide[start..].find("```").expect("the nginx block ends");
    guide[start..start + length].to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_nginx(dir: &Path, gatehouse: SocketAddr, upstream: SocketAddr) -> Nginx {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = documented_config()
        .replace(DOC_GATEHOUSE, &gatehouse.to_string())
        .replace(DOC_UPSTREAM, &upstream.to_string())
        .replace(DOC_GATEWAY, &addr.to_string())
        // Keep nginx's files in the temporary prefix instead of the system's folders.
        .replacen(
            "http {",
            "http {\n    access_log access.log;\n    client_body_temp_path body;\n    proxy_temp_path proxy;\n    \
             fastcgi_temp_path fastcgi;\n    uwsgi_temp_path uwsgi;\n    scgi_temp_path scgi;\n",
            1,
        );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let binary = [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or("nginx");
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off; pid nginx.pid; error_log error.log;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx: install it (apt-get install nginx) or skip the ignored tests");
    let mut nginx = Nginx { child, addr };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return nginx;
        }
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited with {status}: {log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx did not listen on {addr}");
}

/// The protected service: answers with the method and headers it received.
async fn start_echo() -> SocketAddr {
    async fn echo(method: axum::http::Method, headers: HeaderMap) -> Json<Value> {
        let headers: Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or_default())))
            .collect();
        Json(json!({ "method": method.as_str(), "headers": headers }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(echo)).await });
    addr
}

/// What a client sees through the gateway: status, and the echo when it got through.
async fn through(nginx: &Nginx, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let client = reqwest::Client::new();
    let request = headers.iter().fold(
        client.get(format!("http://{}{path}", nginx.addr)),
        |request, (name, value)| request.header(*name, *value),
    );
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let echo = if status == 200 {
        response.json().await.unwrap()
    } else {
        Value::Null
    };
    (status, echo)
}

fn seen(echo: &Value, header: &str) -> Option<String> {
    echo["headers"][header].as_str().map(str::to_owned)
}

#[tokio::test]
#[ignore = "needs nginx; .ci/run runs it"]
async fn the_documented_nginx_config_passes_identity_upstream() {
    let server = TestServer::start(Config {
        admin_username: Some("gate_admin".into()),
        admin_password: Some(PASSWORD.into()),
        ..Config::for_test()
    })
    .await;
    let upstream = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let nginx = start_nginx(dir.path(), server.addr, upstream).await;

    let (token, user_id, _) = server.signup("gateway").await;
    let user = format!("Bearer {token}");
    let admin = server
        .gql(
            None,
            "mutation($p: String!) { login(input: {username: \"gate_admin\", password: $p}) { token user { id } } }",
            json!({ "p": PASSWORD }),
        )
        .await
        .data("login");
    let admin_id = admin["user"]["id"].as_str().unwrap().to_owned();
    let admin = format!("Bearer {}", admin["token"].as_str().unwrap());
    let forged = Uuid::new_v4().to_string();

    // Anonymous: role anonymous, and a forged user id does not reach the service.
    let (status, echo) = through(
        &nginx,
        "/",
        &[("X-Hasura-User-Id", &forged), ("X-Hasura-Role", "admin")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-hasura-role").as_deref(), Some("anonymous"));
    assert_eq!(seen(&echo, "x-hasura-user-id"), None, "{echo}");

    // A user, forging someone else's id: the service sees the real one.
    let (status, echo) = through(&nginx, "/", &[("Authorization", &user), ("X-Hasura-User-Id", &forged)]).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-hasura-role").as_deref(), Some("user"));
    assert_eq!(seen(&echo, "x-hasura-user-id"), Some(user_id.clone()));

    // A requested role the user holds, granted after login (roles are read live).
    let id = Uuid::parse_str(&user_id).unwrap();
    // Through the session store, as `grantRoles` does: no cached session keeps the old roles.
    let mut change = server.state.sessions.begin().await.unwrap();
    change.grant(id, &["editor"], server.state.clock.now()).await.unwrap();
    change.commit().await.unwrap();
    let (status, echo) = through(&nginx, "/", &[("Authorization", &user), ("X-Hasura-Role", "editor")]).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-hasura-role").as_deref(), Some("editor"));
    let (status, _) = through(&nginx, "/", &[("Authorization", &user), ("X-Hasura-Role", "admin")]).await;
    assert_eq!(status, 403, "a role the user lacks");

    // An admin is `user` by default, and `admin` when asking for it.
    let (status, echo) = through(&nginx, "/", &[("Authorization", &admin)]).await;
    assert_eq!((status, seen(&echo, "x-hasura-role").as_deref()), (200, Some("user")));
    assert_eq!(seen(&echo, "x-hasura-user-id"), Some(admin_id.clone()));

    // The admin-only location: a plain user gets 403 (forbidden_status), anonymous 401.
    let (status, _) = through(&nginx, "/admin/users", &[("Authorization", &user)]).await;
    assert_eq!(status, 403);
    let (status, _) = through(&nginx, "/admin/users", &[]).await;
    assert_eq!(status, 401);
    let (status, echo) = through(
        &nginx,
        "/admin/users",
        &[("Authorization", &admin), ("X-Hasura-Role", "admin")],
    )
    .await;
    assert_eq!((status, seen(&echo, "x-hasura-role").as_deref()), (200, Some("admin")));

    // A POST with a body goes through: the check itself is a GET, not Hasura's POST mode.
    let response = reqwest::Client::new()
        .post(format!("http://{}/graphql", nginx.addr))
        .header("Authorization", &user)
        .json(&json!({ "query": "{ items { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(seen(&echo, "x-hasura-user-id"), Some(user_id.clone()));

    // After logout the token is refused at the gateway.
    assert_eq!(
        server
            .gql(Some(&token), "mutation { logout }", json!({}))
            .await
            .data("logout"),
        true
    );
    let (status, _) = through(&nginx, "/", &[("Authorization", &user)]).await;
    assert_eq!(status, 401);
}
