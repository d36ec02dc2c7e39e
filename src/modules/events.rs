//! Every domain event of the platform: one variant per module, holding that module's enum.
//!
//! The outbox stores these as JSON (`{"module": ..., "event": {"type": ..., ...}}`), so names
//! are part of the stored format: rename with a migration, never silently.

use serde::{Deserialize, Serialize};

use crate::core::events::Event;
use crate::modules::auth::AuthEvent;
use crate::modules::avatars::AvatarsEvent;
use crate::modules::billing::BillingEvent;
use crate::modules::chat::ChatEvent;
use crate::modules::documents::DocumentsEvent;
use crate::modules::end_users::EndUsersEvent;
use crate::modules::plan_requests::PlanRequestsEvent;
use crate::modules::platform_config::PlatformConfigEvent;
use crate::modules::projects::ProjectsEvent;
use crate::modules::telegram::TelegramEvent;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "module", content = "event", rename_all = "snake_case")]
pub enum DomainEvent {
    Auth(AuthEvent),
    Projects(ProjectsEvent),
    Avatars(AvatarsEvent),
    Documents(DocumentsEvent),
    EndUsers(EndUsersEvent),
    Chat(ChatEvent),
    PlatformConfig(PlatformConfigEvent),
    Billing(BillingEvent),
    PlanRequests(PlanRequestsEvent),
    Telegram(TelegramEvent),
}

impl Event for DomainEvent {
    fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::Auth(event) => event.event_type(),
            DomainEvent::Projects(event) => event.event_type(),
            DomainEvent::Avatars(event) => event.event_type(),
            DomainEvent::Documents(event) => event.event_type(),
            DomainEvent::EndUsers(event) => event.event_type(),
            DomainEvent::Chat(event) => event.event_type(),
            DomainEvent::PlatformConfig(event) => event.event_type(),
            DomainEvent::Billing(event) => event.event_type(),
            DomainEvent::PlanRequests(event) => event.event_type(),
            DomainEvent::Telegram(event) => event.event_type(),
        }
    }
}
