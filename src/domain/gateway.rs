//! The gateway's role decision (API.md §6): which Hasura role a request runs as, or why it
//! is refused. Pure: `http::webhook` finds the caller and turns the answer into HTTP.

use std::fmt;

/// The role of a request without a token.
pub const ANONYMOUS: &str = "anonymous";
/// The role of a signed-in caller who asks for none; every account holds it.
pub const DEFAULT_ROLE: &str = "user";

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The caller asked for a role they do not hold.
    RoleLacked(String),
    /// The role is outside the gateway's `allow` list.
    RoleNotAllowed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::RoleLacked(role) => write!(f, "the caller does not hold role {role}"),
            Refusal::RoleNotAllowed(role) => write!(f, "role {role} is not allowed here"),
        }
    }
}

/// The role a request runs as. `roles` are the caller's live roles, `None` for an anonymous
/// request; `requested` is the request's `X-Hasura-Role`; `allow` the gateway's allow list.
pub fn decide(roles: Option<&[String]>, requested: Option<&str>, allow: Option<&[String]>) -> Result<String, Refusal> {
    let requested = requested.map(str::trim).filter(|r| !r.is_empty());
    let role = match (roles, requested) {
        // API.md §6: no token means anonymous, whatever role the client asks for.
        (None, _) => ANONYMOUS.to_owned(),
        (Some(_), None) => DEFAULT_ROLE.to_owned(),
        (Some(roles), Some(wanted)) if roles.iter().any(|r| r == wanted) => wanted.to_owned(),
        (Some(_), Some(wanted)) => return Err(Refusal::RoleLacked(wanted.to_owned())),
    };
    match allow {
        Some(allowed) if !allowed.contains(&role) => Err(Refusal::RoleNotAllowed(role)),
        _ => Ok(role),
    }
}

/// `?allow=admin, editor` as a list; empty entries are dropped, so an empty list admits no one.
pub fn parse_allow(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn anonymous_stays_anonymous_whatever_it_asks() {
        assert_eq!(decide(None, None, None).unwrap(), "anonymous");
        assert_eq!(decide(None, Some("admin"), None).unwrap(), "anonymous");
    }

    #[test]
    fn a_user_defaults_to_user_admins_included() {
        let admin = roles(&["admin", "user"]);
        assert_eq!(decide(Some(&admin), None, None).unwrap(), "user");
        assert_eq!(decide(Some(&admin), Some("  "), None).unwrap(), "user");
    }

    #[test]
    fn a_held_role_is_granted_and_a_lacked_one_refused() {
        let editor = roles(&["editor", "user"]);
        assert_eq!(decide(Some(&editor), Some("editor"), None).unwrap(), "editor");
        assert_eq!(
            decide(Some(&editor), Some("admin"), None),
            Err(Refusal::RoleLacked("admin".into()))
        );
        // Role names are exact: no case folding into a role the caller does not hold.
        assert_eq!(
            decide(Some(&editor), Some("Editor"), None),
            Err(Refusal::RoleLacked("Editor".into()))
        );
    }

    #[test]
    fn the_allow_list_applies_to_the_decided_role() {
        let admin = roles(&["admin", "user"]);
        let only_admin = parse_allow("admin");
        assert_eq!(
            decide(Some(&admin), None, Some(&only_admin)),
            Err(Refusal::RoleNotAllowed("user".into()))
        );
        assert_eq!(decide(Some(&admin), Some("admin"), Some(&only_admin)).unwrap(), "admin");
        assert_eq!(
            decide(None, None, Some(&only_admin)),
            Err(Refusal::RoleNotAllowed("anonymous".into()))
        );
        let with_anonymous = parse_allow("user, anonymous");
        assert_eq!(decide(None, None, Some(&with_anonymous)).unwrap(), "anonymous");
    }

    #[test]
    fn an_empty_allow_list_admits_no_one() {
        let none = parse_allow(" , ");
        assert!(none.is_empty());
        assert!(decide(None, None, Some(&none)).is_err());
        assert!(decide(Some(&roles(&["user"])), None, Some(&none)).is_err());
    }
}
