//! sea-orm entities of gatehouse: one module per table, no rules and no web types.
//! Business rules live in the server's `domain` module; schema changes in `migration`.

pub mod attempt;
pub mod audit_event;
pub mod email_verification;
pub mod identity;
pub mod login_challenge;
pub mod login_code;
pub mod oidc_flow;
pub mod passkey;
pub mod passkey_ceremony;
pub mod password_reset;
pub mod prelude;
pub mod recovery_code;
pub mod server_setting;
pub mod session;
pub mod site;
pub mod site_member;
pub mod totp_factor;
pub mod user;
pub mod user_role;
