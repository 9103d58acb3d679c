//! Role names (API.md §4): global roles are lowercase names; site roles are `<siteId>:<role>`
//! and never granted through the global-role operations.

use crate::error::AppError;

pub const USER: &str = "user";
pub const ADMIN: &str = "admin";
const MAX_ROLE_CHARS: usize = 32;

/// `^[a-z][a-z0-9_-]{0,31}$`
pub fn is_global_role_name(role: &str) -> bool {
    let mut bytes = role.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && role.len() <= MAX_ROLE_CHARS
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Validates a list of global role names; returns them sorted and without duplicates.
pub fn check_global_roles(roles: &[String]) -> Result<Vec<String>, AppError> {
    if let Some(bad) = roles.iter().find(|r| !is_global_role_name(r)) {
        let message = format!("`{bad}` is not a global role name (lowercase, ^[a-z][a-z0-9_-]{{0,31}}$)");
        return Err(AppError::bad_input("roles", message));
    }
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for good in ["user", "admin", "read", "a", "history-2", "x_y", &"a".repeat(32)] {
            assert!(is_global_role_name(good), "{good}");
        }
        for bad in ["", "Admin", "1st", "-x", "a b", "site:admin", &"a".repeat(33), "é"] {
            assert!(!is_global_role_name(bad), "{bad}");
        }
    }

    #[test]
    fn lists_are_checked_sorted_and_deduplicated() {
        let roles = check_global_roles(&["write".into(), "read".into(), "write".into()]).unwrap();
        assert_eq!(roles, vec!["read".to_string(), "write".to_string()]);
        let err = check_global_roles(&["read".into(), "Bad".into()]).unwrap_err();
        assert!(matches!(err, AppError::BadUserInput { field: "roles", .. }));
    }
}
