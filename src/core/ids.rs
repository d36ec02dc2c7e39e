//! Typed ids: one newtype over a UUID per kind of thing, so a project id can't be passed where an
//! avatar id is expected. They are stored as `uuid` columns (entities use them directly), bound
//! into queries as they are (`Column::ProjectId.eq(project_id)`), and serialise as the bare UUID
//! (paths, JSON bodies and stored events look as they did with plain `Uuid`s).
//!
//! There is deliberately no `From<Uuid>`: turning a bare UUID into an id is spelled out
//! (`ProjectId::from_uuid`) at the few edges where one arrives untyped.

use std::fmt;

use sea_orm::{DbErr, DeriveValueType, TryFromU64};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            DeriveValueType,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7: new rows land at the end of their index).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// An id that arrived as a bare UUID (a token's claim, a raw query's column).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        // Entities' primary keys need it; a UUID never comes from an integer.
        impl TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, DbErr> {
                Err(DbErr::ConvertFromU64(stringify!($name)))
            }
        }
    )+};
}

ids! {
    /// A user account (`users.id`).
    UserId;
    /// A project (tenant).
    ProjectId;
    /// A project API key.
    ApiKeyId;
    /// An invitation to a project.
    InvitationId;
    /// An avatar of a project.
    AvatarId;
    /// A document of an avatar.
    DocumentId;
    /// An end user of a project (a chat client: widget visitor, Telegram user, API caller).
    EndUserId;
    /// A conversation with an avatar.
    ConversationId;
    /// A message of a conversation.
    MessageId;
    /// A project owner's request for another plan.
    PlanRequestId;
}

#[cfg(test)]
mod tests {
    use super::{AvatarId, ProjectId};
    use uuid::Uuid;

    #[test]
    fn an_id_serialises_as_its_bare_uuid() {
        let uuid = Uuid::now_v7();
        let id = ProjectId::from_uuid(uuid);
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            serde_json::json!(uuid.to_string())
        );
        let back: AvatarId = serde_json::from_value(serde_json::json!(uuid.to_string())).unwrap();
        assert_eq!(back.uuid(), uuid);
        assert_eq!(id.to_string(), uuid.to_string());
    }
}
