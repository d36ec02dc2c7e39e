//! Plan limits on what a project keeps: avatars, documents and their storage. A slot is taken
//! in the creating module's own transaction by one conditional UPDATE of the subscription's
//! counter, so of two creations racing for the last slot exactly one gets it; a deletion frees
//! its slot the same way. Lowering a plan deletes nothing: it only refuses new creations.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};

use crate::core::db::UnitOfWork;
use crate::core::error::Failure;
use crate::core::ids::ProjectId;

use super::super::domain::errors::BillingError;
use super::BillingService;

const MEGABYTE: i64 = 1024 * 1024;

/// Something a project keeps that its plan limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Avatar,
    /// A document of `bytes` (the upload's real size).
    Document {
        bytes: u64,
    },
}

impl Slot {
    fn bytes(self) -> i64 {
        match self {
            Slot::Avatar => 0,
            Slot::Document { bytes } => i64::try_from(bytes).unwrap_or(i64::MAX),
        }
    }
}

#[derive(Debug, FromQueryResult)]
struct Room {
    avatars_count: i32,
    documents_count: i32,
    storage_bytes: i64,
    max_avatars: i32,
    max_documents: i32,
    max_storage_mb: i32,
}

impl Room {
    /// The limit `slot` would pass, if any.
    fn refusal(&self, slot: Slot) -> Option<Failure> {
        match slot {
            Slot::Avatar if self.avatars_count >= self.max_avatars => Some(Failure::PlanLimit {
                limit: "max_avatars",
                value: i64::from(self.max_avatars),
            }),
            Slot::Avatar => None,
            Slot::Document { .. } if self.documents_count >= self.max_documents => {
                Some(Failure::PlanLimit {
                    limit: "max_documents",
                    value: i64::from(self.max_documents),
                })
            }
            Slot::Document { .. }
                if self.storage_bytes.saturating_add(slot.bytes())
                    > i64::from(self.max_storage_mb).saturating_mul(MEGABYTE) =>
            {
                Some(Failure::PlanLimit {
                    limit: "max_storage_mb",
                    value: i64::from(self.max_storage_mb),
                })
            }
            Slot::Document { .. } => None,
        }
    }
}

impl BillingService {
    async fn room<C: sea_orm::ConnectionTrait>(
        conn: &C,
        project_id: ProjectId,
    ) -> Result<Room, BillingError> {
        Room::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT s.avatars_count, s.documents_count, s.storage_bytes, p.max_avatars, \
                    p.max_documents, p.max_storage_mb \
             FROM subscriptions s JOIN plans p ON p.code = s.plan_code WHERE s.project_id = $1",
            [project_id.into()],
        ))
        .one(conn)
        .await?
        .ok_or(BillingError::NotFound("project"))
    }

    /// Whether the plan has room for `slot` now — a check before expensive work (storing an
    /// upload); the binding one is [`BillingService::take_slot_in`].
    pub async fn check_room(&self, project_id: ProjectId, slot: Slot) -> Result<(), BillingError> {
        match Self::room(self.db.connection(), project_id)
            .await?
            .refusal(slot)
        {
            Some(refusal) => Err(refusal.into()),
            None => Ok(()),
        }
    }

    /// Takes a slot for `slot` inside the caller's unit of work; `PLAN_LIMIT_REACHED` naming
    /// the limit when the plan has none left.
    pub async fn take_slot_in(
        &self,
        uow: &UnitOfWork,
        project_id: ProjectId,
        slot: Slot,
    ) -> Result<(), BillingError> {
        // A slot freed between a refused take and the look at the counters shows room: try
        // again (a few times; each refusal means another transaction just took a slot).
        for _ in 0..3 {
            if self.try_take_slot(uow, project_id, slot).await? {
                return Ok(());
            }
            if let Some(refusal) = Self::room(&**uow, project_id).await?.refusal(slot) {
                return Err(refusal.into());
            }
        }
        Err(BillingError::internal(
            "a plan slot was refused three times with room left",
        ))
    }

    /// One conditional take of a slot: whether it was taken.
    async fn try_take_slot(
        &self,
        uow: &UnitOfWork,
        project_id: ProjectId,
        slot: Slot,
    ) -> Result<bool, BillingError> {
        let now = self.clock.now();
        let taken = match slot {
            Slot::Avatar => {
                uow.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE subscriptions s SET avatars_count = s.avatars_count + 1, \
                            updated_at = $2 \
                     FROM plans p WHERE s.project_id = $1 AND p.code = s.plan_code \
                       AND s.avatars_count < p.max_avatars",
                    [project_id.into(), now.into()],
                ))
                .await?
            }
            Slot::Document { .. } => {
                uow.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE subscriptions s SET documents_count = s.documents_count + 1, \
                            storage_bytes = s.storage_bytes + $3, updated_at = $2 \
                     FROM plans p WHERE s.project_id = $1 AND p.code = s.plan_code \
                       AND s.documents_count < p.max_documents \
                       AND s.storage_bytes + $3 <= p.max_storage_mb::bigint * $4",
                    [
                        project_id.into(),
                        now.into(),
                        slot.bytes().into(),
                        MEGABYTE.into(),
                    ],
                ))
                .await?
            }
        };
        Ok(taken.rows_affected() == 1)
    }

    /// Gives back the slot of a deleted avatar or document, inside the caller's unit of work.
    pub async fn free_slot_in(
        &self,
        uow: &UnitOfWork,
        project_id: ProjectId,
        slot: Slot,
    ) -> Result<(), BillingError> {
        let now = self.clock.now();
        let statement = match slot {
            Slot::Avatar => Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE subscriptions SET avatars_count = greatest(avatars_count - 1, 0), \
                        updated_at = $2 WHERE project_id = $1",
                [project_id.into(), now.into()],
            ),
            Slot::Document { .. } => Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE subscriptions SET documents_count = greatest(documents_count - 1, 0), \
                        storage_bytes = greatest(storage_bytes - $3, 0), updated_at = $2 \
                 WHERE project_id = $1",
                [project_id.into(), now.into(), slot.bytes().into()],
            ),
        };
        uow.execute_raw(statement).await?;
        Ok(())
    }

    /// The plan's chat requests per minute for the project.
    pub async fn requests_per_minute(&self, project_id: ProjectId) -> Result<u32, BillingError> {
        #[derive(FromQueryResult)]
        struct Rate {
            requests_per_minute: i32,
        }
        let rate = Rate::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT p.requests_per_minute FROM subscriptions s \
             JOIN plans p ON p.code = s.plan_code WHERE s.project_id = $1",
            [project_id.into()],
        ))
        .one(self.db.connection())
        .await?
        .ok_or(BillingError::NotFound("project"))?;
        Ok(u32::try_from(rate.requests_per_minute).unwrap_or(0))
    }
}
