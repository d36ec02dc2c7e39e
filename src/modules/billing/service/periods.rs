//! Monthly periods: when one ends, its usage is kept (`subscription_periods`) and the next
//! starts at zero. Periods are anchored on the subscription's start, so they do not drift.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use super::super::domain::entities::subscription;
use super::super::domain::errors::BillingError;
use super::super::domain::events::BillingEvent;
use super::{BillingService, period_bound};

/// Subscriptions rolled over per transaction.
const BATCH: u64 = 100;

impl BillingService {
    /// Rolls every subscription whose period has ended into its current one. Returns how many.
    pub async fn roll_periods(&self) -> Result<u64, BillingError> {
        let mut rolled = 0;
        loop {
            let batch = self.roll_batch().await?;
            rolled += batch;
            if batch < BATCH {
                return Ok(rolled);
            }
        }
    }

    async fn roll_batch(&self) -> Result<u64, BillingError> {
        let now = self.clock.now();
        let mut uow = self.db.begin().await?;
        let due = subscription::Entity::find()
            .filter(subscription::Column::PeriodEnd.lte(now))
            .order_by_asc(subscription::Column::PeriodEnd)
            .limit(BATCH)
            .lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            )
            .all(&*uow)
            .await?;
        let count = due.len() as u64;
        for ended in due {
            // The period that contains `now`: the first whose end is after it.
            let mut n = 1;
            while period_bound(ended.period_anchor, n) <= now {
                n += 1;
            }
            let (start, end) = (
                period_bound(ended.period_anchor, n - 1),
                period_bound(ended.period_anchor, n),
            );
            uow.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO subscription_periods \
                     (project_id, period_start, period_end, plan_code, tokens_used) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                [
                    ended.project_id.into(),
                    ended.period_start.into(),
                    ended.period_end.into(),
                    ended.plan_code.clone().into(),
                    ended.tokens_used.into(),
                ],
            ))
            .await?;
            let event = BillingEvent::PeriodRolledOver {
                project_id: ended.project_id,
                closed_start: ended.period_start,
                closed_end: ended.period_end,
                tokens_used: ended.tokens_used,
            };
            uow.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE subscriptions SET period_start = $2, period_end = $3, tokens_used = 0, \
                        threshold_announced = 0, updated_at = $4 WHERE project_id = $1",
                [
                    ended.project_id.into(),
                    start.into(),
                    end.into(),
                    now.into(),
                ],
            ))
            .await?;
            self.publish(&mut uow, event).await?;
        }
        uow.commit().await?;
        Ok(count)
    }
}
