//! `AppState`: what the request handlers need, cheap to clone. `startup::start` builds it
//! once; tests build one per server.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::password::PasswordHasher;
use crate::auth::seal::SealingKey;
use crate::auth::token::TokenKeys;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::passkey::RelyingParty;
use crate::domain::rate_limit::RateLimiter;
use crate::domain::reset::ResetMail;
use crate::domain::verification::VerifyMail;
use crate::mail::Mailer;
use crate::oidc::Providers;
use crate::sessions::SessionStore;

/// Cloned for every request, so it is one `Arc`; fields read through it as through a reference.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// What `AppState` holds.
#[derive(Clone)]
pub struct Services {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub tokens: Arc<TokenKeys>,
    /// Seals the secrets the server must read back (TOTP).
    pub sealing: SealingKey,
    pub passwords: PasswordHasher,
    pub clock: Clock,
    pub mailer: Mailer,
    /// Sessions and the roles they carry; the only way to change either.
    pub sessions: SessionStore,
    pub limiter: RateLimiter,
    /// The social login providers and their discovered clients.
    pub oidc: Arc<Providers>,
    /// Passkeys: `WEBAUTHN_RP_ID` and `WEBAUTHN_ORIGIN`.
    pub passkeys: Arc<RelyingParty>,
    /// Renders `/metrics` and counts requests; `None` when no recorder was installed (then
    /// `/metrics` is 404 and requests are not counted).
    pub metrics: Option<crate::telemetry::Telemetry>,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }

    /// How verification links go out, and whether signing in waits for them.
    pub fn email_policy(&self) -> (VerifyMail, bool) {
        let mail = VerifyMail {
            mailer: self.mailer.clone(),
            link_template: self.config.verify_url_template.clone(),
        };
        (mail, self.config.require_verified_email)
    }

    /// How reset links go out: through this state's mailer, with the configured template.
    pub fn reset_mail(&self) -> ResetMail {
        ResetMail {
            mailer: self.mailer.clone(),
            link_template: self.config.reset_url_template.clone(),
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// Before serving (tests swap the mailer, say); a state already shared is copied first.
impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Services {
        Arc::make_mut(&mut self.0)
    }
}
