//! The answer to one question, after [`ChatService`] checked, reserved and stored it:
//! retrieval -> prompt -> model (streamed) -> the answer stored with its sources, usage and
//! timings -> the reservation settled -> `MessageCompleted` and `UsageRecorded`.
//!
//! It runs on a task of its own and reports through a channel ([`TurnEvent`]s). A receiver
//! that goes away (the client disconnected) stops the model's stream at once — dropping it
//! closes the upstream request — and the partial answer is stored with finish reason
//! `client_disconnected`, its usage charged.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::core::auth::Actor;
use crate::core::error::Failure;
use crate::core::error::{ErrorCode, ErrorKind, Unavailable};
use crate::core::ids::{ConversationId, EndUserId, MessageId};
use crate::core::llm::{
    ChatMessage, ChatModel, ChatRequest, LlmError, Passage, RetrievalOnly, StreamEvent, Usage,
    count_prompt_tokens, count_tokens,
};
use crate::modules::avatars::AvatarView;

mod searching;
mod storing;

pub use searching::Search;

use super::domain::errors::ChatError;
use super::prompt;
use super::service::{ChatService, MessageView, SourceRef, Timings, message_view};
use crate::modules::billing::{Reservation, UsageKind, UsageRecord};

/// What the answer reports, in this order: deltas, then sources, then done — or an error.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    Delta(String),
    Sources(Vec<SourceRef>),
    Done(Box<Completed>),
    Error(TurnFailure),
}

/// The stored answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Completed {
    pub message: MessageView,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TurnFailure {
    #[serde(skip)]
    pub code: ErrorCode,
    pub message: String,
    /// The partial answer that was stored, if the failure came after it started.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub message_id: Option<MessageId>,
}

/// Everything the answer needs, gathered by [`ChatService`].
pub struct Turn {
    pub conversation_id: ConversationId,
    pub channel: crate::core::channel::Channel,
    pub end_user_id: Option<EndUserId>,
    pub avatar: AvatarView,
    /// The stored question.
    pub question_id: MessageId,
    pub question: String,
    pub history: Vec<ChatMessage>,
    pub reservation: Reservation,
    pub actor: Actor,
    /// The avatar's passages for the question, searched since the question was checked.
    pub search: Search,
    /// What an OpenAI client asked for beyond the question (none for the other channels).
    pub client: ClientOptions,
}

/// An OpenAI client's instructions and sampling. The avatar's settings bound them: its system
/// prompt comes first and stays, `temperature` and `max_tokens` are at most the avatar's.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// The client's `system` messages, put after the avatar's own system prompt.
    pub instructions: Option<String>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// How reading the model's stream ended.
enum Ending {
    Finished(String),
    ClientGone,
    Broken(String),
}

/// Answers longer than this many bytes per `max_tokens` are cut (finish reason `length`): a
/// token is about four bytes, so only an endpoint ignoring `max_tokens` gets near it.
const MAX_BYTES_PER_TOKEN: usize = 32;

/// `work`, unless the client goes away first (`None`).
async fn until_closed<T>(
    events: &mpsc::Sender<TurnEvent>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = events.closed() => None,
        done = work => Some(done),
    }
}

fn millis(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_millis()).unwrap_or(u32::MAX)
}

/// What retrieval found, for the prompt (passages) and the stored answer (sources).
struct Retrieved {
    sources: Vec<SourceRef>,
    passages: Vec<Passage>,
    retrieval_ms: u32,
    /// The embedder of the question (its tokens go to the usage ledger).
    embedding_model: String,
}

/// What the model streamed, and how the stream ended.
struct Streamed {
    content: String,
    reported: Option<Usage>,
    prompt_estimate: u32,
    first_token: Option<u32>,
    ending: Ending,
}

impl ChatService {
    /// Answers `turn`, reporting on `events`: retrieval, the model, the streamed answer, then
    /// the stored message and the settled reservation. Each phase returns `None` once the turn
    /// is over (failure reported, or the client gone).
    pub(super) async fn answer(self: Arc<Self>, mut turn: Turn, events: mpsc::Sender<TurnEvent>) {
        let started = Instant::now();
        let Some(retrieved) = self.retrieve(&mut turn, &events).await else {
            return;
        };
        let Some(answerer) = self.choose_model(&turn, &events, &retrieved).await else {
            return;
        };
        let Some(streamed) = self
            .stream_answer(&turn, &events, answerer.model.as_ref(), &retrieved, started)
            .await
        else {
            return;
        };
        self.finish(&turn, &events, &answerer, retrieved, streamed, started)
            .await;
    }

    /// The avatar's passages for the question (searched since it was checked). A client that
    /// leaves before the answer starts costs nothing more.
    async fn retrieve(
        &self,
        turn: &mut Turn,
        events: &mpsc::Sender<TurnEvent>,
    ) -> Option<Retrieved> {
        let Some(searched) = until_closed(events, turn.search.finish()).await else {
            self.unanswered(turn, false).await;
            return None;
        };
        let (hits, embedding_model) = match searched.found.map_err(Failure::from) {
            Ok(searched) => (searched.hits, searched.embedding_model),
            Err(Failure::Unavailable(unavailable)) => {
                self.fail_unavailable(turn, events, unavailable).await;
                return None;
            }
            Err(error) => {
                let reason = format!("retrieval failed: {error}");
                self.fail_internally(turn, events, "retrieving the passages failed", &reason)
                    .await;
                return None;
            }
        };
        let retrieval_ms = searched.took_ms;
        let sources = hits
            .iter()
            .map(|hit| SourceRef {
                document_id: hit.document_id,
                filename: hit.filename.clone(),
                chunk_id: hit.chunk_id,
                score: hit.score,
                similarity: hit.similarity,
                page: hit.page,
            })
            .collect();
        let passages = hits
            .iter()
            .map(|hit| Passage {
                label: match hit.page {
                    Some(page) => format!("{}, page {page}", hit.filename),
                    None => hit.filename.clone(),
                },
                text: hit.text.clone(),
            })
            .collect();
        Some(Retrieved {
            sources,
            passages,
            retrieval_ms,
            embedding_model,
        })
    }

    /// The project's LLM, or the retrieval-only answer when none is configured.
    async fn choose_model(
        &self,
        turn: &Turn,
        events: &mpsc::Sender<TurnEvent>,
        retrieved: &Retrieved,
    ) -> Option<Answerer> {
        match self
            .models
            .for_project(turn.avatar.project_id, &turn.avatar.llm.model)
            .await
        {
            Ok(Some(chosen)) => Some(Answerer {
                model: chosen.model,
                billed: Some(chosen.own_key),
            }),
            Ok(None) => Some(Answerer {
                model: Arc::new(RetrievalOnly {
                    passages: retrieved.passages.clone(),
                }),
                billed: None,
            }),
            Err(ChatError::Upstream(reason)) => {
                self.fail_before_answer(turn, events, reason).await;
                None
            }
            Err(ChatError::Common(Failure::Unavailable(unavailable))) => {
                self.fail_unavailable(turn, events, unavailable).await;
                None
            }
            Err(error) => {
                let reason = format!("choosing the model failed: {error}");
                self.fail_internally(turn, events, "the answer could not be started", &reason)
                    .await;
                None
            }
        }
    }

    /// Builds the prompt, starts the model's stream and forwards its deltas until it ends, the
    /// answer grows past `max_tokens`' bytes, or the client goes away.
    async fn stream_answer(
        &self,
        turn: &Turn,
        events: &mpsc::Sender<TurnEvent>,
        model: &dyn ChatModel,
        retrieved: &Retrieved,
        started: Instant,
    ) -> Option<Streamed> {
        let messages = prompt::build(
            &prompt::instructions(
                &turn.avatar.system_prompt,
                turn.client.instructions.as_deref(),
            ),
            &retrieved.passages,
            &turn.history,
            self.settings.history_token_budget,
            &turn.question,
        );
        let request = ChatRequest {
            model: turn.avatar.llm.model.clone(),
            messages,
            temperature: turn
                .client
                .temperature
                .map_or(turn.avatar.llm.temperature, |asked| {
                    // (Not `clamp`, which panics should the bounds ever cross.)
                    asked.min(turn.avatar.llm.temperature).max(0.0)
                }),
            top_p: turn.client.top_p,
            max_tokens: turn.client.max_tokens.unwrap_or(u32::MAX).clamp(
                1,
                u32::try_from(turn.avatar.llm.max_tokens.max(1)).unwrap_or(1),
            ),
        };
        let prompt_estimate = count_prompt_tokens(&request.messages);
        let max_bytes = usize::try_from(request.max_tokens)
            .unwrap_or(usize::MAX)
            .saturating_mul(MAX_BYTES_PER_TOKEN);
        let Some(started_stream) = until_closed(events, model.stream(request)).await else {
            self.unanswered(turn, false).await;
            return None;
        };
        let mut stream = match started_stream {
            Ok(stream) => stream,
            Err(error) => {
                self.fail_before_answer(turn, events, error.to_string())
                    .await;
                return None;
            }
        };

        let mut content = String::new();
        let mut reported: Option<Usage> = None;
        let mut first_token: Option<u32> = None;
        let ending = loop {
            let next = tokio::select! {
                biased;
                () = events.closed() => break Ending::ClientGone,
                next = stream.next() => next,
            };
            match next {
                None => break Ending::Finished("stop".into()),
                Some(Ok(StreamEvent::Delta(text))) => {
                    first_token.get_or_insert_with(|| millis(started));
                    content.push_str(&text);
                    if events.send(TurnEvent::Delta(text)).await.is_err() {
                        break Ending::ClientGone;
                    }
                    if content.len() > max_bytes {
                        break Ending::Finished("length".into());
                    }
                }
                Some(Ok(StreamEvent::Usage(usage))) => reported = Some(usage),
                Some(Ok(StreamEvent::Finish(reason))) => {
                    // The usage chunk comes after the finish reason: read to the end.
                    if let Some(usage) = drain_usage(&mut stream, events).await {
                        reported = Some(usage);
                    }
                    break Ending::Finished(reason);
                }
                Some(Err(error)) => break Ending::Broken(error.to_string()),
            }
        };
        // Stops the upstream request if it is still going.
        drop(stream);
        Some(Streamed {
            content,
            reported,
            prompt_estimate,
            first_token,
            ending,
        })
    }

    /// Stores the answer (whole, partial or cut), settles the reservation with the usage, and
    /// tells the client how it ended.
    async fn finish(
        &self,
        turn: &Turn,
        events: &mpsc::Sender<TurnEvent>,
        answerer: &Answerer,
        retrieved: Retrieved,
        streamed: Streamed,
        started: Instant,
    ) {
        let model_id = answerer.model.model_id();
        let (finish_reason, failure) = match streamed.ending {
            Ending::Finished(reason) => (reason, None),
            Ending::ClientGone => ("client_disconnected".to_owned(), None),
            Ending::Broken(reason) => ("error".to_owned(), Some(reason)),
        };
        let usage = streamed.reported.unwrap_or(Usage {
            prompt_tokens: streamed.prompt_estimate,
            completion_tokens: count_tokens(&streamed.content),
        });
        let timings = Timings {
            retrieval_ms: retrieved.retrieval_ms,
            time_to_first_token_ms: streamed.first_token,
            total_ms: millis(started),
        };
        // What the call cost (none for a retrieval-only answer: no LLM was called).
        let record = answerer.billed.map(|own_key| UsageRecord {
            kind: UsageKind::Chat,
            model: model_id.clone(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            own_key,
            avatar_id: Some(turn.avatar.id),
            conversation_id: Some(turn.conversation_id),
            document_id: None,
        });
        // The question's embedding, ledgered with the answer.
        let question = UsageRecord {
            kind: UsageKind::Embedding,
            model: retrieved.embedding_model.clone(),
            prompt_tokens: count_tokens(&turn.question),
            completion_tokens: 0,
            own_key: false,
            avatar_id: Some(turn.avatar.id),
            conversation_id: Some(turn.conversation_id),
            document_id: None,
        };
        let stored = self
            .store_answer(
                turn,
                &streamed.content,
                &retrieved.sources,
                usage,
                &model_id,
                &finish_reason,
                timings,
                streamed.reported.is_none(),
                failure.as_deref(),
                answerer.billed.is_none(),
                record.clone(),
                question,
            )
            .await;
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(conversation_id = %turn.conversation_id, "storing an answer failed: {error}");
                // The answer is lost, its cost must not be.
                if let Err(error) = self.billing.settle(&turn.reservation, record).await {
                    tracing::error!(reservation = %turn.reservation.id, "settling a token reservation failed: {error}");
                }
                self.report_unanswered(turn, true).await;
                let failure = match &error {
                    ChatError::Common(Failure::Unavailable(unavailable)) => TurnFailure {
                        code: unavailable.code(),
                        message: unavailable.to_string(),
                        message_id: None,
                    },
                    _ => TurnFailure {
                        code: ErrorCode::Internal,
                        message: "storing the answer failed".into(),
                        message_id: None,
                    },
                };
                let _ = events.send(TurnEvent::Error(failure)).await;
                return;
            }
        };
        if let Some(reason) = failure {
            let _ = events
                .send(TurnEvent::Error(TurnFailure {
                    code: ErrorCode::ExternalServiceError,
                    message: reason,
                    message_id: Some(stored.id),
                }))
                .await;
            return;
        }
        if events
            .send(TurnEvent::Sources(retrieved.sources))
            .await
            .is_ok()
        {
            let _ = events
                .send(TurnEvent::Done(Box::new(Completed {
                    message: message_view(&stored),
                })))
                .await;
        }
    }

    /// No answer, for a reason of ours: logged whole, told to the client in general terms.
    async fn fail_internally(
        &self,
        turn: &Turn,
        events: &mpsc::Sender<TurnEvent>,
        public: &str,
        reason: &str,
    ) {
        self.unanswered(turn, true).await;
        tracing::error!(conversation_id = %turn.conversation_id, "no answer: {reason}");
        let _ = events
            .send(TurnEvent::Error(TurnFailure {
                code: ErrorCode::Internal,
                message: public.to_owned(),
                message_id: None,
            }))
            .await;
    }

    /// No answer: a dependency is down (503, try again shortly).
    async fn fail_unavailable(
        &self,
        turn: &Turn,
        events: &mpsc::Sender<TurnEvent>,
        unavailable: Unavailable,
    ) {
        self.unanswered(turn, true).await;
        let _ = events
            .send(TurnEvent::Error(TurnFailure {
                code: unavailable.code(),
                message: unavailable.to_string(),
                message_id: None,
            }))
            .await;
    }

    async fn fail_before_answer(
        &self,
        turn: &Turn,
        events: &mpsc::Sender<TurnEvent>,
        reason: String,
    ) {
        self.unanswered(turn, true).await;
        tracing::warn!(conversation_id = %turn.conversation_id, "no answer: {reason}");
        let _ = events
            .send(TurnEvent::Error(TurnFailure {
                code: ErrorCode::ExternalServiceError,
                message: reason,
                message_id: None,
            }))
            .await;
    }
}

/// Who answers a turn: the LLM (billed, through the project's own key or not) or the
/// retrieval-only answer (nothing to bill).
struct Answerer {
    model: Arc<dyn ChatModel>,
    /// `Some(own_key)` when an LLM is called; `None` for the retrieval-only answer.
    billed: Option<bool>,
}

/// After the finish reason: the usage chunk, if the server sends one before the stream ends.
/// Stops early if the client goes away.
async fn drain_usage(
    stream: &mut crate::core::llm::ChatStream,
    events: &mpsc::Sender<TurnEvent>,
) -> Option<Usage> {
    let mut usage = None;
    loop {
        let next = tokio::select! {
            biased;
            () = events.closed() => return usage,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(StreamEvent::Usage(reported))) => usage = Some(reported),
            Some(Ok(_)) => {}
            Some(Err(LlmError::Interrupted(_) | LlmError::Unavailable(_))) | None => return usage,
        }
    }
}
