//! The durable domain-event bus: transactional outbox, dispatcher, sweeper.
//!
//! `publish` writes the event and one delivery row per interested subscriber inside the
//! caller's unit of work, so an event exists exactly when the change that caused it does.
//! After commit the dispatcher is woken and delivers in-process; each delivery is claimed with
//! a lease in one atomic statement, so several processes never run the same one at once, and a
//! crashed process's claims expire and are taken again. Delivery is at-least-once per
//! subscriber: handlers are idempotent. A failing handler retries with exponential backoff on
//! its own row and never holds up another subscriber; after `max_attempts` its delivery stays
//! visible as `failed`. Generic over the event type: the app's closed enum lives in
//! `modules::events`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, Statement};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use uuid::Uuid;

use crate::core::clock::Clock;
use crate::core::config::EventSettings;
use crate::core::db::{Db, UnitOfWork, new_id};

/// What every event type provides: a stable name for the outbox and logs.
pub trait Event: Serialize + DeserializeOwned + Debug + Send + Sync + 'static {
    fn event_type(&self) -> &'static str;
}

/// Where an event came from, handed to each handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// 1 on the first try.
    pub attempt: i32,
}

/// A subscriber. Its `name` keys its deliveries: keep it stable across releases.
#[async_trait]
pub trait EventHandler<E: Event>: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Only events this returns true for get a delivery row.
    fn interested(&self, event: &E) -> bool;
    async fn handle(&self, event: &E, delivery: &Delivery) -> anyhow::Result<()>;
}

/// Subscribers by name.
type Handlers<E> = HashMap<&'static str, Arc<dyn EventHandler<E>>>;

/// The bus. Cheap to clone; all clones share subscribers.
pub struct EventBus<E: Event> {
    db: Db,
    settings: EventSettings,
    handlers: Arc<RwLock<Handlers<E>>>,
    /// Stamps events and judges when deliveries are due.
    clock: Arc<dyn Clock>,
}

impl<E: Event> Clone for EventBus<E> {
    fn clone(&self) -> Self {
        EventBus {
            db: self.db.clone(),
            settings: self.settings.clone(),
            handlers: self.handlers.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// Outcome of one dispatch round, for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchReport {
    pub delivered: usize,
    pub retried: usize,
    pub failed: usize,
}

impl DispatchReport {
    pub fn claimed(&self) -> usize {
        self.delivered + self.retried + self.failed
    }
}

#[derive(Debug, FromQueryResult)]
struct ClaimedDelivery {
    event_id: Uuid,
    subscriber: String,
    attempts: i32,
    payload: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl<E: Event> EventBus<E> {
    pub fn new(db: Db, settings: EventSettings, clock: Arc<dyn Clock>) -> Self {
        EventBus {
            db,
            settings,
            clock,
            handlers: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// Registers a subscriber (at start-up, before events it cares about are published).
    pub fn subscribe(&self, handler: Arc<dyn EventHandler<E>>) {
        let mut handlers = self
            .handlers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        handlers.insert(handler.name(), handler);
    }

    fn handler(&self, name: &str) -> Option<Arc<dyn EventHandler<E>>> {
        self.handlers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }

    fn subscriber_names(&self) -> Vec<String> {
        self.handlers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .map(|name| (*name).to_owned())
            .collect()
    }

    /// Writes `event` to the outbox inside `uow`. Nothing is delivered unless `uow` commits.
    pub async fn publish(&self, uow: &mut UnitOfWork, event: &E) -> Result<Uuid, DbErr> {
        let event_id = new_id();
        let payload =
            serde_json::to_value(event).map_err(|error| DbErr::Custom(error.to_string()))?;
        let subscribers: Vec<String> = {
            let handlers = self
                .handlers
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            handlers
                .values()
                .filter(|handler| handler.interested(event))
                .map(|handler| handler.name().to_owned())
                .collect()
        };
        let transaction: &sea_orm::DatabaseTransaction = uow;
        let now = self.clock.now();
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO event_outbox (id, event_type, payload, created_at) \
                 VALUES ($1, $2, $3, $4)",
                [
                    event_id.into(),
                    event.event_type().into(),
                    payload.into(),
                    now.into(),
                ],
            ))
            .await?;
        if !subscribers.is_empty() {
            transaction
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO event_deliveries (event_id, subscriber, next_attempt_at) \
                     SELECT $1, unnest($2::text[]), $3",
                    [event_id.into(), subscribers.into(), now.into()],
                ))
                .await?;
        }
        uow.mark_published();
        tracing::debug!(%event_id, event_type = event.event_type(), "event published");
        Ok(event_id)
    }

    /// Claims due deliveries and runs their handlers, repeatedly, until none are due.
    pub async fn dispatch_due(&self) -> Result<DispatchReport, DbErr> {
        let mut total = DispatchReport::default();
        loop {
            let round = self.dispatch_round().await?;
            total.delivered += round.delivered;
            total.retried += round.retried;
            total.failed += round.failed;
            if round.claimed() < self.settings.batch_size as usize {
                return Ok(total);
            }
        }
    }

    /// One batch: claim (atomically, with a lease), handle concurrently, record outcomes.
    async fn dispatch_round(&self) -> Result<DispatchReport, DbErr> {
        let names = self.subscriber_names();
        if names.is_empty() {
            return Ok(DispatchReport::default());
        }
        let claimed = ClaimedDelivery::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE event_deliveries d \
             SET locked_until = $4::timestamptz + make_interval(secs => $1), \
                 attempts = d.attempts + 1 \
             FROM event_outbox o \
             WHERE o.id = d.event_id AND (d.event_id, d.subscriber) IN ( \
                 SELECT event_id, subscriber FROM event_deliveries \
                 WHERE status = 'pending' AND next_attempt_at <= $4 \
                   AND (locked_until IS NULL OR locked_until < $4) \
                   AND subscriber = ANY($2) \
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING d.event_id, d.subscriber, d.attempts, o.payload, o.created_at",
            [
                (self.settings.lease_secs as f64).into(),
                names.into(),
                i64::from(self.settings.batch_size).into(),
                self.clock.now().into(),
            ],
        ))
        .all(self.db.connection())
        .await?;

        let outcomes = join_all(claimed.into_iter().map(|row| self.deliver(row))).await;
        let mut report = DispatchReport::default();
        for outcome in outcomes {
            match outcome? {
                Outcome::Delivered => report.delivered += 1,
                Outcome::Retried => report.retried += 1,
                Outcome::Failed => report.failed += 1,
            }
        }
        Ok(report)
    }

    async fn deliver(&self, row: ClaimedDelivery) -> Result<Outcome, DbErr> {
        let delivery = Delivery {
            event_id: row.event_id,
            occurred_at: row.created_at,
            attempt: row.attempts,
        };
        let result = match (
            self.handler(&row.subscriber),
            serde_json::from_value::<E>(row.payload),
        ) {
            (Some(handler), Ok(event)) => {
                // A handler gets the lease's time: past it, another process may claim the
                // delivery, and a hung handler must not hold up the batch.
                let lease = Duration::from_secs(self.settings.lease_secs);
                let outcome = std::panic::AssertUnwindSafe(handler.handle(&event, &delivery));
                match tokio::time::timeout(lease, futures_util::FutureExt::catch_unwind(outcome))
                    .await
                {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => Err(anyhow::anyhow!("handler panicked")),
                    Err(_) => Err(anyhow::anyhow!(
                        "handler did not finish within {} s",
                        lease.as_secs()
                    )),
                }
            }
            (None, _) => Err(anyhow::anyhow!("no subscriber named {}", row.subscriber)),
            (_, Err(error)) => Err(anyhow::anyhow!("event payload does not decode: {error}")),
        };
        let conn = self.db.connection();
        let outcome = match result {
            Ok(()) => {
                conn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE event_deliveries SET status = 'delivered', delivered_at = $4, \
                     locked_until = NULL, last_error = NULL \
                     WHERE event_id = $1 AND subscriber = $2 AND attempts = $3 AND status = 'pending'",
                    [
                        row.event_id.into(),
                        row.subscriber.clone().into(),
                        row.attempts.into(),
                        self.clock.now().into(),
                    ],
                ))
                .await?;
                Outcome::Delivered
            }
            Err(error) => {
                let message = format!("{error:#}");
                let give_up = row.attempts >= self.settings.max_attempts;
                tracing::warn!(
                    event_id = %row.event_id, subscriber = %row.subscriber, attempt = row.attempts,
                    give_up, "event handler failed: {message}"
                );
                let backoff = self.backoff(row.attempts);
                conn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE event_deliveries SET \
                       status = CASE WHEN $3 THEN 'failed' ELSE 'pending' END, \
                       next_attempt_at = $4, \
                       locked_until = NULL, last_error = $5 \
                     WHERE event_id = $1 AND subscriber = $2 AND attempts = $6 AND status = 'pending'",
                    [
                        row.event_id.into(),
                        row.subscriber.clone().into(),
                        give_up.into(),
                        (self.clock.now() + chrono::Duration::from_std(backoff).unwrap_or_default())
                            .into(),
                        message.into(),
                        row.attempts.into(),
                    ],
                ))
                .await?;
                if give_up {
                    Outcome::Failed
                } else {
                    Outcome::Retried
                }
            }
        };
        let label = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
        };
        metrics::counter!("events_deliveries_total", "subscriber" => row.subscriber, "outcome" => label)
            .increment(1);
        Ok(outcome)
    }

    /// `retry_base * 2^(attempt-1)`, capped at `retry_max`.
    fn backoff(&self, attempt: i32) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let millis = self
            .settings
            .retry_base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.settings.retry_max_ms);
        Duration::from_millis(millis)
    }

    /// The relay run by the sweeper job: delivers whatever is due (events committed by a
    /// process that died before dispatching, expired leases, retries) and deletes events
    /// that every subscriber has received, once older than the retention period.
    pub async fn sweep(&self) -> Result<DispatchReport, DbErr> {
        let report = self.dispatch_due().await?;
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "DELETE FROM event_outbox o WHERE o.created_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM event_deliveries d \
                                 WHERE d.event_id = o.id AND d.status <> 'delivered')",
                [(self.clock.now()
                    - chrono::Duration::days(i64::from(self.settings.retention_days)))
                .into()],
            ))
            .await?;
        Ok(report)
    }

    /// Runs the dispatcher until `shutdown` turns true: after each commit that published
    /// events, and every `poll_interval_ms` for retries and other processes' events.
    pub async fn run_dispatcher(self, mut shutdown: watch::Receiver<bool>) {
        let signal = self.db.commit_signal();
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(error) = self.dispatch_due().await {
                tracing::error!("event dispatch failed: {error}");
            }
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::debug!("event dispatcher stopped");
    }
}

enum Outcome {
    Delivered,
    Retried,
    Failed,
}
