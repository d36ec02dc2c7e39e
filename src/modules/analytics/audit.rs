//! What each domain event is in the audit log: its action, the entity it acted on, and the
//! details worth keeping. The match is exhaustive: a new event does not compile until it is
//! given an entry here (or marked as analytics-only traffic).

use serde_json::{Map, Value};

use crate::modules::auth::AuthEvent;
use crate::modules::avatars::AvatarsEvent;
use crate::modules::billing::BillingEvent;
use crate::modules::chat::ChatEvent;
use crate::modules::documents::DocumentsEvent;
use crate::modules::end_users::EndUsersEvent;
use crate::modules::events::DomainEvent;
use crate::modules::plan_requests::PlanRequestsEvent;
use crate::modules::platform_config::PlatformConfigEvent;
use crate::modules::projects::ProjectsEvent;
use crate::modules::telegram::TelegramEvent;

/// An event's place in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `avatar.updated`, `member.added`, ...
    pub action: &'static str,
    pub entity_type: &'static str,
    pub entity_id: Option<String>,
}

fn entry(action: &'static str, entity_type: &'static str, id: impl ToString) -> Option<Entry> {
    Some(Entry {
        action,
        entity_type,
        entity_id: Some(id.to_string()),
    })
}

/// The audit entry of `event`, or `None` for high-volume chat traffic (analytics' concern).
pub fn entry_of(event: &DomainEvent) -> Option<Entry> {
    match event {
        DomainEvent::Auth(event) => match event {
            AuthEvent::UserRegistered { user_id, .. } => entry("user.registered", "user", user_id),
            AuthEvent::UserLoggedIn { user_id, .. } => entry("user.logged_in", "user", user_id),
            AuthEvent::PasswordChanged { user_id, .. } => {
                entry("user.password_changed", "user", user_id)
            }
            AuthEvent::UserUpdated { user_id, .. } => entry("user.updated", "user", user_id),
            AuthEvent::RefreshTokenReuseDetected { user_id, .. } => {
                entry("user.token_reuse_detected", "user", user_id)
            }
        },
        DomainEvent::Projects(event) => match event {
            ProjectsEvent::ProjectCreated { project_id, .. } => {
                entry("project.created", "project", project_id)
            }
            ProjectsEvent::ProjectUpdated { project_id, .. } => {
                entry("project.updated", "project", project_id)
            }
            ProjectsEvent::ProjectDeleted { project_id, .. } => {
                entry("project.deleted", "project", project_id)
            }
            ProjectsEvent::MemberAdded { user_id, .. } => entry("member.added", "member", user_id),
            ProjectsEvent::MemberRemoved { user_id, .. } => {
                entry("member.removed", "member", user_id)
            }
            ProjectsEvent::MemberRoleChanged { user_id, .. } => {
                entry("member.role_changed", "member", user_id)
            }
            ProjectsEvent::InvitationCreated { invitation_id, .. } => {
                entry("invitation.created", "invitation", invitation_id)
            }
            ProjectsEvent::InvitationRevoked { invitation_id, .. } => {
                entry("invitation.revoked", "invitation", invitation_id)
            }
            ProjectsEvent::InvitationAccepted { invitation_id, .. } => {
                entry("invitation.accepted", "invitation", invitation_id)
            }
            ProjectsEvent::SecretChanged { name, deleted, .. } => entry(
                if *deleted {
                    "secret.deleted"
                } else {
                    "secret.set"
                },
                "secret",
                name,
            ),
            ProjectsEvent::ApiKeyCreated { key_id, .. } => {
                entry("api_key.created", "api_key", key_id)
            }
            ProjectsEvent::ApiKeyRevoked { key_id, .. } => {
                entry("api_key.revoked", "api_key", key_id)
            }
        },
        DomainEvent::Avatars(event) => match event {
            AvatarsEvent::AvatarCreated { avatar_id, .. } => {
                entry("avatar.created", "avatar", avatar_id)
            }
            AvatarsEvent::AvatarUpdated { avatar_id, .. } => {
                entry("avatar.updated", "avatar", avatar_id)
            }
            AvatarsEvent::AvatarDeleted { avatar_id, .. } => {
                entry("avatar.deleted", "avatar", avatar_id)
            }
        },
        DomainEvent::Documents(event) => match event {
            DocumentsEvent::DocumentUploaded { document_id, .. } => {
                entry("document.uploaded", "document", document_id)
            }
            DocumentsEvent::DocumentProcessed { document_id, .. } => {
                entry("document.processed", "document", document_id)
            }
            DocumentsEvent::DocumentFailed { document_id, .. } => {
                entry("document.failed", "document", document_id)
            }
            DocumentsEvent::DocumentDeleted { document_id, .. } => {
                entry("document.deleted", "document", document_id)
            }
        },
        DomainEvent::EndUsers(event) => match event {
            EndUsersEvent::EndUserCreated { end_user_id, .. } => {
                entry("end_user.created", "end_user", end_user_id)
            }
            EndUsersEvent::EndUserBlocked { end_user_id, .. } => {
                entry("end_user.blocked", "end_user", end_user_id)
            }
            EndUsersEvent::EndUserUnblocked { end_user_id, .. } => {
                entry("end_user.unblocked", "end_user", end_user_id)
            }
            EndUsersEvent::EndUserDeleted { end_user_id, .. } => {
                entry("end_user.deleted", "end_user", end_user_id)
            }
        },
        DomainEvent::Chat(event) => match event {
            ChatEvent::ConversationStarted {
                conversation_id, ..
            } => entry("conversation.started", "conversation", conversation_id),
            ChatEvent::MessageCompleted { .. }
            | ChatEvent::QuestionUnanswered { .. }
            | ChatEvent::UsageRecorded { .. } => None,
        },
        DomainEvent::PlatformConfig(event) => match event {
            PlatformConfigEvent::PlatformConfigChanged { .. } => {
                entry("platform_config.changed", "platform_config", "platform")
            }
        },
        DomainEvent::Billing(event) => match event {
            BillingEvent::PlanCreated { code, .. } => entry("plan.created", "plan", code),
            BillingEvent::PlanUpdated { code, .. } => entry("plan.updated", "plan", code),
            BillingEvent::PlanDeleted { code, .. } => entry("plan.deleted", "plan", code),
            BillingEvent::SubscriptionStarted { project_id, .. } => {
                entry("subscription.started", "subscription", project_id)
            }
            BillingEvent::PlanChanged { project_id, .. } => {
                entry("subscription.plan_changed", "subscription", project_id)
            }
            BillingEvent::BudgetThresholdReached { project_id, .. } => entry(
                "subscription.budget_threshold_reached",
                "subscription",
                project_id,
            ),
            BillingEvent::PeriodRolledOver { project_id, .. } => entry(
                "subscription.period_rolled_over",
                "subscription",
                project_id,
            ),
        },
        DomainEvent::PlanRequests(event) => match event {
            PlanRequestsEvent::PlanRequestCreated { request_id, .. } => {
                entry("plan_request.created", "plan_request", request_id)
            }
            PlanRequestsEvent::PlanRequestResolved {
                request_id,
                approved,
                ..
            } => entry(
                if *approved {
                    "plan_request.approved"
                } else {
                    "plan_request.rejected"
                },
                "plan_request",
                request_id,
            ),
        },
        DomainEvent::Telegram(event) => match event {
            TelegramEvent::BotConnected { bot_id, .. } => {
                entry("telegram_bot.connected", "telegram_bot", bot_id)
            }
            TelegramEvent::BotDisconnected { bot_id, .. } => {
                entry("telegram_bot.disconnected", "telegram_bot", bot_id)
            }
        },
    }
}

/// Detail fields describing an end user themself, removed from the log when they are erased
/// (events carry none of them today; a channel that learns names, such as Telegram, may).
pub const END_USER_PROFILE_FIELDS: [&str; 8] = [
    "name",
    "display_name",
    "first_name",
    "last_name",
    "username",
    "external_id",
    "profile",
    "metadata",
];

/// Field names whose values are never kept, whatever event carries them.
const SECRET_FIELDS: [&str; 6] = ["value", "secret", "token", "password", "key", "api_key"];

/// The event's own fields, without what the entry holds elsewhere (`type`, `actor`,
/// `project_id`) and without anything named like a secret.
pub fn details(event_json: &Value) -> Value {
    let mut details = Map::new();
    if let Some(fields) = event_json.get("event").and_then(Value::as_object) {
        for (name, value) in fields {
            let kept = !matches!(name.as_str(), "type" | "actor" | "project_id")
                && !SECRET_FIELDS.contains(&name.as_str());
            if kept {
                details.insert(name.clone(), value.clone());
            }
        }
    }
    Value::Object(details)
}

#[cfg(test)]
mod tests {
    use super::{details, entry_of};
    use crate::core::auth::Actor;
    use crate::core::ids::{AvatarId, ProjectId};
    use crate::modules::avatars::AvatarsEvent;
    use crate::modules::events::DomainEvent;
    use crate::modules::projects::ProjectsEvent;

    #[test]
    fn an_event_maps_to_its_action_and_entity() {
        let avatar_id = AvatarId::new();
        let event = DomainEvent::Avatars(AvatarsEvent::AvatarUpdated {
            project_id: ProjectId::new(),
            avatar_id,
            fields: vec!["name".into()],
            actor: Actor::system(),
        });
        let entry = entry_of(&event).unwrap();
        assert_eq!(entry.action, "avatar.updated");
        assert_eq!(entry.entity_type, "avatar");
        assert_eq!(entry.entity_id, Some(avatar_id.to_string()));
    }

    #[test]
    fn details_keep_field_names_and_drop_anything_named_like_a_secret() {
        let event = DomainEvent::Projects(ProjectsEvent::SecretChanged {
            project_id: ProjectId::new(),
            name: "LLM_API_KEY".into(),
            deleted: false,
            actor: Actor::system(),
        });
        let mut json = serde_json::to_value(&event).unwrap();
        json["event"]["value"] = serde_json::json!("sk-should-never-appear");
        let kept = details(&json);
        assert_eq!(kept["name"], "LLM_API_KEY");
        assert!(kept.get("value").is_none());
        assert!(kept.get("actor").is_none() && kept.get("project_id").is_none());
    }
}
