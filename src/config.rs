//! Every setting of `gatehouse serve`: an environment variable and a flag of the same name
//! (API.md §1). `validate` turns a bad value into one line before anything is written.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args};
use ipnet::IpNet;

/// The smallest accepted `JWT_SECRET`: HS256 wants a key at least as long as its output.
const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Listen address (port 0 picks a free port and logs it).
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// SQLite or PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/gatehouse.db?mode=rwc")]
    pub database_url: String,

    /// Seconds a database call may take (connect, pool wait) before the request fails.
    #[arg(long, env = "DATABASE_TIMEOUT", default_value_t = 5)]
    pub database_timeout: u64,

    /// HS256 signing secret, at least 32 bytes; generated once and kept in the database when unset.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file of an Ed25519 or RSA private key: tokens are then signed EdDSA or RS256 and the public key is served at /.well-known/jwks.json.
    #[arg(long, env = "JWT_PRIVATE_KEY_FILE")]
    pub jwt_private_key_file: Option<PathBuf>,

    /// Seconds a session lives after login (absolute lifetime).
    #[arg(long, env = "SESSION_TTL", default_value_t = 3600)]
    pub session_ttl: u64,

    /// Seconds without an authenticated request after which a session ends; 0 turns idle expiry off.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT", default_value_t = 0)]
    pub session_idle_timeout: u64,

    /// Seconds a token is valid; 0 means the session's lifetime. When set, every AuthPayload also carries a single-use refreshToken.
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value_t = 0)]
    pub access_token_ttl: u64,

    /// Seconds after a login or `reauthenticate` during which operations that need a fresh session are allowed.
    #[arg(long, env = "REAUTH_WINDOW", default_value_t = 300)]
    pub reauth_window: u64,

    /// Username of the admin account kept up to date at startup (with ADMIN_PASSWORD).
    #[arg(long, env = "ADMIN_USERNAME")]
    pub admin_username: Option<String>,

    /// Password of the admin account kept up to date at startup (with ADMIN_USERNAME).
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// argon2id memory cost in KiB.
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = 19456)]
    pub argon2_memory_kib: u32,

    /// argon2id iterations.
    #[arg(long, env = "ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,

    /// argon2id lanes.
    #[arg(long, env = "ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,

    /// Name of the session cookie.
    #[arg(long, env = "COOKIE_NAME", default_value = "gatehouse_session")]
    pub cookie_name: String,

    /// Mark the session cookie `Secure` (browsers accept it from http://localhost too).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = true, action = ArgAction::Set)]
    pub cookie_secure: bool,

    /// Comma-separated origins allowed to call with credentials (cookies).
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', default_value = "")]
    pub cors_origins: Vec<String>,

    /// Serve the GraphiQL page to browsers on GET /graphql.
    #[arg(long, env = "GRAPHIQL", default_value_t = true, action = ArgAction::Set)]
    pub graphiql: bool,

    /// Answer schema introspection; when false, validation errors stop suggesting names too.
    #[arg(long, env = "INTROSPECTION", default_value_t = true, action = ArgAction::Set)]
    pub introspection: bool,

    /// Where reset mails go: `log` (one log line holding the link) or `smtp`.
    #[arg(long, env = "MAILER", default_value = "log")]
    pub mailer: String,

    /// SMTP server for reset mails, e.g. smtp://127.0.0.1:2525 or smtps://user:pass@host:465; implies MAILER=smtp.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Sender of reset mails.
    #[arg(long, env = "MAIL_FROM", default_value = "gatehouse@localhost")]
    pub mail_from: String,

    /// The link in a reset mail; `{token}` is replaced by the reset token.
    #[arg(
        long,
        env = "RESET_URL_TEMPLATE",
        default_value = "http://127.0.0.1:8080/reset-password?token={token}"
    )]
    pub reset_url_template: String,

    /// Require a verified e-mail: signup needs an address, and an unverified one cannot log in (EMAIL_NOT_VERIFIED).
    #[arg(long, env = "REQUIRE_VERIFIED_EMAIL", default_value_t = false, action = ArgAction::Set)]
    pub require_verified_email: bool,

    /// The link in a verification mail; `{token}` is replaced by the verification token.
    #[arg(
        long,
        env = "VERIFY_URL_TEMPLATE",
        default_value = "http://127.0.0.1:8080/verify-email?token={token}"
    )]
    pub verify_url_template: String,

    /// Failed logins allowed per case-folded username (from any address) within RATE_LIMIT_WINDOW; 0 turns the limit off.
    #[arg(long, env = "RATE_LIMIT_LOGIN_USER", default_value_t = 10)]
    pub rate_limit_login_user: u32,

    /// Failed logins allowed per client address within RATE_LIMIT_WINDOW; 0 turns the limit off.
    #[arg(long, env = "RATE_LIMIT_LOGIN_IP", default_value_t = 100)]
    pub rate_limit_login_ip: u32,

    /// Signup attempts allowed per client address within RATE_LIMIT_WINDOW; 0 turns the limit off.
    #[arg(long, env = "RATE_LIMIT_SIGNUP_IP", default_value_t = 20)]
    pub rate_limit_signup_ip: u32,

    /// Password-reset requests plus failed resets allowed per client address within RATE_LIMIT_WINDOW; 0 turns the limit off.
    #[arg(long, env = "RATE_LIMIT_RESET_IP", default_value_t = 20)]
    pub rate_limit_reset_ip: u32,

    /// Password-reset requests that may mail one account within RATE_LIMIT_WINDOW, from any address; 0 turns the limit off.
    #[arg(long, env = "RATE_LIMIT_RESET_USER", default_value_t = 3)]
    pub rate_limit_reset_user: u32,

    /// Length in seconds of the sliding window the RATE_LIMIT_* counts are taken over.
    #[arg(long, env = "RATE_LIMIT_WINDOW", default_value_t = 900)]
    pub rate_limit_window: u64,

    /// Comma-separated proxy addresses or CIDRs whose X-Forwarded-For is believed.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// Largest accepted request body in bytes (413 beyond).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,

    /// Deepest accepted GraphQL document (`{ me { id } }` is 2).
    #[arg(long, env = "GRAPHQL_MAX_DEPTH", default_value_t = 12)]
    pub graphql_max_depth: usize,

    /// Costliest accepted GraphQL document (one per field, times `first` on connections).
    #[arg(long, env = "GRAPHQL_MAX_COMPLEXITY", default_value_t = 1000)]
    pub graphql_max_complexity: usize,

    /// Most aliases accepted in one GraphQL document.
    #[arg(long, env = "GRAPHQL_MAX_ALIASES", default_value_t = 30)]
    pub graphql_max_aliases: usize,

    /// Where GET /metrics is served: empty serves it on BIND, an address serves it there only.
    #[arg(long, env = "METRICS_BIND", default_value = "")]
    pub metrics_bind: String,

    /// Most credential operations (login, signup, changePassword, resetPassword, reauthenticate, refreshSession, verifySecondFactor, finishPasskeyLogin) one GraphQL document may run.
    #[arg(long, env = "GRAPHQL_MAX_CREDENTIAL_OPERATIONS", default_value_t = 1)]
    pub graphql_max_credential_operations: usize,

    /// Comma-separated names of OpenID Connect providers for social login; each is set up by OIDC_<NAME>_ISSUER, _CLIENT_ID, _CLIENT_SECRET and _SCOPES.
    #[arg(long, env = "OIDC_PROVIDERS", value_delimiter = ',', default_value = "")]
    pub oidc_providers: Vec<String>,

    /// The URL browsers reach gatehouse at; social login callbacks are PUBLIC_URL/auth/oidc/<name>/callback.
    #[arg(long, env = "PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,

    /// Comma-separated URL prefixes a social login may return to (`return_to`).
    #[arg(long, env = "OIDC_RETURN_URLS", value_delimiter = ',', default_value = "")]
    pub oidc_return_urls: Vec<String>,

    /// Create an account for a provider identity linked to none; when false, unknown identities are refused.
    #[arg(long, env = "OIDC_SIGNUP", default_value_t = true, action = ArgAction::Set)]
    pub oidc_signup: bool,

    /// Providers given in code (tests, embedding), before those named in OIDC_PROVIDERS.
    #[arg(skip)]
    pub oidc: Vec<OidcProvider>,

    /// Passkey relying party id: the domain passkeys are bound to, WEBAUTHN_ORIGIN's host or a parent domain of it.
    #[arg(long, env = "WEBAUTHN_RP_ID", default_value = "localhost")]
    pub webauthn_rp_id: String,

    /// The origin of the pages that register and use passkeys (the browser reports it), such as https://app.example.com.
    #[arg(long, env = "WEBAUTHN_ORIGIN", default_value = "http://localhost:8080")]
    pub webauthn_origin: String,
}

/// What social login needs of one provider: where to discover it and who gatehouse is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcProvider {
    /// The name in routes and `oidcProviders`: lowercase letters, digits, `-`, `_`.
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client (PKCE alone).
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
}

/// Asked of a provider when OIDC_<NAME>_SCOPES is unset.
const DEFAULT_OIDC_SCOPES: &str = "openid email profile";

impl OidcProvider {
    /// The provider `name` as the environment describes it (`OIDC_<NAME>_*`, with `-` as `_`).
    pub fn from_env(name: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let prefix = format!("OIDC_{}_", name.to_uppercase().replace('-', "_"));
        let var = |suffix: &str| {
            env(&format!("{prefix}{suffix}"))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let issuer = var("ISSUER").ok_or_else(|| format!("{prefix}ISSUER must be set for provider `{name}`"))?;
        let client_id =
            var("CLIENT_ID").ok_or_else(|| format!("{prefix}CLIENT_ID must be set for provider `{name}`"))?;
        let scopes = var("SCOPES").unwrap_or_else(|| DEFAULT_OIDC_SCOPES.into());
        Ok(OidcProvider {
            name: name.to_owned(),
            issuer,
            client_id,
            client_secret: var("CLIENT_SECRET"),
            scopes: scopes
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    fn check(&self) -> Result<(), String> {
        let name = &self.name;
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
        if !name_ok {
            return Err(format!(
                "OIDC_PROVIDERS entry `{name}` must be 1 to 32 lowercase letters, digits, '-' or '_'"
            ));
        }
        let prefix = format!("OIDC_{}_", name.to_uppercase().replace('-', "_"));
        match openidconnect::url::Url::parse(&self.issuer) {
            Ok(url) if ["http", "https"].contains(&url.scheme()) && url.host().is_some() => {}
            _ => return Err(format!("{prefix}ISSUER must be an http(s) URL")),
        }
        if self.client_id.is_empty() {
            return Err(format!("{prefix}CLIENT_ID must be set for provider `{name}`"));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(format!("{prefix}SCOPES must include openid"));
        }
        Ok(())
    }
}

fn parse_net(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{value}` is not an IP address or CIDR"))
}

impl Config {
    /// Checks what clap cannot: returns the first problem as one line for stderr.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.database_url.as_str();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("DATABASE_URL must start with sqlite:, postgres:// or postgresql://".into());
        }
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(format!("JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes"));
            }
        }
        if let Some(path) = &self.jwt_private_key_file {
            // One signing key: a secret beside a private key would leave it unclear which one
            // a token was meant to be checked with.
            if self.jwt_secret.is_some() {
                return Err("JWT_SECRET and JWT_PRIVATE_KEY_FILE exclude each other: set one".into());
            }
            crate::auth::jwk::load(path)?;
        }
        if self.session_ttl == 0 {
            return Err("SESSION_TTL must be at least 1 second".into());
        }
        if self.database_timeout == 0 {
            return Err("DATABASE_TIMEOUT must be at least 1 second".into());
        }
        argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .map_err(|e| format!("ARGON2_* settings are not valid argon2id parameters: {e}"))?;
        let cookie_name_ok = !self.cookie_name.is_empty()
            && self
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !cookie_name_ok {
            return Err("COOKIE_NAME must be letters, digits, '-', '_' or '.'".into());
        }
        for origin in self.cors_origins() {
            let scheme_ok = origin.starts_with("http://") || origin.starts_with("https://");
            if !scheme_ok || origin == "*" || origin.ends_with('/') {
                return Err(format!(
                    "CORS_ORIGINS entry `{origin}` must be an origin like https://app.example.com"
                ));
            }
        }
        match (&self.admin_username, &self.admin_password) {
            (Some(username), Some(password)) => {
                crate::domain::account::check_username(username).map_err(|e| format!("ADMIN_USERNAME: {e}"))?;
                crate::auth::password::check_new_password("password", username, password)
                    .map_err(|e| format!("ADMIN_PASSWORD: {e}"))?;
            }
            (None, None) => {}
            _ => return Err("ADMIN_USERNAME and ADMIN_PASSWORD must be set together".into()),
        }
        crate::mail::Mailer::from_config(self).map_err(|e| format!("MAILER/SMTP_URL/MAIL_FROM: {e}"))?;
        if !self.reset_url_template.contains("{token}") {
            return Err("RESET_URL_TEMPLATE must contain {token}".into());
        }
        if !self.verify_url_template.contains("{token}") {
            return Err("VERIFY_URL_TEMPLATE must contain {token}".into());
        }
        let max_window = crate::domain::rate_limit::MAX_WINDOW_SECONDS;
        if self.rate_limit_window == 0 || self.rate_limit_window > max_window as u64 {
            return Err(format!("RATE_LIMIT_WINDOW must be 1 to {max_window} seconds"));
        }
        if self.graphql_max_credential_operations == 0 {
            return Err("GRAPHQL_MAX_CREDENTIAL_OPERATIONS must be at least 1".into());
        }
        if !self.metrics_bind.trim().is_empty() && self.metrics_address().is_none() {
            return Err("METRICS_BIND must be empty or an address like 127.0.0.1:9090".into());
        }
        if self.max_body_bytes == 0 {
            return Err("MAX_BODY_BYTES must be positive".into());
        }
        self.oidc_settings()?;
        crate::domain::passkey::relying_party(&self.webauthn_rp_id, &self.webauthn_origin)?;
        Ok(())
    }

    /// The social login providers: those given in code, then those OIDC_PROVIDERS names, read
    /// from the environment; the first bad setting as one line.
    pub fn oidc_settings(&self) -> Result<Vec<OidcProvider>, String> {
        let mut providers = self.oidc.clone();
        for name in self.oidc_providers.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            providers.push(OidcProvider::from_env(name, |var| std::env::var(var).ok())?);
        }
        for (i, provider) in providers.iter().enumerate() {
            provider.check()?;
            if providers[..i].iter().any(|p| p.name == provider.name) {
                return Err(format!("OIDC_PROVIDERS names `{}` twice", provider.name));
            }
        }
        match openidconnect::url::Url::parse(&self.public_url) {
            Ok(url) if ["http", "https"].contains(&url.scheme()) && url.host().is_some() => {}
            _ => return Err("PUBLIC_URL must be an http(s) URL like https://auth.example.com".into()),
        }
        if !providers.is_empty() && self.oidc_return_urls().next().is_none() {
            return Err("OIDC_RETURN_URLS must list where social logins may return when OIDC_PROVIDERS is set".into());
        }
        for prefix in self.oidc_return_urls() {
            if !(prefix.starts_with("https://") || prefix.starts_with("http://")) {
                return Err(format!("OIDC_RETURN_URLS entry `{prefix}` must be an http(s) URL"));
            }
        }
        Ok(providers)
    }

    /// The allowed `return_to` prefixes, blank entries left out.
    pub fn oidc_return_urls(&self) -> impl Iterator<Item = &str> {
        self.oidc_return_urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty())
    }

    /// The configured origins, with the empty entries of `CORS_ORIGINS=""` left out.
    pub fn cors_origins(&self) -> impl Iterator<Item = &str> {
        self.cors_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty())
    }

    /// The separate metrics listener's address; `None` serves `/metrics` on `BIND`.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_bind.trim().parse().ok()
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// Defaults with cheap argon2, a fixed secret and a fresh SQLite file, for tests.
    pub fn for_test() -> Self {
        let db = std::env::temp_dir().join(format!("gatehouse-test-{}.db", uuid::Uuid::new_v4()));
        Config {
            bind: "127.0.0.1:0".parse().expect("BUG: literal address"),
            database_url: format!("sqlite://{}?mode=rwc", db.display()),
            database_timeout: 5,
            jwt_secret: Some("test-secret-test-secret-test-secret-0123".into()),
            jwt_private_key_file: None,
            session_ttl: 3600,
            session_idle_timeout: 0,
            access_token_ttl: 0,
            reauth_window: 300,
            admin_username: None,
            admin_password: None,
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            cookie_name: "gatehouse_session".into(),
            cookie_secure: true,
            cors_origins: Vec::new(),
            graphiql: true,
            introspection: true,
            mailer: "log".into(),
            smtp_url: None,
            mail_from: "gatehouse@localhost".into(),
            reset_url_template: "http://127.0.0.1:8080/reset-password?token={token}".into(),
            require_verified_email: false,
            verify_url_template: "http://127.0.0.1:8080/verify-email?token={token}".into(),
            rate_limit_login_user: 10,
            rate_limit_login_ip: 100,
            rate_limit_signup_ip: 20,
            rate_limit_reset_ip: 20,
            rate_limit_reset_user: 3,
            rate_limit_window: 900,
            trusted_proxies: Vec::new(),
            max_body_bytes: 1_048_576,
            graphql_max_depth: 12,
            graphql_max_complexity: 1000,
            graphql_max_aliases: 30,
            graphql_max_credential_operations: 1,
            metrics_bind: String::new(),
            oidc_providers: Vec::new(),
            public_url: "http://127.0.0.1:8080".into(),
            oidc_return_urls: Vec::new(),
            oidc_signup: true,
            oidc: Vec::new(),
            webauthn_rp_id: "localhost".into(),
            webauthn_origin: "http://localhost:8080".into(),
        }
    }
}
