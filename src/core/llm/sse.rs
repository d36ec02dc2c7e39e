//! Reading a streamed chat completion: the body's server-sent events (`data:` lines holding
//! `chat.completion.chunk` objects, then `[DONE]`) turned into [`StreamEvent`]s. It depends on
//! nothing but the bytes and when they arrive, so the fuzzer drives the very code the client
//! runs (`core::llm::testkit`).

use std::fmt;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use super::{LlmError, StreamEvent, Usage};
use crate::core::upstream::error_message;

#[derive(Deserialize)]
struct CompletionChunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChunkDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
}

/// The answer carried by a completion's streamed `body`: text deltas, the usage and the finish
/// reason, in the order they come. It ends after `[DONE]` or at the end of a finished body; a
/// body that breaks, goes silent for `idle` between two events, sends an unreadable chunk or
/// reports an error ends it with [`LlmError::Interrupted`] (the details go to the log).
pub fn decode_sse<S, B, E>(
    body: S,
    idle: Duration,
) -> impl Stream<Item = Result<StreamEvent, LlmError>> + Send
where
    S: Stream<Item = Result<B, E>> + Send,
    B: AsRef<[u8]> + Send,
    E: fmt::Display + Send,
{
    async_stream::try_stream! {
        let mut events = std::pin::pin!(without_byte_order_mark(body).eventsource());
        let mut finished = false;
        loop {
            let next = tokio::time::timeout(idle, events.next()).await.map_err(|_| {
                LlmError::Interrupted(format!("the LLM stream went silent for {idle:?}"))
            })?;
            // The end of the body without a finish reason or `[DONE]` is a cut, not an
            // answer (a proxy timing out, or a server that did not stream at all).
            let Some(event) = next else {
                if finished {
                    break;
                }
                Err(LlmError::Interrupted(
                    "the LLM stream ended before the answer was finished".to_owned(),
                ))?;
                break;
            };
            let event = event.map_err(|error| {
                tracing::warn!("the LLM stream broke: {error}");
                LlmError::Interrupted("the LLM stream broke".to_owned())
            })?;
            let data = event.data.trim();
            if data == "[DONE]" {
                if !finished {
                    yield StreamEvent::Finish("stop".to_owned());
                }
                break;
            }
            if data.is_empty() {
                continue;
            }
            // What the endpoint says goes to the log, not to the person asking.
            let chunk: CompletionChunk = serde_json::from_str(data).map_err(|error| {
                tracing::warn!("the LLM stream sent an unreadable chunk: {error}");
                LlmError::Interrupted("the LLM stream sent an unreadable chunk".to_owned())
            })?;
            if let Some(error) = chunk.error {
                let body = error.to_string();
                tracing::warn!(
                    "the LLM endpoint reported an error mid-answer: {}",
                    error_message(body.as_bytes())
                );
                Err(LlmError::Interrupted(
                    "the LLM endpoint reported an error mid-answer".to_owned(),
                ))?;
            }
            if let Some(usage) = chunk.usage {
                metrics::counter!("llm_tokens_total", "kind" => "prompt")
                    .increment(u64::from(usage.prompt_tokens));
                metrics::counter!("llm_tokens_total", "kind" => "completion")
                    .increment(u64::from(usage.completion_tokens));
                yield StreamEvent::Usage(usage);
            }
            for choice in chunk.choices {
                if let Some(content) = choice.delta.content.filter(|text| !text.is_empty()) {
                    yield StreamEvent::Delta(content);
                }
                if let Some(reason) = choice.finish_reason {
                    finished = true;
                    yield StreamEvent::Finish(reason);
                }
            }
        }
    }
}

/// SSE allows one byte-order mark before the first event. eventsource-stream 0.2 drops it by
/// slicing one byte off its three, which panics; so its parser gets the body without the mark
/// (removed here, even when it comes split over pieces) and after an empty line, which starts
/// the parser so that it never looks for one itself (a second mark is then text, as the format
/// says).
fn without_byte_order_mark<S, B, E>(body: S) -> impl Stream<Item = Result<Piece<B>, E>> + Send
where
    S: Stream<Item = Result<B, E>> + Send,
    B: AsRef<[u8]> + Send,
    E: Send,
{
    const MARK: &[u8] = b"\xef\xbb\xbf";
    async_stream::stream! {
        yield Ok(Piece::Held(b"\n".to_vec()));
        let mut body = std::pin::pin!(body);
        // The first bytes, held until they are known to be the mark or not.
        let mut head = Some(Vec::new());
        while let Some(piece) = body.next().await {
            let piece = match (piece, head.take()) {
                (Ok(piece), Some(mut held)) => {
                    held.extend_from_slice(piece.as_ref());
                    if held.len() < MARK.len() && MARK.starts_with(&held) {
                        head = Some(held);
                        continue;
                    }
                    if held.starts_with(MARK) {
                        held.drain(..MARK.len());
                    }
                    Ok(Piece::Held(held))
                }
                (Err(error), Some(held)) => {
                    yield Ok(Piece::Held(held));
                    Err(error)
                }
                (piece, None) => piece.map(Piece::Whole),
            };
            yield piece;
        }
        if let Some(held) = head {
            yield Ok(Piece::Held(held));
        }
    }
}

/// A piece of the body as it came, or bytes of its first pieces held back.
enum Piece<B> {
    Whole(B),
    Held(Vec<u8>),
}

impl<B: AsRef<[u8]>> AsRef<[u8]> for Piece<B> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Piece::Whole(bytes) => bytes.as_ref(),
            Piece::Held(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::decode_sse;
    use crate::core::llm::{LlmError, StreamEvent, Usage};

    /// `body` decoded as the client decodes it, arriving in pieces of `piece` bytes.
    async fn decode(body: &[u8], piece: usize) -> Vec<Result<StreamEvent, LlmError>> {
        let pieces: Vec<Result<Vec<u8>, Infallible>> =
            body.chunks(piece).map(|bytes| Ok(bytes.to_vec())).collect();
        decode_sse(futures_util::stream::iter(pieces), Duration::from_secs(60))
            .collect()
            .await
    }

    const ANSWER: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
        : a comment\r\n\r\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
        data: [DONE]\n\n";

    fn answered() -> Vec<Result<StreamEvent, LlmError>> {
        vec![
            Ok(StreamEvent::Delta("Hel".into())),
            Ok(StreamEvent::Delta("lo".into())),
            Ok(StreamEvent::Finish("stop".into())),
            Ok(StreamEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
            })),
        ]
    }

    #[tokio::test]
    async fn an_answer_reads_the_same_however_it_is_cut() {
        for piece in [1, 2, 3, 7, ANSWER.len()] {
            assert_eq!(decode(ANSWER, piece).await, answered(), "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn a_byte_order_mark_before_the_first_event_is_skipped_not_a_panic() {
        // Found by the sse fuzz target (with its grammar dictionary): eventsource-stream sliced
        // the mark's first byte off and panicked (a byte index inside a character), taking the
        // answer's task down. Its input: pieces of 34 bytes, a mark, an invalid byte.
        assert_eq!(
            decode(b"\xef\xbb\xbf\xa7", 34).await,
            vec![Err(LlmError::Interrupted("the LLM stream broke".into()))]
        );
        let marked = [b"\xef\xbb\xbf".as_slice(), ANSWER].concat();
        for piece in [1, 2, 4, marked.len()] {
            assert_eq!(
                decode(&marked, piece).await,
                answered(),
                "pieces of {piece}"
            );
        }
        // A second mark is text: the first line's field is unknown, the rest is read.
        let twice = [b"\xef\xbb\xbf\xef\xbb\xbf".as_slice(), ANSWER].concat();
        assert_eq!(decode(&twice, 5).await, answered()[1..]);
        // A body that is only part of a mark ends like any unfinished one.
        assert_eq!(
            decode(b"\xef\xbb", 1).await,
            vec![Err(LlmError::Interrupted("the LLM stream broke".into()))]
        );
    }

    #[tokio::test]
    async fn a_cut_or_broken_stream_ends_with_an_interruption() {
        let cut = decode(&ANSWER[..40], 8).await;
        assert_eq!(
            cut.last(),
            Some(&Err(LlmError::Interrupted(
                "the LLM stream ended before the answer was finished".into()
            )))
        );
        assert_eq!(
            decode(b"data: {not json}\n\n", 3).await,
            vec![Err(LlmError::Interrupted(
                "the LLM stream sent an unreadable chunk".into()
            ))]
        );
    }
}
