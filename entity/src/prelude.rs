//! Short names for the entities, for `use entity::prelude::*`.

pub use super::attempt::Entity as Attempt;
pub use super::audit_event::Entity as AuditEvent;
pub use super::email_verification::Entity as EmailVerification;
pub use super::identity::Entity as Identity;
pub use super::login_challenge::Entity as LoginChallenge;
pub use super::login_code::Entity as LoginCode;
pub use super::oidc_flow::Entity as OidcFlow;
pub use super::passkey::Entity as Passkey;
pub use super::passkey_ceremony::Entity as PasskeyCeremony;
pub use super::password_reset::Entity as PasswordReset;
pub use super::recovery_code::Entity as RecoveryCode;
pub use super::server_setting::Entity as ServerSetting;
pub use super::session::Entity as Session;
pub use super::site::Entity as Site;
pub use super::site_member::Entity as SiteMember;
pub use super::totp_factor::Entity as TotpFactor;
pub use super::user::Entity as User;
pub use super::user_role::Entity as UserRole;
