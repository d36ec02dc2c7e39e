//! The token budget the pipeline asks before answering and settles after. Billing fills it in
//! (plans, periods, limits); until then [`Unmetered`] grants everything — but the calls, their
//! amounts and the settle with the real usage are in place.

use async_trait::async_trait;
use uuid::Uuid;

use crate::core::ids::ProjectId;
use crate::core::llm::Usage;

/// Tokens set aside for one answer until it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub tokens: u32,
}

#[async_trait]
pub trait TokenBudget: Send + Sync + 'static {
    /// Sets aside up to `tokens` for an answer of `project_id`; `Err` says why not (402).
    async fn reserve(&self, project_id: ProjectId, tokens: u32) -> Result<Reservation, String>;

    /// Replaces the reservation with what the answer really used (zero when it failed).
    async fn settle(&self, reservation: &Reservation, usage: Usage) -> Result<(), String>;
}

/// The budget until billing provides one: always granted.
pub struct Unmetered;

#[async_trait]
impl TokenBudget for Unmetered {
    async fn reserve(&self, project_id: ProjectId, tokens: u32) -> Result<Reservation, String> {
        Ok(Reservation {
            id: Uuid::now_v7(),
            project_id,
            tokens,
        })
    }

    async fn settle(&self, _reservation: &Reservation, _usage: Usage) -> Result<(), String> {
        Ok(())
    }
}
