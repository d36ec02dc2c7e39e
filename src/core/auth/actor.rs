//! Who did something.

use serde::{Deserialize, Serialize};

use crate::core::ids::{ApiKeyId, UserId};

use crate::core::telemetry::current_request_id;

/// Who did something, as events and the audit log record it: a user, a project API key, an
/// anonymous client (registration) or the platform itself (no user, no key), with the client
/// IP and the request id when a request caused it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: Option<UserId>,
    /// The project API key the request was made with (the public API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<ApiKeyId>,
    pub ip: Option<String>,
    /// The request's `X-Request-Id`, to find its log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// What kind of actor an [`Actor`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    ApiKey,
    Anonymous,
    System,
}

impl Actor {
    /// The platform itself (jobs, the CLI).
    pub fn system() -> Self {
        Actor::default()
    }

    /// A signed-in user, in the current request (if any).
    pub fn user(user_id: UserId, ip: Option<String>) -> Self {
        Actor {
            user_id: Some(user_id),
            ip,
            request_id: current_request_id(),
            ..Actor::default()
        }
    }

    /// A project API key, in the current request.
    pub fn api_key(api_key_id: ApiKeyId, ip: Option<String>) -> Self {
        Actor {
            api_key_id: Some(api_key_id),
            ip,
            request_id: current_request_id(),
            ..Actor::default()
        }
    }

    /// A client that is not signed in (registration), in the current request.
    pub fn anonymous(ip: Option<String>) -> Self {
        Actor {
            ip,
            request_id: current_request_id(),
            ..Actor::default()
        }
    }

    pub fn kind(&self) -> ActorKind {
        match (self.user_id, self.api_key_id) {
            (Some(_), _) => ActorKind::User,
            (None, Some(_)) => ActorKind::ApiKey,
            (None, None) if self.ip.is_some() || self.request_id.is_some() => ActorKind::Anonymous,
            (None, None) => ActorKind::System,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Actor, ActorKind};
    use crate::core::ids::{ApiKeyId, UserId};

    #[test]
    fn an_actor_says_what_kind_it_is() {
        assert_eq!(Actor::system().kind(), ActorKind::System);
        assert_eq!(Actor::user(UserId::new(), None).kind(), ActorKind::User);
        assert_eq!(
            Actor::api_key(ApiKeyId::new(), None).kind(),
            ActorKind::ApiKey
        );
        assert_eq!(
            Actor::anonymous(Some("203.0.113.9".into())).kind(),
            ActorKind::Anonymous
        );
    }

    #[test]
    fn actors_stored_before_api_keys_and_request_ids_still_read() {
        let user = UserId::new();
        let old: Actor =
            serde_json::from_value(serde_json::json!({"user_id": user.uuid(), "ip": "127.0.0.1"}))
                .unwrap();
        assert_eq!(old, Actor::user(user, Some("127.0.0.1".into())));
        let key = ApiKeyId::new();
        let written = serde_json::to_value(Actor::api_key(key, None)).unwrap();
        assert_eq!(
            written,
            serde_json::json!({"user_id": null, "api_key_id": key.uuid(), "ip": null})
        );
    }
}
