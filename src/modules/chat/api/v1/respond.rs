//! An answer as the client asked for it: Server-Sent Events with `Accept: text/event-stream`
//! (`delta`, `sources`, `done` or `error`, each `data:` a JSON object), else one JSON body
//! once the answer is complete.

use std::convert::Infallible;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::core::error::{AppError, ErrorCode, UNAVAILABLE_RETRY_AFTER_SECS};
use crate::core::ids::ConversationId;
use crate::modules::chat::pipeline::TurnEvent;
use crate::modules::chat::service::{Answer, MessageView};
use crate::modules::end_users::EndUserView;

/// The JSON form of an answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatResponse {
    #[schema(value_type = uuid::Uuid)]
    pub conversation_id: ConversationId,
    /// The end user who asked (public API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUserView>,
    pub user_message: MessageView,
    pub assistant_message: MessageView,
}

/// Whether the client asked for a stream.
pub fn wants_stream(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/event-stream"))
}

fn frame(event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn sse_frame(event: TurnEvent) -> Bytes {
    match event {
        TurnEvent::Delta(text) => frame("delta", &json!({ "text": text })),
        TurnEvent::Sources(sources) => frame("sources", &json!({ "sources": sources })),
        TurnEvent::Done(completed) => {
            let message = &completed.message;
            frame(
                "done",
                &json!({
                    "message_id": message.id,
                    "conversation_id": message.conversation_id,
                    "usage": message.usage,
                    "timings": message.timings,
                    "finish_reason": message.finish_reason,
                    "model": message.model,
                }),
            )
        }
        TurnEvent::Error(failure) => frame(
            "error",
            &json!({
                "code": failure.code.as_str(),
                "message": failure.message,
                "message_id": failure.message_id,
            }),
        ),
    }
}

/// Streams the answer. The first frame (`start`) names the conversation and the stored
/// question; every delta is written as it comes. Proxies are told not to buffer.
pub fn stream(answer: Answer) -> HttpResponse {
    let start = frame(
        "start",
        &json!({
            "conversation_id": answer.conversation_id,
            "user_message_id": answer.user_message.id,
            "end_user_id": answer.end_user.as_ref().map(|user| user.id),
        }),
    );
    let events = futures_util::stream::unfold(
        (Some(start), answer.events),
        |(first, mut events)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(first), (None, events)));
            }
            let event = events.recv().await?;
            Some((Ok(sse_frame(event)), (None, events)))
        },
    );
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header(("X-Accel-Buffering", HeaderValue::from_static("no")))
        .streaming(events)
}

/// Waits for the whole answer and answers with JSON; a failed answer is an error response
/// (502 `EXTERNAL_SERVICE_ERROR` when the model failed).
pub async fn json(mut answer: Answer) -> Result<HttpResponse, AppError> {
    while let Some(event) = answer.events.recv().await {
        match event {
            TurnEvent::Delta(_) | TurnEvent::Sources(_) => {}
            TurnEvent::Done(completed) => {
                return Ok(HttpResponse::Ok().json(ChatResponse {
                    conversation_id: answer.conversation_id,
                    end_user: answer.end_user,
                    user_message: answer.user_message,
                    assistant_message: completed.message,
                }));
            }
            TurnEvent::Error(failure) => {
                let mut error = AppError::new(failure.code, failure.message);
                if let Some(message_id) = failure.message_id {
                    error = error.with_details(json!({ "message_id": message_id }));
                }
                if failure.code == ErrorCode::ServiceUnavailable {
                    error = error.with_retry_after(UNAVAILABLE_RETRY_AFTER_SECS);
                }
                return Err(error);
            }
        }
    }
    Err(AppError::internal(anyhow::anyhow!(
        "the answer ended without a result"
    )))
}

/// SSE or JSON, as asked.
pub async fn respond(request: &HttpRequest, answer: Answer) -> Result<HttpResponse, AppError> {
    if wants_stream(request) {
        Ok(stream(answer))
    } else {
        json(answer).await
    }
}
