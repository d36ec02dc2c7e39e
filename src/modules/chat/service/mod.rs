//! Conversations and their messages, and the start of every answer: the checks, the token
//! reservation and the user's message, before the pipeline (`pipeline.rs`) answers in the
//! background and reports through a channel — the same for the HTTP routes (JSON or SSE) and,
//! later, Telegram.
//!
//! Asking — the checks, the reservation, the stored question, then the answer handed to the
//! pipeline — is in `asking.rs`.

mod asking;
mod history;

pub use asking::{Answer, Thread};
pub use history::{ConversationRecord, MessageRecord};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter,
    QueryOrder, SqlErr,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::auth::Actor;
use crate::core::cache::RateLimiter;
use crate::core::channel::Channel;
use crate::core::clock::Clock;
use crate::core::config::ChatSettings;
use crate::core::db::Db;
use crate::core::error::Failure;
use crate::core::events::EventBus;
use crate::core::ids::{AvatarId, ConversationId, DocumentId, EndUserId, MessageId, ProjectId};
use crate::core::llm::Usage;
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::modules::avatars::AvatarsService;
use crate::modules::avatars::{AvatarStatus, AvatarView};
use crate::modules::chat::domain::MessageRole;
use crate::modules::documents::DocumentsService;
use crate::modules::end_users::EndUsersService;
use crate::modules::events::DomainEvent;

use super::domain::entities::{conversation, message};
use super::domain::errors::ChatError;
use super::domain::events::ChatEvent;
use super::model_choice::ModelSource;
use crate::modules::billing::BillingService;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationView {
    #[schema(value_type = uuid::Uuid)]
    pub id: ConversationId,
    #[schema(value_type = uuid::Uuid)]
    pub avatar_id: AvatarId,
    #[schema(value_type = String)]
    pub channel: Channel,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub end_user_id: Option<EndUserId>,
    pub title: Option<String>,
    pub messages_count: i32,
    pub last_message_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

fn conversation_view(model: &conversation::Model) -> ConversationView {
    ConversationView {
        id: model.id,
        avatar_id: model.avatar_id,
        channel: model.channel,
        end_user_id: model.end_user_id,
        title: model.title.clone(),
        messages_count: model.messages_count,
        last_message_at: model.last_message_at,
        created_at: model.created_at,
    }
}

/// A passage an answer drew on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceRef {
    #[schema(value_type = uuid::Uuid)]
    pub document_id: DocumentId,
    pub filename: String,
    pub chunk_id: Uuid,
    pub score: f64,
    /// `null` when the passage was found by its text before its vector was computed.
    pub similarity: Option<f64>,
    pub page: Option<i32>,
}

/// Where an answer's time went, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Timings {
    pub retrieval_ms: u32,
    /// From the request to the first token of the answer (none if nothing came).
    pub time_to_first_token_ms: Option<u32>,
    pub total_ms: u32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    #[schema(value_type = uuid::Uuid)]
    pub id: MessageId,
    #[schema(value_type = uuid::Uuid)]
    pub conversation_id: ConversationId,
    /// `user` or `assistant`.
    #[schema(value_type = String)]
    pub role: MessageRole,
    pub content: String,
    pub sources: Vec<SourceRef>,
    pub usage: Usage,
    pub model: Option<String>,
    /// `stop`, `length`, `client_disconnected`, `error`, ... (assistant messages).
    pub finish_reason: Option<String>,
    pub timings: Option<Timings>,
    #[schema(value_type = Object)]
    pub message_metadata: Value,
    pub created_at: DateTime<Utc>,
}

/// A count or duration stored as `integer`, as the API shows it.
/// `what`, which a row being written refers to, was deleted meanwhile: a foreign key refused
/// the row, so nothing of it remains. Other database errors pass as they are.
fn gone(error: DbErr, what: &'static str) -> ChatError {
    match error.sql_err() {
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => ChatError::NotFound(what),
        _ => ChatError::from(error),
    }
}

fn non_negative(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

pub(super) fn message_view(model: &message::Model) -> MessageView {
    let timings = model.total_ms.map(|total| Timings {
        retrieval_ms: non_negative(model.retrieval_ms.unwrap_or(0)),
        time_to_first_token_ms: model.time_to_first_token_ms.map(non_negative),
        total_ms: non_negative(total),
    });
    MessageView {
        id: model.id,
        conversation_id: model.conversation_id,
        role: model.role,
        content: model.content.clone(),
        sources: serde_json::from_value(model.sources.clone()).unwrap_or_default(),
        usage: Usage {
            prompt_tokens: non_negative(model.prompt_tokens),
            completion_tokens: non_negative(model.completion_tokens),
        },
        model: model.model.clone(),
        finish_reason: model.finish_reason.clone(),
        timings,
        message_metadata: model.message_metadata.clone(),
        created_at: model.created_at,
    }
}

/// List filters of conversations.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub avatar_id: Option<AvatarId>,
    pub end_user_id: Option<EndUserId>,
    pub channel: Option<Channel>,
}

pub struct ChatService {
    pub(super) db: Db,
    pub(super) bus: EventBus<DomainEvent>,
    pub(super) avatars: Arc<AvatarsService>,
    pub(super) documents: Arc<DocumentsService>,
    pub(super) end_users: Arc<EndUsersService>,
    pub(super) models: ModelSource,
    /// Token budgets: reserved before an answer, settled with the answer.
    pub(super) billing: Arc<BillingService>,
    pub(super) settings: ChatSettings,
    pub(super) clock: Arc<dyn Clock>,
    /// Counts chat requests against the plan's requests per minute, per project.
    pub(super) limiter: RateLimiter,
}

/// The other modules' services chat works with.
pub struct ChatPeers {
    pub avatars: Arc<AvatarsService>,
    pub documents: Arc<DocumentsService>,
    pub end_users: Arc<EndUsersService>,
    pub billing: Arc<BillingService>,
}

/// One more message in the conversation.
pub(super) async fn bump_conversation<C: sea_orm::ConnectionTrait>(
    conn: &C,
    conversation_id: ConversationId,
    at: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::MessagesCount,
            Expr::col(conversation::Column::MessagesCount).add(1),
        )
        .col_expr(conversation::Column::LastMessageAt, Expr::value(at))
        .col_expr(conversation::Column::UpdatedAt, Expr::value(at))
        .filter(conversation::Column::Id.eq(conversation_id))
        .exec(conn)
        .await?;
    Ok(())
}

impl ChatService {
    pub fn new(
        db: Db,
        bus: EventBus<DomainEvent>,
        peers: ChatPeers,
        models: ModelSource,
        settings: ChatSettings,
        clock: Arc<dyn Clock>,
        limiter: RateLimiter,
    ) -> Self {
        ChatService {
            db,
            bus,
            avatars: peers.avatars,
            documents: peers.documents,
            end_users: peers.end_users,
            billing: peers.billing,
            models,
            settings,
            clock,
            limiter,
        }
    }

    /// Counts a chat request of `project_id` against its plan's requests per minute (shared
    /// by every process through the cache; in-process while Redis is away).
    pub(super) async fn within_plan_rate(&self, project_id: ProjectId) -> Result<(), ChatError> {
        let limit = self
            .billing
            .requests_per_minute(project_id)
            .await
            .map_err(|error| ChatError::Common(error.into()))?;
        let decision = self
            .limiter
            .check(
                &format!("plan-chat:{project_id}"),
                limit,
                std::time::Duration::from_secs(60),
            )
            .await
            .map_err(ChatError::internal)?;
        if decision.allowed {
            Ok(())
        } else {
            Err(ChatError::PlanRate {
                limit,
                retry_after_secs: decision.retry_after_seconds(),
            })
        }
    }

    pub fn settings(&self) -> &ChatSettings {
        &self.settings
    }

    async fn avatar(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<AvatarView, ChatError> {
        self.avatars
            .get(project_id, avatar_id)
            .await
            .map_err(|error| match Failure::from(error) {
                Failure::NotFound(_) => ChatError::NotFound("avatar"),
                other => other.into(),
            })
    }

    /// An avatar that may answer now.
    async fn active_avatar(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<AvatarView, ChatError> {
        let avatar = self.avatar(project_id, avatar_id).await?;
        if avatar.status != AvatarStatus::Active {
            return Err(ChatError::AvatarDisabled);
        }
        Ok(avatar)
    }

    /// The question, trimmed, if it is 1 to `chat.max_message_chars` characters.
    fn checked_content(&self, content: &str) -> Result<String, ChatError> {
        let content = content.trim();
        if content.is_empty() || content.chars().count() > self.settings.max_message_chars {
            return Err(ChatError::invalid(
                "content",
                format!(
                    "must be 1 to {} characters",
                    self.settings.max_message_chars
                ),
            ));
        }
        Ok(content.to_owned())
    }

    async fn start_conversation(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        channel: Channel,
        end_user_id: Option<EndUserId>,
        title: Option<String>,
        actor: Actor,
    ) -> Result<conversation::Model, ChatError> {
        let timestamp = self.clock.now();
        let mut uow = self.db.begin().await?;
        let created = conversation::ActiveModel {
            id: Set(ConversationId::new()),
            project_id: Set(project_id),
            avatar_id: Set(avatar_id),
            channel: Set(channel),
            end_user_id: Set(end_user_id),
            created_by: Set(actor.user_id),
            title: Set(title),
            messages_count: Set(0),
            last_message_at: Set(None),
            created_at: Set(timestamp),
            updated_at: Set(timestamp),
        }
        .insert(&*uow)
        .await
        // The end user was erased since they were found (their conversations go with them).
        .map_err(|error| gone(error, "end user"))?;
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Chat(ChatEvent::ConversationStarted {
                    project_id,
                    avatar_id,
                    conversation_id: created.id,
                    channel: created.channel,
                    end_user_id,
                    actor,
                }),
            )
            .await?;
        uow.commit().await?;
        Ok(created)
    }

    /// A staff conversation with an avatar (the dashboard's playground).
    pub async fn create_playground(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
        title: Option<String>,
        actor: Actor,
    ) -> Result<ConversationView, ChatError> {
        self.avatar(project_id, avatar_id).await?;
        let created = self
            .start_conversation(
                project_id,
                avatar_id,
                Channel::Playground,
                None,
                title,
                actor,
            )
            .await?;
        Ok(conversation_view(&created))
    }

    pub async fn list_conversations(
        &self,
        project_id: ProjectId,
        filter: &ConversationFilter,
        page: &PageParams,
    ) -> Result<Page<ConversationView>, ChatError> {
        let mut condition = Condition::all().add(conversation::Column::ProjectId.eq(project_id));
        if let Some(avatar_id) = filter.avatar_id {
            condition = condition.add(conversation::Column::AvatarId.eq(avatar_id));
        }
        if let Some(end_user_id) = filter.end_user_id {
            condition = condition.add(conversation::Column::EndUserId.eq(end_user_id));
        }
        if let Some(channel) = filter.channel {
            condition = condition.add(conversation::Column::Channel.eq(channel));
        }
        let select = conversation::Entity::find()
            .filter(condition)
            .order_by_desc(conversation::Column::CreatedAt)
            .order_by_desc(conversation::Column::Id);
        let (rows, total) = fetch_page(self.db.connection(), select, page).await?;
        Ok(Page::new(
            rows.iter().map(conversation_view).collect(),
            total,
            page,
        ))
    }

    /// A conversation of the project whose avatar still exists, with that avatar: a deleted
    /// avatar's conversations answer 404 at once (and are removed soon after, by
    /// `RemoveAvatarConversations`).
    async fn conversation(
        &self,
        project_id: ProjectId,
        conversation_id: ConversationId,
    ) -> Result<(conversation::Model, AvatarView), ChatError> {
        let found = conversation::Entity::find_by_id(conversation_id)
            .filter(conversation::Column::ProjectId.eq(project_id))
            .one(self.db.connection())
            .await?
            .ok_or(ChatError::NotFound("conversation"))?;
        let avatar =
            self.avatar(project_id, found.avatar_id)
                .await
                .map_err(|error| match error {
                    ChatError::NotFound(_) => ChatError::NotFound("conversation"),
                    other => other,
                })?;
        Ok((found, avatar))
    }

    /// A conversation's messages, oldest first.
    pub async fn messages(
        &self,
        project_id: ProjectId,
        conversation_id: ConversationId,
        page: &PageParams,
    ) -> Result<Page<MessageView>, ChatError> {
        self.conversation(project_id, conversation_id).await?;
        let select = message::Entity::find()
            .filter(message::Column::ConversationId.eq(conversation_id))
            .filter(message::Column::ProjectId.eq(project_id))
            .order_by_asc(message::Column::CreatedAt)
            .order_by_asc(message::Column::Id);
        let (rows, total) = fetch_page(self.db.connection(), select, page).await?;
        Ok(Page::new(
            rows.iter().map(message_view).collect(),
            total,
            page,
        ))
    }

    /// Removes a deleted avatar's conversations and their messages.
    pub async fn delete_avatar_conversations(
        &self,
        project_id: ProjectId,
        avatar_id: AvatarId,
    ) -> Result<u64, ChatError> {
        self.delete_conversations(project_id, conversation::Column::AvatarId.eq(avatar_id))
            .await
    }

    /// Deletes the project's conversations matching `which` (messages follow by cascade).
    async fn delete_conversations(
        &self,
        project_id: ProjectId,
        which: sea_orm::sea_query::SimpleExpr,
    ) -> Result<u64, ChatError> {
        let deleted = conversation::Entity::delete_many()
            .filter(conversation::Column::ProjectId.eq(project_id))
            .filter(which)
            .exec(self.db.connection())
            .await?;
        Ok(deleted.rows_affected)
    }
}
