//! The reset and verification flows end to end against a real SMTP server (Python's
//! aiosmtpd, installed by `.ci/run`): the mail arrives, and its link's token works once, and
//! only once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatehouse::Config;
use serde_json::json;

use crate::common::{str_at, unique, TestServer};

/// Receives mails and writes each decoded body to a file in the given folder.
const RECEIVER: &str = r#"
import email, os, sys, time
from aiosmtpd.controller import Controller

folder, port = sys.argv[1], int(sys.argv[2])

class Keep:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content)
        body = message.get_payload(decode=True).decode()
        name = os.path.join(folder, "%d.txt" % len(os.listdir(folder)))
        with open(name + ".part", "w") as f:
            f.write("To: %s\nSubject: %s\n\n%s" % (message["To"], message["Subject"], body))
        os.rename(name + ".part", name)
        return "250 OK"

controller = Controller(Keep(), hostname="127.0.0.1", port=port)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_receiver(folder: &std::path::Path) -> (Receiver, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("python3")
        .args(["-c", RECEIVER, folder.to_str().unwrap(), &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "aiosmtpd did not start (pip install aiosmtpd)");
    (Receiver(child), port)
}

/// The first `count` mails received, once they have all arrived.
async fn wait_for_mails(folder: &std::path::Path, count: usize) -> Vec<String> {
    for _ in 0..500 {
        let mails: Vec<String> = (0..count)
            .map_while(|i| std::fs::read_to_string(folder.join(format!("{i}.txt"))).ok())
            .collect();
        if mails.len() == count {
            return mails;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{count} mails did not arrive");
}

/// The token of the link starting with `prefix` in the one mail with `subject`.
fn token_after(mails: &[String], subject: &str, prefix: &str) -> String {
    let mail = mails
        .iter()
        .find(|m| m.contains(&format!("\nSubject: {subject}\n")))
        .unwrap_or_else(|| panic!("no mail `{subject}` in {mails:?}"));
    let start = mail.find(prefix).expect("the link") + prefix.len();
    mail[start..].split_whitespace().next().unwrap().to_owned()
}

#[tokio::test]
#[ignore = "needs Python's aiosmtpd; .ci/run installs it and runs this"]
async fn reset_mail_arrives_over_smtp_and_its_token_works_once() {
    let folder = tempfile::tempdir().unwrap();
    let (_receiver, port) = start_receiver(folder.path());
    let config = Config {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        mail_from: "Gatehouse <no-reply@example.com>".into(),
        reset_url_template: "https://app.example.com/reset#token={token}".into(),
        ..Config::for_test()
    };
    let server = TestServer::start(config).await;
    let username = unique("smtp");
    let email = format!("{username}@example.com");
    let signup = "mutation($u: String!, $e: String) { signup(input: {username: $u, password: \"correct horse battery staple\", email: $e}) { token } }";
    server
        .gql(None, signup, json!({ "u": username, "e": email }))
        .await
        .data("signup");

    let request = "mutation($u: String) { requestPasswordReset(input: {username: $u}) }";
    assert_eq!(
        server
            .gql(None, request, json!({ "u": unique("nobody") }))
            .await
            .data("requestPasswordReset"),
        true
    );
    assert_eq!(
        server
            .gql(None, request, json!({ "u": username }))
            .await
            .data("requestPasswordReset"),
        true
    );

    // The signup's verification link and the reset link.
    let mails = wait_for_mails(folder.path(), 2).await;
    assert!(
        mails.iter().all(|m| m.starts_with(&format!("To: {email}\n"))),
        "{mails:?}"
    );
    let token = token_after(&mails, "Reset your password", "https://app.example.com/reset#token=");

    let reset =
        "mutation($t: String!) { resetPassword(input: {token: $t, newPassword: \"fresh passphrase here\"}) { token } }";
    let payload = server
        .gql(None, reset, json!({ "t": token }))
        .await
        .data("resetPassword");
    assert!(str_at(&payload, "/token").starts_with("ey"));
    let reply = server.gql(None, reset, json!({ "t": token })).await;
    reply.assert_code("BAD_USER_INPUT");
    // Only the real account got a mail.
    assert!(!folder.path().join("2.txt").exists());
}

#[tokio::test]
#[ignore = "needs Python's aiosmtpd; .ci/run installs it and runs this"]
async fn verification_mail_arrives_over_smtp_and_its_token_works_once() {
    let folder = tempfile::tempdir().unwrap();
    let (_receiver, port) = start_receiver(folder.path());
    let config = Config {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        verify_url_template: "https://app.example.com/verify?t={token}".into(),
        ..Config::for_test()
    };
    let server = TestServer::start(config).await;
    let username = unique("verified");
    let email = format!("{username}@example.com");
    let signup = "mutation($u: String!, $e: String) { signup(input: {username: $u, password: \"correct horse battery staple\", email: $e}) { token } }";
    let token = str_at(
        &server
            .gql(None, signup, json!({ "u": username, "e": email }))
            .await
            .data("signup"),
        "/token",
    );
    let mails = wait_for_mails(folder.path(), 1).await;
    assert!(mails[0].starts_with(&format!("To: {email}\n")), "{mails:?}");
    let link = token_after(
        &mails,
        "Verify your e-mail address",
        "https://app.example.com/verify?t=",
    );
    let verify = "mutation($t: String!) { verifyEmail(token: $t) { emailVerified } }";
    let verified = server.gql(None, verify, json!({ "t": link })).await.data("verifyEmail");
    assert_eq!(verified["emailVerified"], true);
    server
        .gql(None, verify, json!({ "t": link }))
        .await
        .assert_code("BAD_USER_INPUT");
    let me = server.gql(Some(&token), "{ me { emailVerified } }", json!({})).await;
    assert_eq!(me.data("me")["emailVerified"], true);
}
