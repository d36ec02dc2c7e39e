//! What the plan_requests module tells the others.

use serde::{Deserialize, Serialize};

use crate::core::auth::Actor;
use crate::core::ids::{PlanRequestId, ProjectId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlanRequestsEvent {
    PlanRequestCreated {
        request_id: PlanRequestId,
        project_id: ProjectId,
        plan_code: String,
        actor: Actor,
    },
    /// Approved (the plan changed in the same transaction) or rejected.
    PlanRequestResolved {
        request_id: PlanRequestId,
        project_id: ProjectId,
        plan_code: String,
        approved: bool,
        actor: Actor,
    },
}

impl PlanRequestsEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            PlanRequestsEvent::PlanRequestCreated { .. } => "plan_requests.plan_request_created",
            PlanRequestsEvent::PlanRequestResolved { .. } => "plan_requests.plan_request_resolved",
        }
    }
}
