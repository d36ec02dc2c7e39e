//! Answering updates (the `telegram.handle_updates` job): a chat's updates in order, different
//! chats at once; each update claimed (fang may run a task twice), the message read — commands, text, anything else — the end user found or
//! created by their Telegram user id, the avatar's answer streamed into the chat, and the
//! chat's conversation remembered. Refusals (a blocked end user, an exhausted budget, a
//! disabled avatar) become a polite message, never silence; failures are recorded in the bot's
//! `last_error` and never retried into duplicate answers.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Duration as TimeDelta;
use futures_util::{StreamExt, stream};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde_json::Value;

use crate::core::auth::Actor;
use crate::core::channel::Channel;
use crate::core::error::Failure;
use crate::core::ids::{ConversationId, ProjectId};
use crate::core::telegram::{BotApi, BotApiError};
use crate::modules::chat::{ChatError, Thread, TurnEvent};
use crate::modules::end_users::Contact;

use super::super::domain::entities::bot;
use super::super::domain::errors::TelegramError;
use super::TelegramService;
use super::reading::{Addressed, Asks, read_update};
use super::streaming::{Delivered, Relay};

/// How long a claim on an update holds (longer than any answer takes).
const CLAIM: TimeDelta = TimeDelta::minutes(10);
/// How many chats one job holds (`store.rs` groups them so), and answers at once.
pub(super) const CHATS_PER_JOB: usize = 8;

pub const DEFAULT_GREETING: &str = "Hello! Ask me anything — I answer from what I was given.";
pub const HELP: &str = "Write your question and I will answer it.\n\n\
    /reset — start a new conversation\n/help — this message";
const TEXT_ONLY: &str = "I can only read text messages for now.";
const RESET: &str = "Let's start over: this is a new conversation.";
const BLOCKED: &str = "Sorry, this assistant is not available to you.";
const UNAVAILABLE: &str = "Sorry, this assistant is not available right now.";
const BUDGET: &str = "This assistant has used up its budget for now. Please try again later.";
const BUSY: &str = "Too many questions at once — please try again in a minute.";
const TOO_LONG: &str = "Your message is too long for me. Could you shorten it?";
const FAILED: &str = "Sorry, I could not answer just now. Please try again.";

#[derive(FromQueryResult)]
struct Claimed {
    project_id: ProjectId,
    payload: Value,
}

/// An update not handled yet, and the chat it was written in (if it is a message).
#[derive(FromQueryResult)]
struct Waiting {
    bot_id: i64,
    update_id: i64,
    chat: Option<String>,
}

#[derive(FromQueryResult)]
struct ChatRow {
    conversation_id: Option<ConversationId>,
    refused: bool,
}

/// `waiting` (in order) as one list per chat, each in order; an update that is not a message
/// is a list of its own.
fn by_chat(waiting: Vec<Waiting>) -> Vec<Vec<(i64, i64)>> {
    let mut chats: Vec<Vec<(i64, i64)>> = Vec::new();
    let mut index = HashMap::new();
    for Waiting {
        bot_id,
        update_id,
        chat,
    } in waiting
    {
        let at = match chat {
            Some(chat) => *index.entry((bot_id, chat)).or_insert_with(|| {
                chats.push(Vec::new());
                chats.len() - 1
            }),
            None => {
                chats.push(Vec::new());
                chats.len() - 1
            }
        };
        chats[at].push((bot_id, update_id));
    }
    chats
}

impl TelegramService {
    /// Handles the stored updates `keys` (`(bot_id, update_id)`), each once: a chat's in the
    /// order Telegram numbered them, up to [`CHATS_PER_JOB`] chats at once. If one fails (the
    /// database), its chat's later updates wait with it for the job's retry.
    pub async fn handle_all(&self, keys: &[(i64, i64)]) -> Result<(), TelegramError> {
        let keys: Value = keys
            .iter()
            .map(|(bot_id, update_id)| serde_json::json!([bot_id, update_id]))
            .collect();
        let waiting = Waiting::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT u.bot_id, u.update_id, u.payload #>> '{message,chat,id}' AS chat \
             FROM jsonb_array_elements($1::jsonb) AS k \
             JOIN telegram_updates u \
               ON u.bot_id = (k->>0)::bigint AND u.update_id = (k->>1)::bigint \
             WHERE u.handled_at IS NULL \
             ORDER BY u.bot_id, u.update_id",
            [keys.into()],
        ))
        .all(self.db.connection())
        .await?;
        let answered: Vec<Result<(), TelegramError>> = stream::iter(by_chat(waiting))
            .map(|chat| async move {
                for (bot_id, update_id) in chat {
                    self.handle(bot_id, update_id).await?;
                }
                Ok(())
            })
            .buffer_unordered(CHATS_PER_JOB)
            .collect()
            .await;
        answered.into_iter().collect()
    }

    /// Handles the stored update `update_id` of `bot_id`, once.
    pub async fn handle(&self, bot_id: i64, update_id: i64) -> Result<(), TelegramError> {
        let now = self.clock.now();
        let claimed = Claimed::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE telegram_updates SET claimed_until = $3 \
             WHERE bot_id = $1 AND update_id = $2 AND handled_at IS NULL \
               AND (claimed_until IS NULL OR claimed_until < $4) \
             RETURNING project_id, payload",
            [
                bot_id.into(),
                update_id.into(),
                (now + CLAIM).into(),
                now.into(),
            ],
        ))
        .one(self.db.connection())
        .await?;
        let Some(claimed) = claimed else {
            return Ok(());
        };
        // Nothing is sent yet: a failure here (the database) gives the update back for the
        // job's retry instead of dropping it.
        let connected = match self.connected(claimed.project_id).await {
            Ok(connected) => connected,
            Err(error) => {
                self.db
                    .execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "UPDATE telegram_updates SET claimed_until = NULL \
                         WHERE bot_id = $1 AND update_id = $2",
                        [bot_id.into(), update_id.into()],
                    ))
                    .await?;
                return Err(error);
            }
        };
        let answered = match connected {
            Some((row, api)) if row.bot_id == bot_id => {
                self.answer_update(&row, &api, &claimed).await
            }
            // Disconnected, or the project has another bot now: dropped.
            _ => Ok(()),
        };
        if let Err(error) = answered {
            tracing::warn!(
                bot_id,
                update_id,
                "a Telegram update was not answered: {error}"
            );
        }
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE telegram_updates SET handled_at = $3 WHERE bot_id = $1 AND update_id = $2",
                [bot_id.into(), update_id.into(), self.clock.now().into()],
            ))
            .await?;
        Ok(())
    }

    async fn answer_update(
        &self,
        row: &bot::Model,
        api: &BotApi,
        claimed: &Claimed,
    ) -> Result<(), TelegramError> {
        let (project_id, bot_id) = (row.project_id, row.bot_id);
        // Kinds the platform does not read (or a shape it does not know) are acknowledged.
        let Some(Addressed {
            chat,
            from,
            private,
            asks,
        }) = read_update(claimed.payload.clone(), bot_id, &row.bot_username)
        else {
            return Ok(());
        };
        let chat_id = chat.id;
        let outcome = match asks {
            Asks::NotText => self.say(api, chat_id, TEXT_ONLY).await,
            Asks::Start => {
                let greeting = self
                    .avatars
                    .get(project_id, row.avatar_id)
                    .await
                    .ok()
                    .and_then(|avatar| avatar.greeting)
                    .filter(|greeting| !greeting.trim().is_empty());
                let greeting = greeting.as_deref().unwrap_or(DEFAULT_GREETING);
                self.say(api, chat_id, greeting).await
            }
            Asks::Help => self.say(api, chat_id, HELP).await,
            Asks::Reset => {
                self.remember(row, chat_id, None).await?;
                self.say(api, chat_id, RESET).await
            }
            Asks::Question(question) => {
                let contact = if private {
                    let name = match &from.last_name {
                        Some(last) => format!("{} {last}", from.first_name),
                        None => from.first_name.clone(),
                    };
                    Contact {
                        channel: Channel::Telegram,
                        external_id: from.id.to_string(),
                        display_name: Some(name),
                        raw_profile: serde_json::to_value(&from).ok(),
                    }
                } else {
                    // A group is one end user with one conversation: everyone in it reads the
                    // same thread (its id is negative, never a user's).
                    Contact {
                        channel: Channel::Telegram,
                        external_id: chat_id.to_string(),
                        display_name: chat.title.clone(),
                        raw_profile: serde_json::to_value(&*chat).ok(),
                    }
                };
                self.ask(row, api, chat_id, contact, &question).await
            }
        };
        match outcome {
            Ok(Delivered::Shown) => {
                self.mark(project_id, None).await;
                Ok(())
            }
            Ok(Delivered::Blocked) => {
                self.blocked_by_user(row, chat_id).await?;
                Ok(())
            }
            Err(error) => {
                self.mark(project_id, Some(error.to_string())).await;
                Err(TelegramError::Upstream(error.to_string()))
            }
        }
    }

    /// One message, whole.
    async fn say(&self, api: &BotApi, chat_id: i64, text: &str) -> Result<Delivered, BotApiError> {
        Relay::new(api, chat_id, self.edit_interval())
            .finish(text)
            .await
    }

    fn edit_interval(&self) -> Duration {
        Duration::from_millis(self.settings.edit_interval_ms)
    }

    /// The question, through the chat pipeline, its answer streamed into the chat.
    async fn ask(
        &self,
        row: &bot::Model,
        api: &BotApi,
        chat_id: i64,
        contact: Contact,
        question: &str,
    ) -> Result<Delivered, BotApiError> {
        let chat = match self.chat_state(row.bot_id, chat_id).await {
            Ok(chat) => chat,
            Err(error) => {
                tracing::error!(chat_id, "reading the Telegram chat failed: {error}");
                return self.say(api, chat_id, FAILED).await;
            }
        };
        if let Err(BotApiError::Forbidden(_)) = api.typing(chat_id).await {
            return Ok(Delivered::Blocked);
        }
        let mut conversation = chat.as_ref().and_then(|chat| chat.conversation_id);
        let answer = loop {
            let asked = self
                .chat
                .ask_as_end_user(
                    row.project_id,
                    row.avatar_id,
                    contact.clone(),
                    Thread::Stored(conversation),
                    question.to_owned(),
                    Actor::system(),
                )
                .await;
            match asked {
                // Its conversation is gone (erased, or the bot moved to another avatar).
                Err(ChatError::NotFound("conversation")) if conversation.is_some() => {
                    conversation = None;
                }
                other => break other,
            }
        };
        let reply = match answer {
            Ok(answer) => answer,
            Err(ChatError::EndUserBlocked) => {
                // Once per chat: a blocked user writing again gets no more replies.
                if chat.as_ref().is_some_and(|chat| chat.refused) {
                    return Ok(Delivered::Shown);
                }
                if let Err(error) = self.refused(row, chat_id).await {
                    tracing::warn!(chat_id, "recording a refusal failed: {error}");
                }
                return self.say(api, chat_id, BLOCKED).await;
            }
            Err(error) => return self.say(api, chat_id, refusal(&error)).await,
        };
        if let Err(error) = self
            .remember(row, chat_id, Some(reply.conversation_id))
            .await
        {
            tracing::warn!(
                chat_id,
                "remembering the chat's conversation failed: {error}"
            );
        }
        let mut events = reply.events;
        let mut relay = Relay::new(api, chat_id, self.edit_interval());
        let mut text = String::new();
        while let Some(event) = events.recv().await {
            match event {
                TurnEvent::Delta(delta) => {
                    text.push_str(&delta);
                    if relay.progress(&text).await? == Delivered::Blocked {
                        // Dropping `events` stops the model: the partial answer is kept.
                        return Ok(Delivered::Blocked);
                    }
                }
                TurnEvent::Sources(_) => {}
                TurnEvent::Done(done) => {
                    return relay.finish(&done.message.content).await;
                }
                TurnEvent::Error(failure) => {
                    tracing::warn!(chat_id, "the answer failed: {}", failure.message);
                    let shown = if text.trim().is_empty() {
                        FAILED.to_owned()
                    } else {
                        format!("{text}\n\n({FAILED})")
                    };
                    return relay.finish(&shown).await;
                }
            }
        }
        relay
            .finish(if text.is_empty() { FAILED } else { &text })
            .await
    }

    async fn chat_state(
        &self,
        bot_id: i64,
        chat_id: i64,
    ) -> Result<Option<ChatRow>, TelegramError> {
        Ok(ChatRow::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT conversation_id, refused_at IS NOT NULL AS refused FROM telegram_chats \
             WHERE bot_id = $1 AND chat_id = $2",
            [bot_id.into(), chat_id.into()],
        ))
        .one(self.db.connection())
        .await?)
    }

    /// The chat's current conversation (none: the next question starts one).
    async fn remember(
        &self,
        row: &bot::Model,
        chat_id: i64,
        conversation: Option<ConversationId>,
    ) -> Result<(), TelegramError> {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO telegram_chats (bot_id, chat_id, project_id, conversation_id, \
                     updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (bot_id, chat_id) DO UPDATE SET \
                     conversation_id = excluded.conversation_id, refused_at = NULL, \
                     blocked_bot_at = NULL, updated_at = excluded.updated_at",
                [
                    row.bot_id.into(),
                    chat_id.into(),
                    row.project_id.into(),
                    conversation.into(),
                    self.clock.now().into(),
                ],
            ))
            .await?;
        Ok(())
    }

    async fn refused(&self, row: &bot::Model, chat_id: i64) -> Result<(), TelegramError> {
        self.chat_flag(row, chat_id, "refused_at").await
    }

    /// The user blocked the bot: nothing more is sent until they write again.
    async fn blocked_by_user(&self, row: &bot::Model, chat_id: i64) -> Result<(), TelegramError> {
        tracing::info!(bot_id = row.bot_id, chat_id, "the user blocked the bot");
        self.chat_flag(row, chat_id, "blocked_bot_at").await
    }

    async fn chat_flag(
        &self,
        row: &bot::Model,
        chat_id: i64,
        column: &'static str,
    ) -> Result<(), TelegramError> {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "INSERT INTO telegram_chats (bot_id, chat_id, project_id, {column}, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (bot_id, chat_id) DO UPDATE SET {column} = $4, updated_at = $4"
                ),
                [
                    row.bot_id.into(),
                    chat_id.into(),
                    row.project_id.into(),
                    self.clock.now().into(),
                ],
            ))
            .await?;
        Ok(())
    }
}

/// What the chat user reads when the question is refused.
fn refusal(error: &ChatError) -> &'static str {
    match error {
        ChatError::AvatarDisabled | ChatError::NotFound(_) => UNAVAILABLE,
        ChatError::PlanRate { .. } => BUSY,
        ChatError::Common(Failure::TokenLimit { .. } | Failure::PlanLimit { .. }) => BUDGET,
        ChatError::Common(Failure::InvalidField { .. }) => TOO_LONG,
        _ => FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::{Waiting, by_chat};

    #[test]
    fn updates_are_grouped_by_bot_and_chat_in_order() {
        let waiting = |bot_id, update_id, chat: Option<&str>| Waiting {
            bot_id,
            update_id,
            chat: chat.map(str::to_owned),
        };
        let chats = by_chat(vec![
            waiting(1, 10, Some("7")),
            waiting(1, 11, Some("8")),
            waiting(1, 12, None),
            waiting(1, 13, Some("7")),
            waiting(1, 14, None),
            waiting(2, 5, Some("7")),
        ]);
        assert_eq!(
            chats,
            vec![
                vec![(1, 10), (1, 13)],
                vec![(1, 11)],
                vec![(1, 12)],
                vec![(1, 14)],
                vec![(2, 5)],
            ]
        );
    }
}
