//! The OpenID Connect relying party: discovery of each configured provider (retried in the
//! background while one is down), authorization URLs with PKCE S256, `state` and `nonce`, and
//! the code exchange with ID token verification. The `openidconnect` crate speaks the protocol;
//! what a verified identity means for accounts is `domain::social`'s.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};

use crate::config::OidcProvider;
use crate::domain::social::ProviderIdentity;

/// How long one discovery or token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before discovering a provider again after a failure; doubled up to the maximum.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Providers rotate signing keys: metadata and keys are read again this often.
const REDISCOVER_EVERY: Duration = Duration::from_secs(3600);

type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// Why a social sign-in failed at the provider's end; each has the `?error=` value it shows.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the provider could not be reached at startup and is retried")]
    Unavailable,
    #[error("exchanging the code failed: {0}")]
    Exchange(String),
    #[error("the ID token was refused: {0}")]
    IdToken(String),
}

impl OidcError {
    /// The value of `?error=` on the redirect back to the application.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Unavailable => "provider_unavailable",
            OidcError::Exchange(_) => "code_exchange_failed",
            OidcError::IdToken(_) => "invalid_id_token",
        }
    }
}

/// A redirect to the provider, and what the callback needs to finish it.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub pkce_verifier: String,
    pub nonce: String,
}

/// The configured providers and, once discovered, their clients.
pub struct Providers {
    slots: Vec<Slot>,
    http: openidconnect::reqwest::Client,
}

struct Slot {
    settings: OidcProvider,
    redirect: RedirectUrl,
    client: RwLock<Option<Arc<Client>>>,
}

impl Providers {
    /// The providers of `settings`, none discovered yet; callbacks go to `public_url`.
    pub fn new(settings: Vec<OidcProvider>, public_url: &str) -> anyhow::Result<Self> {
        let base = public_url.trim_end_matches('/');
        let slots = settings
            .into_iter()
            .map(|settings| {
                let redirect = RedirectUrl::new(format!("{base}/auth/oidc/{}/callback", settings.name))?;
                Ok(Slot {
                    settings,
                    redirect,
                    client: RwLock::new(None),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        // No redirects: a provider's endpoints answer directly, and following one could be
        // turned against hosts the server can reach.
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Providers { slots, http })
    }

    /// The configured names, in configuration order, discovered or not.
    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.settings.name.clone()).collect()
    }

    pub fn is_configured(&self, name: &str) -> bool {
        self.slot(name).is_some()
    }

    /// Discovers every provider not discovered yet; failures are logged and left
    /// for `keep_discovering`.
    pub async fn discover_missing(&self) {
        let missing = self.slots.iter().filter(|s| s.current().is_none());
        each_in_turn(missing.map(|slot| self.discover(slot))).await;
    }

    /// Runs until aborted: retries providers that are down with backoff, and reads every
    /// provider's metadata and keys again each hour.
    pub async fn keep_discovering(self: Arc<Self>) {
        let mut wait = RETRY_FIRST;
        let mut since_refresh = Duration::ZERO;
        loop {
            let all_up = self.slots.iter().all(|s| s.current().is_some());
            let pause = if all_up { REDISCOVER_EVERY } else { wait };
            tokio::time::sleep(pause).await;
            since_refresh += pause;
            if since_refresh >= REDISCOVER_EVERY {
                since_refresh = Duration::ZERO;
                each_in_turn(self.slots.iter().map(|slot| self.discover(slot))).await;
            } else {
                self.discover_missing().await;
            }
            wait = match self.slots.iter().all(|s| s.current().is_some()) {
                true => RETRY_FIRST,
                false => (wait * 2).min(RETRY_MAX),
            };
        }
    }

    async fn discover(&self, slot: &Slot) -> bool {
        let settings = &slot.settings;
        let issuer = match IssuerUrl::new(settings.issuer.clone()) {
            Ok(issuer) => issuer,
            Err(e) => {
                tracing::error!(provider = %settings.name, error = %e, "OIDC issuer is not a URL");
                return false;
            }
        };
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                let client = CoreClient::from_provider_metadata(
                    metadata,
                    ClientId::new(settings.client_id.clone()),
                    settings.client_secret.clone().map(ClientSecret::new),
                )
                .set_redirect_uri(slot.redirect.clone());
                if let Ok(mut current) = slot.client.write() {
                    *current = Some(Arc::new(client));
                }
                tracing::info!(provider = %settings.name, "OIDC provider discovered");
                true
            }
            Err(e) => {
                tracing::warn!(
                    provider = %settings.name,
                    issuer = %settings.issuer,
                    error = %error_chain(&e),
                    "OIDC discovery failed; retrying in the background"
                );
                false
            }
        }
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.settings.name == name)
    }

    /// A fresh authorization request to provider `name` (which must be configured).
    pub fn authorize(&self, name: &str) -> Result<Authorization, OidcError> {
        let slot = self.slot(name).ok_or(OidcError::Unavailable)?;
        let client = slot.current().ok_or(OidcError::Unavailable)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in slot.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Exchanges `code` (with the PKCE verifier) and verifies the ID token: signature by a
    /// key of the provider's JWKS, `iss`, `aud`, `exp` against `now`, and `nonce`.
    pub async fn finish(
        &self,
        name: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<ProviderIdentity, OidcError> {
        let slot = self.slot(name).ok_or(OidcError::Unavailable)?;
        let client = slot.current().ok_or(OidcError::Unavailable)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::IdToken("the token response holds no ID token".into()))?;
        let verifier = client.id_token_verifier().set_time_fn(move || now);
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
        Ok(ProviderIdentity {
            provider: name.to_owned(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            preferred_username: claims.preferred_username().map(|u| u.to_string()),
            name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
        })
    }
}

impl Slot {
    fn current(&self) -> Option<Arc<Client>> {
        self.client.read().ok().and_then(|c| c.clone())
    }
}

/// Runs the discoveries one after another: there are few providers, and a down one fails fast.
async fn each_in_turn<F: std::future::Future>(futures: impl Iterator<Item = F>) {
    for future in futures {
        future.await;
    }
}

/// The error and its causes on one line, for the log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
