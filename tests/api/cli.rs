//! The `gatehouse` binary: `schema` matches the committed SDL, bad settings stop startup
//! with one line, and SIGTERM lets in-flight requests finish.

use std::process::Command;

fn gatehouse() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (name, _) in std::env::vars() {
        // Start from the defaults, whatever the developer's shell exports.
        if name == "DATABASE_URL" || name == "JWT_SECRET" || name == "BIND" || name.starts_with("ADMIN_") {
            command.env_remove(name);
        }
    }
    command
}

#[test]
fn schema_graphql_matches_gatehouse_schema() {
    let output = gatehouse().arg("schema").output().unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert!(
        printed == committed,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}

#[test]
fn bad_settings_stop_startup_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/never.db?mode=rwc", dir.path().display());
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 8] = [
        (&[], &[("JWT_SECRET", "too-short")], "JWT_SECRET"),
        (&[], &[("DATABASE_URL", "mysql://localhost/x")], "DATABASE_URL"),
        (&["--session-ttl", "soon"], &[], "soon"),
        (&["--no-such-flag"], &[], "no-such-flag"),
        (&[], &[("ADMIN_USERNAME", "root_admin")], "ADMIN_PASSWORD"),
        (
            &[],
            &[("ADMIN_USERNAME", "root_admin"), ("ADMIN_PASSWORD", "password")],
            "ADMIN_PASSWORD",
        ),
        (&[], &[("WEBAUTHN_ORIGIN", "localhost:8080")], "WEBAUTHN_ORIGIN"),
        (
            &[],
            &[
                ("WEBAUTHN_RP_ID", "example.com"),
                ("WEBAUTHN_ORIGIN", "https://app.example.org"),
            ],
            "WEBAUTHN_RP_ID",
        ),
    ];
    for (args, env, mentions) in cases {
        let mut command = gatehouse();
        command.args(args).env("BIND", "127.0.0.1:0");
        if !env.iter().any(|(name, _)| *name == "DATABASE_URL") {
            command.env("DATABASE_URL", &db);
        }
        command.envs(env.iter().copied());
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} {env:?} started");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(mentions), "{mentions} not in {stderr}");
    }
    // Nothing was written before the refusal.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn migrate_applies_migrations_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/m.db?mode=rwc", dir.path().display());
    let status = gatehouse().args(["migrate", "--database-url", &db]).status().unwrap();
    assert!(status.success());
    assert!(dir.path().join("m.db").exists());
}

/// Starts `gatehouse serve` with `env` and returns what it logged up to "listening".
fn startup_log(env: &[(&str, &str)]) -> String {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/s.db?mode=rwc", dir.path().display());
    let mut child = gatehouse()
        .env("DATABASE_URL", &db)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(log.contains("listening"), "{log}");
    log
}

#[test]
fn the_log_mailer_off_loopback_is_warned_about() {
    let warning = "reset links are written to the log";
    let exposed = startup_log(&[("BIND", "0.0.0.0:0")]);
    assert!(exposed.contains("WARN") && exposed.contains(warning), "{exposed}");
    for quiet in [
        startup_log(&[("BIND", "127.0.0.1:0")]),
        startup_log(&[("BIND", "0.0.0.0:0"), ("SMTP_URL", "smtp://127.0.0.1:2525")]),
    ] {
        assert!(!quiet.contains(warning), "{quiet}");
    }
}
