//! `AppError`: every failure gatehouse reports, one variant per API.md §7 code.
//! `code()` is the only place code strings live; GraphQL and HTTP mappings sit here too.

use sea_orm::{DbErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No identity where one is needed.
    #[error("authentication required")]
    Unauthenticated,
    /// Wrong username or password: one message for both, so names cannot be probed.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// A malformed, badly signed, expired or revoked token.
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("forbidden")]
    Forbidden,
    /// The password was right and the account has a second factor: no session yet;
    /// `verifySecondFactor` takes the challenge (API.md §8).
    #[error("a second factor is required: call verifySecondFactor with the challenge")]
    SecondFactorRequired { challenge: String },
    /// `REQUIRE_VERIFIED_EMAIL` is on and the account's address is not verified.
    #[error("the e-mail address is not verified: follow the link mailed to it")]
    EmailNotVerified,
    /// The operation needs a session that proved its password within `REAUTH_WINDOW`.
    #[error("this operation needs a recent sign-in: call reauthenticate first")]
    ReauthenticationRequired,
    #[error("{message}")]
    BadUserInput { field: &'static str, message: String },
    #[error("{field} is already taken")]
    Conflict { field: &'static str },
    #[error("not found")]
    NotFound,
    /// Too many attempts (API.md §7); `retry_after` is in seconds.
    #[error("too many attempts, retry in {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    #[error("internal server error")]
    Internal(#[from] anyhow::Error),
    #[error("internal server error")]
    Db(#[from] DbErr),
}

impl AppError {
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        AppError::BadUserInput {
            field,
            message: message.into(),
        }
    }

    /// True for failures of the server itself rather than of the request.
    pub fn is_internal(&self) -> bool {
        matches!(self, AppError::Internal(_) | AppError::Db(_))
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated | AppError::InvalidCredentials | AppError::InvalidToken => "UNAUTHENTICATED",
            AppError::Forbidden => "FORBIDDEN",
            AppError::ReauthenticationRequired => "REAUTHENTICATION_REQUIRED",
            AppError::SecondFactorRequired { .. } => "SECOND_FACTOR_REQUIRED",
            AppError::EmailNotVerified => "EMAIL_NOT_VERIFIED",
            AppError::BadUserInput { .. } => "BAD_USER_INPUT",
            AppError::Conflict { .. } => "CONFLICT",
            AppError::NotFound => "NOT_FOUND",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Internal(_) | AppError::Db(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// Logs the cause of an internal failure; clients only ever see the generic message.
    pub fn log_cause(&self) {
        match self {
            AppError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            AppError::Db(e) => tracing::error!(error = %e, "database error"),
            _ => {}
        }
    }
}

/// Maps a unique-index violation to `Conflict` on the field whose name the violated index
/// carries (the first of `fields` when none matches); any other error stays a database error.
pub fn on_unique(fields: &'static [&'static str]) -> impl FnOnce(DbErr) -> AppError {
    move |err| match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(detail)) => {
            let field = fields
                .iter()
                .find(|f| detail.contains(*f))
                .copied()
                .unwrap_or(fields[0]);
            AppError::Conflict { field }
        }
        _ => AppError::Db(err),
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        err.log_cause();
        let code = err.code();
        let mut gql = async_graphql::Error::new(err.to_string());
        let extensions = gql.extensions.get_or_insert_with(Default::default);
        extensions.set("code", code);
        if let AppError::BadUserInput { field, .. } | AppError::Conflict { field } = &err {
            extensions.set("field", *field);
        }
        if let AppError::RateLimited { retry_after } = &err {
            extensions.set("retryAfter", *retry_after);
        }
        if let AppError::SecondFactorRequired { challenge } = &err {
            extensions.set("challenge", challenge.as_str());
        }
        gql
    }
}

/// A `{"errors":[...]}` body for failures outside GraphQL execution (401, 413, 415, ...).
pub fn error_body(message: &str, code: &str) -> serde_json::Value {
    serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
}
