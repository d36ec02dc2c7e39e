//! The prompt of one answer: the avatar's system prompt with the retrieved passages as
//! numbered sources, the conversation's history (newest first, within a token budget, then
//! put back in order), and the new message.

use crate::core::llm::{ChatMessage, Passage, Role, count_tokens};

/// The system message: the avatar's own prompt, then how to use the sources (retrieved
/// passages, numbered from `[1]`), then them.
pub fn system_message(system_prompt: &str, sources: &[Passage]) -> ChatMessage {
    let mut content = system_prompt.trim().to_owned();
    if sources.is_empty() {
        content.push_str(
            "\n\nNo passage of the documents matched this question. Say so if the answer \
             depends on them.",
        );
    } else {
        content.push_str(
            "\n\nAnswer from the sources below. Cite them with their numbers in brackets, \
             like [1]. If they do not contain the answer, say so.\n\nSources:",
        );
        for (index, source) in sources.iter().enumerate() {
            content.push_str(&format!(
                "\n\n[{}] {}\n{}",
                index + 1,
                source.label,
                source.text.trim()
            ));
        }
    }
    ChatMessage::new(Role::System, content)
}

/// The most recent `history` messages (given oldest first) that fit in `budget` tokens, oldest
/// first. A message that does not fit ends the history: older ones are not skipped to.
pub fn trim_history(history: &[ChatMessage], budget: u32) -> Vec<ChatMessage> {
    let mut used = 0u32;
    let mut kept: Vec<ChatMessage> = Vec::new();
    for message in history.iter().rev() {
        let tokens = count_tokens(&message.content) + 4;
        if used + tokens > budget {
            break;
        }
        used += tokens;
        kept.push(message.clone());
    }
    kept.reverse();
    kept
}

/// System message, trimmed history, the new message.
pub fn build(
    system_prompt: &str,
    sources: &[Passage],
    history: &[ChatMessage],
    history_budget: u32,
    question: &str,
) -> Vec<ChatMessage> {
    let mut messages = vec![system_message(system_prompt, sources)];
    messages.extend(trim_history(history, history_budget));
    messages.push(ChatMessage::new(Role::User, question));
    messages
}
