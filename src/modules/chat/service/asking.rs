//! The start of every answer: everything that can refuse the question is checked before
//! anything is written, then tokens are reserved, the question stored, and the answer runs in
//! the background (`pipeline.rs`), reporting through a channel. The passages are searched from
//! the moment only the conversation or the budget can still refuse the question
//! (`pipeline/searching.rs`).

use std::sync::Arc;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::core::auth::Actor;
use crate::core::channel::Channel;
use crate::core::error::Failure;
use crate::core::ids::{AvatarId, ConversationId, EndUserId, MessageId, ProjectId};
use crate::core::llm::{ChatMessage, Role, count_tokens};
use crate::modules::avatars::{AvatarStatus, AvatarView};
use crate::modules::chat::domain::MessageRole;
use crate::modules::end_users::EndUsersService;
use crate::modules::end_users::{Contact, EndUserView};

use super::{ChatService, MessageView, bump_conversation, gone, message_view, non_negative};
use crate::modules::billing::Reservation;
use crate::modules::chat::domain::entities::{conversation, message};
use crate::modules::chat::domain::errors::ChatError;
use crate::modules::chat::pipeline::{ClientOptions, Search, Turn, TurnEvent};

/// An answer under way: the stored question, and the answer's events as they come.
pub struct Answer {
    pub conversation_id: ConversationId,
    pub end_user: Option<EndUserView>,
    pub user_message: MessageView,
    pub events: mpsc::Receiver<TurnEvent>,
}

/// The messages of history read per answer (trimmed further to the token budget).
const HISTORY_MESSAGES: u64 = 100;

/// The title of the conversations that keep [`Thread::Client`] questions.
pub const CLIENT_THREAD_TITLE: &str = "OpenAI-compatible API";

/// Where an end user's question goes, and where the prompt's history comes from.
#[derive(Debug, Clone)]
pub enum Thread {
    /// Continue this conversation (the end user's, with this avatar; else 404), or start one;
    /// the history is the conversation's (public API, Telegram).
    Stored(Option<ConversationId>),
    /// The client holds the conversation and sends it (OpenAI-compatible API): the question
    /// and answer are kept in the end user's latest such conversation with the avatar (titled
    /// [`CLIENT_THREAD_TITLE`], so never one of their other conversations on the channel),
    /// started for the first, for analytics and usage.
    Client {
        history: Vec<ChatMessage>,
        options: ClientOptions,
    },
}

impl ChatService {
    /// Staff asks in a conversation of their project.
    pub async fn ask_in_conversation(
        self: &Arc<Self>,
        project_id: ProjectId,
        conversation_id: ConversationId,
        content: String,
        actor: Actor,
    ) -> Result<Answer, ChatError> {
        self.within_plan_rate(project_id).await?;
        let (conversation, avatar) = self.conversation(project_id, conversation_id).await?;
        let content = self.checked_content(&content)?;
        if avatar.status != AvatarStatus::Active {
            return Err(ChatError::AvatarDisabled);
        }
        let search = Search::start(&self.documents, &avatar, &content);
        let history = self.history(conversation.id).await?;
        let reservation = self.reserve(&avatar, &content, 0).await?;
        self.start_answer(
            conversation,
            None,
            avatar,
            content,
            history,
            reservation,
            actor,
            search,
            ClientOptions::default(),
        )
        .await
    }

    /// An end user asks (public API, Telegram, OpenAI-compatible API): found or created by
    /// `external_id`; the question goes to the conversation `thread` says.
    ///
    /// Everything that can refuse the question (content, avatar, a blocked end user, someone
    /// else's conversation, the token budget) is checked before anything is written: a refused
    /// question leaves no end user or conversation behind.
    pub async fn ask_as_end_user(
        self: &Arc<Self>,
        project_id: ProjectId,
        avatar_id: AvatarId,
        contact: Contact,
        thread: Thread,
        content: String,
        actor: Actor,
    ) -> Result<Answer, ChatError> {
        self.within_plan_rate(project_id).await?;
        let content = self.checked_content(&content)?;
        let avatar = self.active_avatar(project_id, avatar_id).await?;
        EndUsersService::check_contact(&contact).map_err(Failure::from)?;
        let channel = contact.channel;
        let known = self
            .end_users
            .find_by_contact(project_id, &contact)
            .await
            .map_err(Failure::from)?;
        if known.as_ref().is_some_and(|end_user| end_user.blocked) {
            return Err(ChatError::EndUserBlocked);
        }
        let search = Search::start(&self.documents, &avatar, &content);
        let title = matches!(thread, Thread::Client { .. }).then(|| CLIENT_THREAD_TITLE.to_owned());
        let (continued, history, client) = match thread {
            Thread::Stored(Some(id)) => {
                let (found, _) = self.conversation(project_id, id).await?;
                let theirs = known
                    .as_ref()
                    .is_some_and(|end_user| found.end_user_id == Some(end_user.id));
                if !theirs || found.avatar_id != avatar_id {
                    return Err(ChatError::NotFound("conversation"));
                }
                let history = self.history(found.id).await?;
                (Some(found), history, ClientOptions::default())
            }
            Thread::Stored(None) => (None, Vec::new(), ClientOptions::default()),
            Thread::Client { history, options } => {
                let latest = match &known {
                    Some(end_user) => {
                        self.latest_conversation(end_user.id, avatar_id, channel)
                            .await?
                    }
                    None => None,
                };
                (latest, history, options)
            }
        };
        let extra = client.instructions.as_deref().map_or(0, count_tokens);
        let reservation = self.reserve(&avatar, &content, extra).await?;

        let written = async {
            let end_user = self
                .end_users
                .find_or_create(project_id, contact)
                .await
                .map_err(Failure::from)?;
            // Blocked between the check and now.
            if end_user.blocked {
                return Err(ChatError::EndUserBlocked);
            }
            let conversation = match continued {
                Some(conversation) => conversation,
                None => {
                    self.start_conversation(
                        project_id,
                        avatar_id,
                        channel,
                        Some(end_user.id),
                        title,
                        actor.clone(),
                    )
                    .await?
                }
            };
            Ok((end_user, conversation))
        }
        .await;
        let (end_user, conversation) = match written {
            Ok(written) => written,
            Err(error) => {
                self.release(&reservation).await;
                return Err(error);
            }
        };
        self.start_answer(
            conversation,
            Some(end_user),
            avatar,
            content,
            history,
            reservation,
            actor,
            search,
            client,
        )
        .await
    }

    /// The end user's most recent [`Thread::Client`] conversation with the avatar on `channel`.
    async fn latest_conversation(
        &self,
        end_user_id: EndUserId,
        avatar_id: AvatarId,
        channel: Channel,
    ) -> Result<Option<conversation::Model>, ChatError> {
        Ok(conversation::Entity::find()
            .filter(conversation::Column::EndUserId.eq(end_user_id))
            .filter(conversation::Column::AvatarId.eq(avatar_id))
            .filter(conversation::Column::Channel.eq(channel))
            .filter(conversation::Column::Title.eq(CLIENT_THREAD_TITLE))
            .order_by_desc(conversation::Column::CreatedAt)
            .one(self.db.connection())
            .await?)
    }

    /// Tokens set aside for an answer by `avatar` to `content`, with `extra` prompt tokens
    /// (a client's instructions) (402 when refused).
    async fn reserve(
        &self,
        avatar: &AvatarView,
        content: &str,
        extra: u32,
    ) -> Result<Reservation, ChatError> {
        let estimate = self.estimate(avatar, content).saturating_add(extra);
        self.billing
            .reserve(avatar.project_id, estimate)
            .await
            .map_err(|error| ChatError::Common(error.into()))
    }

    /// The user's message, then the answer (with `search`, under way) in the background.
    /// Gives the reservation back if the message cannot be stored.
    #[allow(clippy::too_many_arguments)]
    async fn start_answer(
        self: &Arc<Self>,
        conversation: conversation::Model,
        end_user: Option<EndUserView>,
        avatar: AvatarView,
        content: String,
        history: Vec<ChatMessage>,
        reservation: Reservation,
        actor: Actor,
        search: Search,
        client: ClientOptions,
    ) -> Result<Answer, ChatError> {
        let project_id = conversation.project_id;
        let user_message = match self
            .store_question(&conversation, &content, &reservation)
            .await
        {
            Ok(stored) => stored,
            Err(error) => {
                self.release(&reservation).await;
                return Err(error);
            }
        };
        // Counted for the end user when they asked (staff may write in their conversation).
        if let Some(asker) = &end_user
            && let Err(error) = self.end_users.record_message(project_id, asker.id).await
        {
            tracing::warn!(end_user_id = %asker.id, "counting the end user's message failed: {error}");
        }
        let (sender, events) = mpsc::channel(self.settings.stream_buffer_events.max(1));
        let turn = Turn {
            conversation_id: conversation.id,
            channel: conversation.channel,
            end_user_id: conversation.end_user_id,
            avatar,
            question_id: user_message.id,
            question: content,
            history,
            reservation,
            actor,
            search,
            client,
        };
        let service = Arc::clone(self);
        tokio::spawn(async move { service.answer(turn, sender).await });
        Ok(Answer {
            conversation_id: conversation.id,
            end_user,
            user_message: message_view(&user_message),
            events,
        })
    }

    /// Tokens to set aside: everything the prompt may hold plus the longest answer.
    fn estimate(&self, avatar: &AvatarView, question: &str) -> u32 {
        let passages =
            non_negative(avatar.rag.top_k).saturating_mul(non_negative(avatar.rag.chunk_size));
        count_tokens(&avatar.system_prompt)
            .saturating_add(count_tokens(question))
            .saturating_add(self.settings.history_token_budget)
            .saturating_add(passages)
            .saturating_add(non_negative(avatar.llm.max_tokens))
    }

    /// The conversation so far, oldest first (the newest [`HISTORY_MESSAGES`]).
    async fn history(
        &self,
        conversation_id: ConversationId,
    ) -> Result<Vec<ChatMessage>, ChatError> {
        let mut rows = message::Entity::find()
            .filter(message::Column::ConversationId.eq(conversation_id))
            .order_by_desc(message::Column::CreatedAt)
            .order_by_desc(message::Column::Id)
            .limit(HISTORY_MESSAGES)
            .all(self.db.connection())
            .await?;
        rows.reverse();
        Ok(rows
            .into_iter()
            .filter(|row| !row.content.is_empty())
            .map(|row| {
                let role = match row.role {
                    MessageRole::Assistant => Role::Assistant,
                    MessageRole::User => Role::User,
                };
                ChatMessage::new(role, row.content)
            })
            .collect())
    }

    async fn store_question(
        &self,
        conversation: &conversation::Model,
        content: &str,
        reservation: &Reservation,
    ) -> Result<message::Model, ChatError> {
        let timestamp = self.clock.now();
        let uow = self.db.begin().await?;
        let stored = message::ActiveModel {
            id: Set(MessageId::new()),
            project_id: Set(conversation.project_id),
            conversation_id: Set(conversation.id),
            role: Set(MessageRole::User),
            content: Set(content.to_owned()),
            sources: Set(json!([])),
            prompt_tokens: Set(0),
            completion_tokens: Set(0),
            model: Set(None),
            finish_reason: Set(None),
            retrieval_ms: Set(None),
            time_to_first_token_ms: Set(None),
            total_ms: Set(None),
            message_metadata: Set(json!({"reservation_id": reservation.id})),
            created_at: Set(timestamp),
        }
        .insert(&*uow)
        .await
        // Erased (with its end user, or by its avatar's deletion) since it was read.
        .map_err(|error| gone(error, "conversation"))?;
        bump_conversation(&*uow, conversation.id, timestamp).await?;
        uow.commit().await?;
        Ok(stored)
    }

    /// Gives a reservation back unused.
    pub(in crate::modules::chat) async fn release(&self, reservation: &Reservation) {
        if let Err(error) = self.billing.release(reservation).await {
            tracing::error!(reservation = %reservation.id, "releasing a token reservation failed: {error}");
        }
    }
}
