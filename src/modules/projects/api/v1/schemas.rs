//! Request bodies of the projects routes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::core::auth::ProjectRole;
use crate::core::extract::nullable;
use crate::core::ids::{ApiKeyId, AvatarId, ProjectId};

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct CreateProjectRequest {
    #[validate(length(min = 1, max = 200))]
    pub name: String,
    #[validate(length(max = 2000))]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectRequest {
    #[validate(length(min = 1, max = 200))]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct AddMemberRequest {
    #[validate(email)]
    pub email: String,
    pub role: ProjectRole,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    /// The token the invitation was created with.
    #[validate(length(min = 1, max = 200))]
    pub token: String,
}

/// The project joined and the membership.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedInvitation {
    #[schema(value_type = uuid::Uuid)]
    pub project_id: ProjectId,
    pub member: crate::modules::projects::service::MemberView,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct ChangeRoleRequest {
    pub role: ProjectRole,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct PutSecretRequest {
    /// Stored encrypted; never returned. 1 to 8192 bytes.
    #[schema(value_type = String)]
    pub value: secrecy::SecretString,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct CreateApiKeyRequest {
    #[validate(length(min = 1, max = 100))]
    pub name: String,
    /// What the key may be used for: `chat` (the public chat API, the OpenAI-compatible chat
    /// routes), `embeddings`. Omitted or empty: everything. Unknown scopes are refused (422).
    #[validate(length(max = 10))]
    pub scopes: Option<Vec<String>>,
    /// The avatars (of this project) the key reaches: the OpenAI-compatible `models` lists only
    /// those, and the chat routes refuse the others as unknown. Omitted: every avatar.
    #[validate(length(min = 1, max = 100))]
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub avatar_ids: Option<Vec<AvatarId>>,
}

/// What an API key resolves to (`GET /api/v1/public/api-key`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyIdentity {
    #[schema(value_type = uuid::Uuid)]
    pub key_id: ApiKeyId,
    #[schema(value_type = uuid::Uuid)]
    pub project_id: ProjectId,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub avatar_ids: Option<Vec<AvatarId>>,
}

/// Secret values never reach Debug output or log lines, even when whole requests are logged.
#[cfg(test)]
mod tests {
    use super::PutSecretRequest;
    use crate::core::telemetry::captured_logs;

    const SECRET: &str = "sk-live-0123456789-very-secret";

    #[test]
    fn a_secret_in_a_request_body_prints_redacted() {
        let put: PutSecretRequest =
            serde_json::from_value(serde_json::json!({"value": SECRET})).unwrap();
        let printed = format!("{put:?}");
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(printed.contains("REDACTED"), "{printed}");

        let lines = captured_logs(|| tracing::info!(?put, "request received"));
        assert!(lines.contains("request received"), "{lines}");
        assert!(!lines.contains(SECRET), "{lines}");
    }
}
