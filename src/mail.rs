//! Outgoing mail: the reset link goes to the log (`MAILER=log`, the default) or through SMTP.
//! Tests may read an in-memory outbox instead.

use std::sync::{Arc, Mutex};

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Config;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Clone)]
pub enum Mailer {
    /// One log line per mail, holding the link (development, closed networks).
    Log,
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Mails kept in memory, for tests that follow a link.
    Outbox(Arc<Mutex<Vec<Mail>>>),
}

impl Mailer {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        // API.md §1: setting SMTP_URL implies MAILER=smtp.
        match (&config.smtp_url, config.mailer.as_str()) {
            (Some(url), _) => Ok(Mailer::Smtp {
                transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build(),
                from: config.mail_from.parse()?,
            }),
            (None, "smtp") => anyhow::bail!("MAILER=smtp needs SMTP_URL"),
            (None, "log") => Ok(Mailer::Log),
            (None, other) => anyhow::bail!("MAILER must be log or smtp, not `{other}`"),
        }
    }

    pub fn outbox() -> Self {
        Mailer::Outbox(Arc::default())
    }

    /// The mails sent so far (outbox only).
    pub fn sent(&self) -> Vec<Mail> {
        match self {
            Mailer::Outbox(outbox) => outbox.lock().map(|m| m.clone()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Whether a user without an e-mail address can still be reached.
    pub fn needs_address(&self) -> bool {
        matches!(self, Mailer::Smtp { .. })
    }

    pub async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        match self {
            Mailer::Log => {
                // API.md §1: with MAILER=log the reset link is written to the log on purpose.
                tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.body, "mail (MAILER=log)");
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let message = Message::builder()
                    .from(from.clone())
                    .to(mail.to.parse()?)
                    .subject(mail.subject)
                    .body(mail.body)?;
                transport.send(message).await?;
                Ok(())
            }
            Mailer::Outbox(outbox) => {
                outbox
                    .lock()
                    .map_err(|_| anyhow::anyhow!("outbox poisoned"))?
                    .push(mail);
                Ok(())
            }
        }
    }
}
