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

/// The system prompt of an answer: the avatar's own, then what the client added (the
/// OpenAI-compatible API's `system` messages), which never replaces it.
pub fn instructions(avatar_prompt: &str, client: Option<&str>) -> String {
    match client.map(str::trim).filter(|text| !text.is_empty()) {
        Some(client) => format!("{}\n\n{client}", avatar_prompt.trim()),
        None => avatar_prompt.to_owned(),
    }
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

/// Sources numbered in the system message, history trimmed newest-first to a token budget, and
/// the retrieval-only answer.
#[cfg(test)]
mod tests {
    use super::{build, trim_history};
    use crate::core::llm::{ChatMessage, Passage, RetrievalOnly, Role, count_tokens};

    fn turns(count: usize) -> Vec<ChatMessage> {
        (0..count)
            .map(|n| {
                let role = if n % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                ChatMessage::new(role, format!("message {n} about installing packages"))
            })
            .collect()
    }

    #[test]
    fn history_keeps_the_newest_messages_that_fit_in_order() {
        let history = turns(10);
        let each = count_tokens(&history[0].content) + 4;
        let kept = trim_history(&history, each * 3 + each / 2);
        assert_eq!(kept, history[7..].to_vec());
        assert!(trim_history(&history, each - 1).is_empty());
        assert_eq!(trim_history(&history, u32::MAX), history);
    }

    #[test]
    fn a_message_too_large_ends_the_history_instead_of_being_skipped() {
        let mut history = turns(4);
        history[2].content = "long ".repeat(500);
        let each = count_tokens(&history[3].content) + 4;
        // Room for message 3 and for message 1, but message 2 does not fit: 1 is not reached.
        let kept = trim_history(&history, each * 2 + 10);
        assert_eq!(kept, history[3..].to_vec());
    }

    #[test]
    fn the_prompt_numbers_the_sources_and_ends_with_the_question() {
        let sources = vec![
            Passage {
                label: "guide.pdf, page 3".into(),
                text: "update.packages() updates everything.".into(),
            },
            Passage {
                label: "faq.md".into(),
                text: "gc() reports memory.".into(),
            },
        ];
        let messages = build(
            "You are helpful.",
            &sources,
            &turns(2),
            1_000,
            "How to update?",
        );
        assert_eq!(messages.len(), 4);
        let system = &messages[0];
        assert_eq!(system.role, Role::System);
        assert!(system.content.starts_with("You are helpful."));
        let first = system
            .content
            .find("[1] guide.pdf, page 3\nupdate.packages()")
            .unwrap();
        let second = system.content.find("[2] faq.md\ngc()").unwrap();
        assert!(first < second);
        assert_eq!(messages[3], ChatMessage::new(Role::User, "How to update?"));

        let without = build("You are helpful.", &[], &[], 1_000, "Hi");
        assert!(
            without[0]
                .content
                .contains("No passage of the documents matched")
        );
    }

    #[test]
    fn the_retrieval_only_answer_says_what_it_is_and_quotes_the_passages() {
        let answer = RetrievalOnly {
            passages: vec![Passage {
                label: "guide.md".into(),
                text: "  Use install.packages().  ".into(),
            }],
        }
        .answer();
        assert!(answer.starts_with("No language model is configured"));
        assert!(
            answer.ends_with("[1] guide.md\nUse install.packages().\n"),
            "{answer}"
        );
        let nothing = RetrievalOnly { passages: vec![] }.answer();
        assert!(nothing.contains("none of them matches"), "{nothing}");
    }
}
