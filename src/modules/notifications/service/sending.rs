//! From domain events to messages: each event the module reads becomes one short text for the
//! users it concerns who linked a chat and want that event; each message is a delivery row
//! with its own job (enqueued in the same transaction, once per event and user however often
//! the event is delivered), sent by the notifications bot and retried with backoff. A failure
//! is recorded on the row and never reaches the request that caused the event.

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, Statement};
use uuid::Uuid;

use crate::core::auth::ProjectRole;
use crate::core::db::new_id;
use crate::core::error::Failure;
use crate::core::events::Delivery;
use crate::core::ids::{ProjectId, UserId};
use crate::core::jobs::enqueue_in;
use crate::core::telegram::BotApiError;
use crate::modules::auth::AuthEvent;
use crate::modules::billing::BillingEvent;
use crate::modules::documents::DocumentsEvent;
use crate::modules::events::DomainEvent;
use crate::modules::plan_requests::PlanRequestsEvent;

use super::super::domain::entities::delivery;
use super::super::domain::errors::NotificationsError;
use super::super::domain::{DeliveryStatus, NotificationEvent};
use super::super::tasks::Deliver;
use super::NotificationsService;

/// One message to send.
pub(super) struct Message {
    /// What it answers: with the recipient, it is sent once.
    pub event_id: Uuid,
    /// A [`NotificationEvent`] name, or `link`.
    pub kind: &'static str,
    pub text: String,
}

/// A message and who it concerns.
struct Notice {
    event: NotificationEvent,
    recipients: Vec<UserId>,
    text: String,
}

#[derive(FromQueryResult)]
struct Recipient {
    user_id: UserId,
    telegram_chat_id: i64,
}

/// The longest piece of free text (a failure's reason) a notification quotes.
const QUOTE_CHARS: usize = 300;

fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTE_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

/// Whether the module reads `event`.
pub(in crate::modules::notifications) fn concerns(event: &DomainEvent) -> bool {
    matches!(
        event,
        DomainEvent::Documents(
            DocumentsEvent::DocumentProcessed { .. } | DocumentsEvent::DocumentFailed { .. }
        ) | DomainEvent::Billing(BillingEvent::BudgetThresholdReached { .. })
            | DomainEvent::PlanRequests(_)
            | DomainEvent::Auth(AuthEvent::UserRegistered { .. })
    )
}

impl NotificationsService {
    /// Queues `event`'s message for each user it concerns who linked a chat and wants it.
    pub async fn notify(
        &self,
        event: &DomainEvent,
        delivery: &Delivery,
    ) -> Result<usize, NotificationsError> {
        let Some(notice) = self.notice(event).await? else {
            return Ok(0);
        };
        if notice.recipients.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = notice.recipients.iter().map(ToString::to_string).collect();
        let recipients = Recipient::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT user_id, telegram_chat_id FROM notification_settings \
             WHERE user_id IN (SELECT value::uuid FROM jsonb_array_elements_text($1)) \
               AND telegram_chat_id IS NOT NULL AND events ? $2",
            [serde_json::json!(ids).into(), notice.event.as_str().into()],
        ))
        .all(self.db.connection())
        .await?;
        if recipients.is_empty() {
            return Ok(0);
        }
        let message = Message {
            event_id: delivery.event_id,
            kind: notice.event.as_str(),
            text: notice.text,
        };
        let uow = self.db.begin().await?;
        let mut queued = 0;
        for recipient in &recipients {
            queued += usize::from(
                self.queue_delivery(
                    &*uow,
                    &message,
                    Some(recipient.user_id),
                    recipient.telegram_chat_id,
                )
                .await?,
            );
        }
        uow.commit().await?;
        Ok(queued)
    }

    /// Stores `message` for `chat_id` with its job, unless it was queued for this user before.
    /// Returns whether it was new.
    pub(super) async fn queue_delivery(
        &self,
        conn: &impl ConnectionTrait,
        message: &Message,
        user_id: Option<UserId>,
        chat_id: i64,
    ) -> Result<bool, NotificationsError> {
        let id = new_id();
        let now = self.clock.now();
        let stored = conn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO notification_deliveries (id, event_id, user_id, chat_id, kind, \
                     text, status, attempts, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7) \
                 ON CONFLICT (event_id, user_id) DO NOTHING",
                [
                    id.into(),
                    message.event_id.into(),
                    user_id.into(),
                    chat_id.into(),
                    message.kind.into(),
                    message.text.clone().into(),
                    now.into(),
                ],
            ))
            .await?
            .rows_affected()
            > 0;
        if stored {
            enqueue_in(conn, &Deliver { delivery_id: id }, now).await?;
        }
        Ok(stored)
    }

    /// The message `event` means and who it concerns (none: not one the module reads).
    async fn notice(&self, event: &DomainEvent) -> Result<Option<Notice>, NotificationsError> {
        let staff = [ProjectRole::Owner, ProjectRole::Manager];
        Ok(Some(match event {
            DomainEvent::Documents(DocumentsEvent::DocumentProcessed {
                project_id,
                avatar_id,
                document_id,
                chunks_count,
                ..
            }) => {
                let filename = self.filename(*project_id, *avatar_id, *document_id).await;
                Notice {
                    event: NotificationEvent::DocumentProcessed,
                    recipients: self.members(*project_id, &staff).await?,
                    text: format!(
                        "📄 {filename} is ready in {}: {chunks_count} chunks to answer from.",
                        self.project_name(*project_id).await?
                    ),
                }
            }
            DomainEvent::Documents(DocumentsEvent::DocumentFailed {
                project_id,
                avatar_id,
                document_id,
                reason,
            }) => {
                let filename = self.filename(*project_id, *avatar_id, *document_id).await;
                Notice {
                    event: NotificationEvent::DocumentFailed,
                    recipients: self.members(*project_id, &staff).await?,
                    text: format!(
                        "⚠️ {filename} could not be processed in {}: {}",
                        self.project_name(*project_id).await?,
                        quote(reason)
                    ),
                }
            }
            DomainEvent::Billing(BillingEvent::BudgetThresholdReached {
                project_id,
                percent,
                tokens_used,
                tokens_limit,
                period_end,
            }) => Notice {
                event: NotificationEvent::BudgetThresholdReached,
                recipients: self.members(*project_id, &staff).await?,
                text: format!(
                    "📊 {} has used {percent}% of its tokens for this period ({tokens_used} of \
                     {tokens_limit}); the period ends {}.",
                    self.project_name(*project_id).await?,
                    period_end.format("%Y-%m-%d %H:%M UTC")
                ),
            },
            DomainEvent::PlanRequests(PlanRequestsEvent::PlanRequestResolved {
                project_id,
                plan_code,
                approved,
                ..
            }) => {
                let project = self.project_name(*project_id).await?;
                Notice {
                    event: NotificationEvent::PlanRequestResolved,
                    recipients: self.members(*project_id, &[ProjectRole::Owner]).await?,
                    text: if *approved {
                        format!(
                            "✅ {project} is on the {plan_code} plan now: your request was approved."
                        )
                    } else {
                        format!(
                            "❌ Your request to move {project} to the {plan_code} plan was declined."
                        )
                    },
                }
            }
            DomainEvent::PlanRequests(PlanRequestsEvent::PlanRequestCreated {
                project_id,
                plan_code,
                ..
            }) => Notice {
                event: NotificationEvent::PlanRequestCreated,
                recipients: self.saas_admins().await?,
                text: format!(
                    "🆙 {} asks for the {plan_code} plan: review it among the plan requests.",
                    self.project_name(*project_id).await?
                ),
            },
            DomainEvent::Auth(AuthEvent::UserRegistered { user_id, email, .. }) => Notice {
                event: NotificationEvent::UserRegistered,
                recipients: self
                    .saas_admins()
                    .await?
                    .into_iter()
                    .filter(|admin| admin != user_id)
                    .collect(),
                text: format!("👤 New account: {email}."),
            },
            _ => return Ok(None),
        }))
    }

    async fn members(
        &self,
        project_id: ProjectId,
        roles: &[ProjectRole],
    ) -> Result<Vec<UserId>, NotificationsError> {
        let members = self
            .projects
            .member_ids(project_id, roles)
            .await
            .map_err(Failure::from)?;
        // A deactivated user keeps their memberships but hears nothing.
        Ok(self
            .auth
            .active_ids(&members)
            .await
            .map_err(Failure::from)?)
    }

    async fn saas_admins(&self) -> Result<Vec<UserId>, NotificationsError> {
        Ok(self.auth.saas_admin_ids().await.map_err(Failure::from)?)
    }

    async fn project_name(&self, project_id: ProjectId) -> Result<String, NotificationsError> {
        let names = self
            .projects
            .names(&[project_id])
            .await
            .map_err(Failure::from)?;
        Ok(names
            .get(&project_id)
            .map_or_else(|| "A project".to_owned(), |name| format!("“{name}”")))
    }

    /// The document's name, quoted (`A document` when it is gone).
    async fn filename(
        &self,
        project_id: ProjectId,
        avatar_id: crate::core::ids::AvatarId,
        document_id: crate::core::ids::DocumentId,
    ) -> String {
        match self.documents.get(project_id, avatar_id, document_id).await {
            Ok(document) => format!("“{}”", document.filename),
            Err(_) => "A document".to_owned(),
        }
    }

    /// Sends the delivery `delivery_id` (the `notifications.deliver` job). A failure worth
    /// trying again is returned (the job retries it with backoff) until
    /// `notifications.delivery_attempts`; then, or when trying again cannot help, the row is
    /// marked failed with the reason.
    pub async fn deliver(&self, delivery_id: Uuid) -> Result<(), NotificationsError> {
        let Some(row) = delivery::Entity::find_by_id(delivery_id)
            .one(self.db.connection())
            .await?
        else {
            return Ok(());
        };
        if row.status != DeliveryStatus::Pending {
            return Ok(());
        }
        let attempts = row.attempts + 1;
        let Some((_, api)) = self.bot_api().await? else {
            let reason = "the platform has no notifications bot (notifications_bot_token)";
            return self
                .record(&row, DeliveryStatus::Failed, attempts, Some(reason.into()))
                .await;
        };
        match api.send_text(row.chat_id, &row.text).await {
            Ok(_) => {
                self.record(&row, DeliveryStatus::Sent, attempts, None)
                    .await
            }
            Err(BotApiError::Forbidden(description)) => {
                // The user blocked the bot (or left the group): nothing more goes there.
                unlink_chat(self.db.connection(), row.chat_id, self.clock.now()).await?;
                let reason = format!("{description} (the chat was unlinked)");
                self.record(&row, DeliveryStatus::Failed, attempts, Some(reason))
                    .await
            }
            Err(error @ BotApiError::Rejected { .. }) => {
                self.record(
                    &row,
                    DeliveryStatus::Failed,
                    attempts,
                    Some(error.to_string()),
                )
                .await
            }
            Err(error) => {
                let limit = i32::try_from(self.settings.delivery_attempts).unwrap_or(i32::MAX);
                let status = if attempts >= limit {
                    DeliveryStatus::Failed
                } else {
                    DeliveryStatus::Pending
                };
                self.record(&row, status, attempts, Some(error.to_string()))
                    .await?;
                match status {
                    DeliveryStatus::Pending => Err(NotificationsError::internal(error)),
                    _ => Ok(()),
                }
            }
        }
    }

    async fn record(
        &self,
        row: &delivery::Model,
        status: DeliveryStatus,
        attempts: i32,
        error: Option<String>,
    ) -> Result<(), NotificationsError> {
        let sent_at = (status == DeliveryStatus::Sent).then(|| self.clock.now());
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE notification_deliveries SET status = $2, attempts = $3, \
                     last_error = $4, sent_at = $5 WHERE id = $1",
                [
                    row.id.into(),
                    sea_orm::Value::from(status),
                    attempts.into(),
                    error.into(),
                    sent_at.into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Deletes deliveries older than `notifications.delivery_retention_days` (pending ones
    /// too: their job has long given up) and received updates older than a day.
    pub async fn forget_old(&self) -> Result<u64, NotificationsError> {
        let now = self.clock.now();
        let keep = chrono::Duration::days(i64::from(self.settings.delivery_retention_days));
        let deliveries = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "DELETE FROM notification_deliveries WHERE created_at < $1",
                [(now - keep).into()],
            ))
            .await?
            .rows_affected();
        // Telegram redelivers an unacknowledged update for a day at most.
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "DELETE FROM notification_bot_updates WHERE received_at < $1",
                [(now - chrono::Duration::days(2)).into()],
            ))
            .await?;
        Ok(deliveries)
    }
}

/// Unlinks whoever linked `chat_id` (`/stop` in it, or Telegram's 403 for it); how many were.
pub(super) async fn unlink_chat(
    conn: &impl ConnectionTrait,
    chat_id: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, sea_orm::DbErr> {
    Ok(conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE notification_settings SET telegram_chat_id = NULL, linked_at = NULL, \
                 updated_at = $2 WHERE telegram_chat_id = $1",
            [chat_id.into(), now.into()],
        ))
        .await?
        .rows_affected())
}
