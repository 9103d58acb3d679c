//! Failure behaviour: SIGTERM lets in-flight requests finish, `kill -9` during a signup flood
//! loses no answered signup and leaves no half-created account, and a database outage is
//! survived without a restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::Config;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{json, Value};

use crate::common::{str_at, unique, TestServer, PASSWORD};

const SIGNUP: &str = "mutation($u: String!, $p: String!) { signup(input: {username: $u, password: $p}) { token } }";
const LOGIN: &str = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }";

/// The built `gatehouse` binary, serving on a port of its choosing.
struct Process {
    child: Child,
    url: String,
}

impl Process {
    fn start(envs: &[(&str, String)]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .env("BIND", "127.0.0.1:0")
            .env("JWT_SECRET", "failure-tests-secret-failure-tests-secret")
            .env_remove("ADMIN_USERNAME")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gatehouse");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("gatehouse exited before listening")
                .expect("log line");
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        // Keep draining the log so the process never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Process {
            child,
            url: format!("http://{address}/graphql"),
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(http: &reqwest::Client, url: &str, query: &str, variables: Value) -> Result<Value, reqwest::Error> {
    http.post(url)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::start(&[
        (
            "DATABASE_URL",
            format!("sqlite://{}/g.db?mode=rwc", dir.path().display()),
        ),
        // Hashing slow enough that the signup is still running when the signal arrives.
        ("ARGON2_ITERATIONS", "6".into()),
    ]);
    let http = reqwest::Client::new();
    let url = process.url.clone();
    let name = unique("inflight");
    let in_flight = {
        let http = http.clone();
        tokio::spawn(async move { post(&http, &url, SIGNUP, json!({ "u": name, "p": PASSWORD })).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    process.signal("-TERM");
    let answer = in_flight.await.unwrap().expect("the in-flight request was answered");
    assert!(str_at(&answer, "/data/signup/token").starts_with("ey"), "{answer}");
    let status = tokio::task::spawn_blocking(move || {
        let status = process.child.wait().unwrap();
        (status, process)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn kill_9_during_a_signup_flood_loses_no_answered_signup() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/g.db?mode=rwc", dir.path().display());
    let envs = [
        ("DATABASE_URL", db_url.clone()),
        ("ARGON2_MEMORY_KIB", "64".to_owned()),
        ("ARGON2_ITERATIONS", "1".to_owned()),
    ];
    let mut process = Process::start(&envs);
    let answered = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::new();
    let flood: Vec<_> = (0..4)
        .map(|worker| {
            let (http, url, answered) = (http.clone(), process.url.clone(), answered.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("flood_{worker}_{i}");
                    match post(&http, &url, SIGNUP, json!({ "u": name, "p": PASSWORD })).await {
                        Ok(answer) if answer["data"]["signup"]["token"].is_string() => {
                            answered.lock().unwrap().push(name)
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    process.child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    process.child.wait().unwrap();
    for worker in flood {
        worker.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= 4, "the flood barely ran: {answered:?}");

    let restarted = Process::start(&envs);
    for name in &answered {
        let answer = post(&http, &restarted.url, LOGIN, json!({ "u": name, "p": PASSWORD }))
            .await
            .unwrap();
        assert!(
            answer["data"]["login"]["token"].is_string(),
            "{name} cannot log in: {answer}"
        );
    }
    let db = Database::connect(db_url.as_str()).await.unwrap();
    let orphans = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM users WHERE id NOT IN (SELECT user_id FROM user_roles WHERE role = 'user')",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(orphans, 0, "accounts without their role rows");
}

/// A PostgreSQL cluster of the test's own, on its own port, run as the `postgres` user.
struct Cluster {
    bin: String,
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn as_postgres(command: &str) -> bool {
        Command::new("su")
            .args(["postgres", "-c", command])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    fn start() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin").display().to_string())
            .max()
            .expect("a PostgreSQL version");
        let dir = tempfile::tempdir().unwrap();
        assert!(Command::new("chown")
            .args(["postgres", dir.path().to_str().unwrap()])
            .status()
            .unwrap()
            .success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster { bin, dir, port };
        assert!(Cluster::as_postgres(&format!(
            "{}/initdb -D {}/data -A trust -U postgres",
            cluster.bin,
            cluster.path()
        )));
        cluster.up();
        cluster
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn up(&self) {
        let (bin, path, port) = (&self.bin, self.path(), self.port);
        let options = format!("-p {port} -k {path} -c listen_addresses=127.0.0.1");
        assert!(Cluster::as_postgres(&format!(
            "{bin}/pg_ctl -D {path}/data -l {path}/log -o '{options}' -w start"
        )));
    }

    fn down(&self) {
        assert!(Cluster::as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m fast -w stop",
            self.bin,
            self.path()
        )));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        Cluster::as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m immediate -w stop",
            self.bin,
            self.path()
        ));
    }
}

#[tokio::test]
#[ignore = "starts its own PostgreSQL cluster as the postgres user; .ci/run runs it"]
async fn a_database_outage_fails_fast_and_recovers_without_a_restart() {
    let cluster = Cluster::start();
    let config = Config {
        database_url: format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port),
        database_timeout: 2,
        ..Config::for_test()
    };
    let server = TestServer::start_exactly(config).await;
    let (token, _, _) = server.signup("outage").await;
    let me = |token: String| {
        let (http, url) = (server.http.clone(), server.url("/graphql"));
        async move {
            let started = Instant::now();
            let query = json!({ "query": "{ me { id } }" });
            let answer = match http.post(url).bearer_auth(token).json(&query).send().await {
                Ok(response) => Ok((
                    response.status().as_u16(),
                    response.json::<Value>().await.unwrap_or_default(),
                )),
                Err(e) => Err(e),
            };
            (answer, started.elapsed())
        }
    };
    let healthy = |answer: &(u16, Value)| answer.0 == 200 && answer.1["data"]["me"]["id"].is_string();
    assert!(healthy(&me(token.clone()).await.0.unwrap()));

    cluster.down();
    for _ in 0..5 {
        let (answer, took) = me(token.clone()).await;
        let (status, body) = answer.expect("an answer, not a dropped connection");
        // Refused before execution (503), or a field error from the resolver (200).
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "INTERNAL_SERVER_ERROR",
            "{status} {body}"
        );
        assert_eq!(
            body["errors"][0]["message"], "internal server error",
            "no internals: {body}"
        );
        assert!(
            status == 503 || status == 200,
            "status {status} while the database is down"
        );
        assert!(took < Duration::from_secs(4), "took {took:?}: not failing fast");
    }
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        server.http.get(server.url("/healthz")).send().await.unwrap().status(),
        200
    );

    cluster.up();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if me(token.clone()).await.0.is_ok_and(|answer| healthy(&answer)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gatehouse did not recover after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        server.http.get(server.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let (fresh, _, _) = server.signup("after").await;
    assert!(!fresh.is_empty());
}
