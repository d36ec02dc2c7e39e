//! The LLM failing after the answer started, each way it can: an error event in the stream
//! (a 429 or a 500 reported once the status line was sent), the connection cut, or silence.
//! Whatever the fault, the client's stream ends with an `error` event, the partial answer it
//! saw is what is stored, its tokens are charged once, and the token reservation is settled.

use std::time::Duration;

use avatar_platform::core::tokens::count_tokens;

use crate::chat::{Chat, chat_app, frames, messages_when};
use crate::fake_openai::{Reply, pieces};
use crate::helpers::eventually;

const PARTIAL: &str = "Plans renew every month on the day ";

/// Asks in a new conversation while the model misbehaves as `reply` says, and checks what the
/// client saw against what was stored and charged.
async fn fails_mid_answer(chat: &Chat, reply: Reply, fault: &str) {
    chat.llm.then([reply]);
    let conversation = chat.conversation().await;
    let response = chat
        .ask_streaming(conversation, "When do plans renew?")
        .await;
    assert_eq!(response.status, 200, "{fault}: {}", response.text);
    let frames = frames(&response.text);
    let (last, error) = frames.last().unwrap();
    assert_eq!(last, "error", "{fault}: {frames:?}");
    assert_eq!(error["code"], "EXTERNAL_SERVICE_ERROR", "{fault}: {error}");
    let seen: String = frames
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["text"].as_str().unwrap())
        .collect();
    // All of it, or with the connection cut, what reached the platform before the cut.
    assert!(
        !seen.is_empty() && PARTIAL.starts_with(&seen),
        "{fault}: the client saw the answer's beginning: {seen:?}"
    );

    let stored = messages_when(chat, conversation, |messages| messages.len() == 2).await;
    let answer = &stored[1];
    assert_eq!(answer["id"], error["message_id"], "{fault}");
    assert_eq!(answer["finish_reason"], "error", "{fault}");
    assert_eq!(answer["content"], seen.as_str(), "{fault}");
    let completion = answer["usage"]["completion_tokens"].as_i64().unwrap();
    assert_eq!(
        completion,
        i64::from(count_tokens(&seen)),
        "{fault}: the partial answer is counted by the tokenizer"
    );
    assert!(
        answer["usage"]["prompt_tokens"].as_i64().unwrap() > 0,
        "{fault}"
    );

    // Charged once, in the ledger, as stored on the message.
    let ledger = |column: &'static str| {
        format!(
            "SELECT coalesce(sum({column}), 0)::bigint AS n FROM usage_ledger \
             WHERE conversation_id = $1 AND kind = 'chat'"
        )
    };
    assert_eq!(
        chat.number(
            "SELECT count(*) AS n FROM usage_ledger WHERE conversation_id = $1 AND kind = 'chat'",
            conversation
        )
        .await,
        1,
        "{fault}: one chat row in the ledger"
    );
    assert_eq!(
        chat.number(&ledger("completion_tokens"), conversation)
            .await,
        completion,
        "{fault}"
    );
    assert_eq!(
        chat.number(&ledger("prompt_tokens"), conversation).await,
        answer["usage"]["prompt_tokens"].as_i64().unwrap(),
        "{fault}"
    );
    settled(chat, fault).await;
}

/// Nothing stays reserved, and what the period used is what the ledger counted.
async fn settled(chat: &Chat, fault: &str) {
    eventually(
        Duration::from_secs(10),
        "the reservation is settled",
        || async {
            match chat.still_reserved().await {
                0 => Ok(()),
                left => Err(format!("{fault}: {left} still reserved")),
            }
        },
    )
    .await;
    let used = chat
        .number(
            "SELECT tokens_used AS n FROM subscriptions WHERE project_id = $1",
            chat.pid,
        )
        .await;
    let counted = chat
        .number(
            "SELECT coalesce(sum(total_tokens), 0)::bigint AS n FROM usage_ledger \
         WHERE project_id = $1 AND counted",
            chat.pid,
        )
        .await;
    assert_eq!(used, counted, "{fault}: the period's use is the ledger's");
}

#[tokio::test]
async fn a_model_failing_mid_answer_leaves_the_partial_answer_charged_once_and_nothing_reserved() {
    let chat = chat_app(
        &[("APP__CHAT__IDLE_TIMEOUT_SECS", "1")],
        Reply::answer("unused", (1, 1)),
        true,
    )
    .await;
    fails_mid_answer(
        &chat,
        Reply::StreamThenError {
            chunks: pieces(PARTIAL),
            status: 429,
        },
        "a 429 in the stream",
    )
    .await;
    fails_mid_answer(
        &chat,
        Reply::StreamThenError {
            chunks: pieces(PARTIAL),
            status: 500,
        },
        "a 500 in the stream",
    )
    .await;
    let mut cut = pieces(PARTIAL);
    let whole = cut.len();
    cut.push("rest of the answer".into());
    fails_mid_answer(
        &chat,
        Reply::Stream {
            chunks: cut,
            // Apart, so the pieces reach the client before the cut (a cut arriving with the
            // first bytes is retried instead, as nothing was sent yet).
            gap: Duration::from_millis(30),
            usage: Some((10, 10)),
            break_after: Some(whole),
        },
        "the connection cut",
    )
    .await;
    fails_mid_answer(
        &chat,
        Reply::StreamThenSilence {
            chunks: pieces(PARTIAL),
        },
        "silence",
    )
    .await;
    // None of it was retried once text had gone to the client.
    assert_eq!(chat.llm.requests().len(), 4);
}
