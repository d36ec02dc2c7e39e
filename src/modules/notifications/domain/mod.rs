//! The notifications module's tables, failures and vocabulary.

pub(in crate::modules::notifications) mod entities;
pub(in crate::modules::notifications) mod errors;

use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a user can be told about. Project events reach the project's owners and managers
/// (`plan_request_resolved`: its owners); platform events reach saas_admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    DocumentProcessed,
    DocumentFailed,
    BudgetThresholdReached,
    PlanRequestResolved,
    /// saas_admins.
    PlanRequestCreated,
    /// saas_admins.
    UserRegistered,
}

impl NotificationEvent {
    pub const ALL: [NotificationEvent; 6] = [
        NotificationEvent::DocumentProcessed,
        NotificationEvent::DocumentFailed,
        NotificationEvent::BudgetThresholdReached,
        NotificationEvent::PlanRequestResolved,
        NotificationEvent::PlanRequestCreated,
        NotificationEvent::UserRegistered,
    ];

    /// Its name, as stored in a user's settings and in deliveries.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::DocumentProcessed => "document_processed",
            NotificationEvent::DocumentFailed => "document_failed",
            NotificationEvent::BudgetThresholdReached => "budget_threshold_reached",
            NotificationEvent::PlanRequestResolved => "plan_request_resolved",
            NotificationEvent::PlanRequestCreated => "plan_request_created",
            NotificationEvent::UserRegistered => "user_registered",
        }
    }
}

/// Where one message stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for (another) try.
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Given up: `last_error` says why.
    #[sea_orm(string_value = "failed")]
    Failed,
}
