//! Request bodies of the auth routes.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::core::auth::PlatformRole;
use crate::modules::auth::service::UserView;

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct RegisterRequest {
    #[validate(email, length(max = 254))]
    pub email: String,
    /// Length limits come from settings (`auth.password_min_length`, `..._max_length`).
    #[schema(value_type = String)]
    pub password: SecretString,
    #[validate(length(max = 200))]
    pub full_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    pub user: UserView,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct LoginRequest {
    #[validate(length(min = 1, max = 254))]
    pub email: String,
    #[schema(value_type = String)]
    pub password: SecretString,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct RefreshRequest {
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String)]
    pub current_password: SecretString,
    #[schema(value_type = String)]
    pub new_password: SecretString,
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Substring of the email.
    #[validate(length(max = 254))]
    pub q: Option<String>,
    #[validate(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    #[validate(range(max = crate::core::pagination::MAX_OFFSET))]
    #[param(maximum = 1_000_000_000)]
    pub offset: Option<u64>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub role: Option<PlatformRole>,
    pub is_active: Option<bool>,
}

/// Passwords never reach Debug output or log lines, even when whole requests are logged.
#[cfg(test)]
mod tests {
    use super::{ChangePasswordRequest, LoginRequest, RegisterRequest};
    use crate::core::telemetry::captured_logs;

    const SECRET: &str = "sk-live-0123456789-very-secret";

    #[test]
    fn request_bodies_holding_passwords_print_redacted() {
        let login: LoginRequest =
            serde_json::from_value(serde_json::json!({"email": "a@b.c", "password": SECRET}))
                .unwrap();
        let register: RegisterRequest =
            serde_json::from_value(serde_json::json!({"email": "a@b.c", "password": SECRET}))
                .unwrap();
        let change: ChangePasswordRequest = serde_json::from_value(
            serde_json::json!({"current_password": SECRET, "new_password": SECRET}),
        )
        .unwrap();
        let printed = format!("{login:?} {register:?} {change:?}");
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(printed.contains("REDACTED"), "{printed}");

        let lines = captured_logs(|| {
            tracing::info!(?login, "request received");
            tracing::error!("failed: {:?}", change);
        });
        assert!(lines.contains("request received"), "{lines}");
        assert!(!lines.contains(SECRET), "{lines}");
    }
}
