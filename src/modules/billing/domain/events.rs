//! What the billing module tells the others.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::auth::Actor;
use crate::core::ids::ProjectId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BillingEvent {
    PlanCreated {
        code: String,
        actor: Actor,
    },
    /// A plan of the catalogue changed (`fields` names what).
    PlanUpdated {
        code: String,
        fields: Vec<String>,
        actor: Actor,
    },
    PlanDeleted {
        code: String,
        actor: Actor,
    },
    /// A new project's subscription, on the default plan.
    SubscriptionStarted {
        project_id: ProjectId,
        plan_code: String,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
    },
    /// The project's plan changed; its limits apply at once, its period stays.
    PlanChanged {
        project_id: ProjectId,
        from: String,
        to: String,
        actor: Actor,
    },
    /// The period's used tokens reached `percent` (80, then 100) of the plan's budget: once per
    /// period each.
    BudgetThresholdReached {
        project_id: ProjectId,
        percent: i16,
        tokens_used: i64,
        tokens_limit: i64,
        period_end: DateTime<Utc>,
    },
    /// A period ended: its usage is kept, the new one starts at zero.
    PeriodRolledOver {
        project_id: ProjectId,
        closed_start: DateTime<Utc>,
        closed_end: DateTime<Utc>,
        tokens_used: i64,
    },
}

impl BillingEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            BillingEvent::PlanCreated { .. } => "billing.plan_created",
            BillingEvent::PlanUpdated { .. } => "billing.plan_updated",
            BillingEvent::PlanDeleted { .. } => "billing.plan_deleted",
            BillingEvent::SubscriptionStarted { .. } => "billing.subscription_started",
            BillingEvent::PlanChanged { .. } => "billing.plan_changed",
            BillingEvent::BudgetThresholdReached { .. } => "billing.budget_threshold_reached",
            BillingEvent::PeriodRolledOver { .. } => "billing.period_rolled_over",
        }
    }
}
