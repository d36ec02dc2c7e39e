//! Every domain event of the platform, one variant per module enum.
//!
//! Modules add their `domain::events` enum here as they are built (auth, projects, avatars,
//! documents, chat, billing, ...); the outbox stores these as JSON, so variant names are part
//! of the stored format: rename with a migration, never silently.

use serde::{Deserialize, Serialize};

use crate::core::events::Event;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "module", content = "event", rename_all = "snake_case")]
pub enum DomainEvent {}

impl Event for DomainEvent {
    fn event_type(&self) -> &'static str {
        match *self {}
    }
}
