//! The reset flow end to end against a real SMTP server (Python's aiosmtpd, installed by
//! `.ci/run`): the mail arrives, and its link's token works once, and only once.

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

async fn wait_for_mail(folder: &std::path::Path, index: usize) -> String {
    let path = folder.join(format!("{index}.txt"));
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no mail {index} arrived");
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

    let mail = wait_for_mail(folder.path(), 0).await;
    assert!(
        mail.starts_with(&format!("To: {email}\nSubject: Reset your password")),
        "{mail}"
    );
    let start = mail.find("https://app.example.com/reset#token=").expect("the link")
        + "https://app.example.com/reset#token=".len();
    let token = mail[start..].split_whitespace().next().unwrap().to_owned();

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
    assert!(!folder.path().join("1.txt").exists());
}
