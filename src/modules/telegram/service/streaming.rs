//! An answer streamed into a Telegram chat: the first message as soon as the first tokens
//! arrive, then edited at a throttled pace (`telegram.edit_interval_ms`) as the text grows;
//! past Telegram's 4 096-character limit it continues in new messages, split at a paragraph,
//! sentence or word boundary. Mid-stream edits that Telegram refuses with 429 are skipped (the
//! next carries the text); the final text is sent until it lands, waiting as Telegram asks.

use std::time::{Duration, Instant};

use crate::core::telegram::{BotApi, BotApiError, MAX_MESSAGE_UTF16};

/// Attempts at the final text when Telegram keeps answering 429.
const FINAL_ATTEMPTS: usize = 5;

fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// The byte index at which `text`'s first `limit` UTF-16 units end (on a char boundary).
fn byte_index_of_units(text: &str, limit: usize) -> usize {
    let mut units = 0;
    for (index, ch) in text.char_indices() {
        units += ch.len_utf16();
        if units > limit {
            return index;
        }
    }
    text.len()
}

/// Where to cut a window: after its last paragraph break, else sentence end, else space —
/// looked for in its second half, so a part is never tiny — else at the window's end.
fn cut_point(window: &str) -> usize {
    let half = window.len() / 2;
    let after = |pattern: &str| {
        window[half..]
            .rfind(pattern)
            .map(|at| half + at + pattern.len())
    };
    after("\n\n")
        .or_else(|| after(". "))
        .or_else(|| after("! "))
        .or_else(|| after("? "))
        .or_else(|| after("\n"))
        .or_else(|| after(" "))
        .filter(|&at| at > 0 && window.is_char_boundary(at))
        .unwrap_or(window.len())
}

/// `text` as messages of at most `limit` UTF-16 units. A part depends only on the text before
/// its end, so as a streamed text grows, the parts already full never change.
pub fn split(text: &str, limit: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while utf16_len(rest) > limit {
        let window = &rest[..byte_index_of_units(rest, limit)];
        let at = cut_point(window);
        parts.push(&rest[..at]);
        rest = &rest[at..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest);
    }
    parts
        .into_iter()
        .map(str::trim_end)
        .filter(|part| !part.trim().is_empty())
        .collect()
}

/// How the chat took the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Shown,
    /// The user blocked the bot: stop writing to them.
    Blocked,
}

/// The messages of one answer in one chat.
pub struct Relay<'a> {
    api: &'a BotApi,
    chat_id: i64,
    interval: Duration,
    /// Each message sent: its id and the text it shows.
    sent: Vec<(i32, String)>,
    next_edit: Instant,
}

impl<'a> Relay<'a> {
    pub fn new(api: &'a BotApi, chat_id: i64, interval: Duration) -> Self {
        Relay {
            api,
            chat_id,
            interval,
            sent: Vec::new(),
            next_edit: Instant::now(),
        }
    }

    /// The text so far: shown now if the pace allows. An edit refused with 429, or failed on
    /// Telegram's side (5xx, no answer), waits for the next one: the answer goes on.
    pub async fn progress(&mut self, text: &str) -> Result<Delivered, BotApiError> {
        if !self.sent.is_empty() && Instant::now() < self.next_edit {
            return Ok(Delivered::Shown);
        }
        match self.show(text).await {
            Err(BotApiError::RetryAfter(seconds)) => {
                self.next_edit = Instant::now() + Duration::from_secs(u64::from(seconds));
                Ok(Delivered::Shown)
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(
                    chat_id = self.chat_id,
                    "an edit failed, the next one follows: {error}"
                );
                self.next_edit = Instant::now() + self.interval;
                Ok(Delivered::Shown)
            }
            other => other,
        }
    }

    /// The whole text, shown whatever it takes: Telegram's `retry_after` waited out, and its
    /// own failures (5xx, no answer) tried again a second later, up to `FINAL_ATTEMPTS` times.
    pub async fn finish(&mut self, text: &str) -> Result<Delivered, BotApiError> {
        let mut attempt = 0;
        loop {
            let wait = match self.show(text).await {
                Err(BotApiError::RetryAfter(seconds)) if attempt + 1 < FINAL_ATTEMPTS => {
                    seconds.max(1)
                }
                Err(error) if error.is_transient() && attempt + 1 < FINAL_ATTEMPTS => 1,
                other => return other,
            };
            attempt += 1;
            tokio::time::sleep(Duration::from_secs(u64::from(wait))).await;
        }
    }

    /// Brings the chat's messages in line with `text`: edits the ones whose part changed,
    /// sends the new parts.
    async fn show(&mut self, text: &str) -> Result<Delivered, BotApiError> {
        let parts = split(text, MAX_MESSAGE_UTF16);
        for (index, part) in parts.iter().enumerate() {
            let outcome = match self.sent.get(index) {
                Some((_, shown)) if shown == part => continue,
                Some((message_id, _)) => {
                    let message_id = *message_id;
                    self.api.edit_text(self.chat_id, message_id, part).await
                }
                None => match self.api.send_text(self.chat_id, part).await {
                    Ok(message_id) => {
                        self.sent.push((message_id, String::new()));
                        Ok(())
                    }
                    Err(error) => Err(error),
                },
            };
            match outcome {
                Ok(()) => self.sent[index].1 = (*part).to_owned(),
                Err(BotApiError::Forbidden(_)) => return Ok(Delivered::Blocked),
                Err(error) => return Err(error),
            }
        }
        self.next_edit = Instant::now() + self.interval;
        Ok(Delivered::Shown)
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn short_texts_are_one_part() {
        assert_eq!(split("Hello.", 4096), ["Hello."]);
        assert!(split("", 4096).is_empty());
    }

    #[test]
    fn long_texts_split_at_paragraphs_then_sentences_then_words() {
        let paragraph = "word ".repeat(60); // 300 bytes
        let text = format!("{paragraph}\n\n{paragraph}\n\n{paragraph}");
        let parts = split(&text, 700);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|part| part.encode_utf16().count() <= 700));
        assert_eq!(
            parts[0].trim_end(),
            format!("{paragraph}\n\n{paragraph}").trim_end()
        );
        let sentences = "This is a sentence. ".repeat(50);
        let parts = split(&sentences, 300);
        assert!(parts[0].ends_with('.'), "{:?}", parts[0]);
        let joined: String = parts.concat();
        assert_eq!(joined.replace(' ', ""), sentences.replace(' ', ""));
    }

    #[test]
    fn limits_count_utf16_units_and_cuts_stay_on_char_boundaries() {
        let emoji = "😀".repeat(3000); // 2 units each, no spaces
        let parts = split(&emoji, 4096);
        assert!(parts.iter().all(|part| part.encode_utf16().count() <= 4096));
        assert_eq!(parts.concat(), emoji);
    }

    #[test]
    fn full_parts_do_not_change_as_the_text_grows() {
        let mut text = String::new();
        let mut first: Option<String> = None;
        for n in 0..400 {
            text.push_str(&format!("Sentence number {n} is here. "));
            let parts = split(&text, 1000);
            if parts.len() > 1 {
                match &first {
                    None => first = Some(parts[0].to_owned()),
                    Some(seen) => assert_eq!(seen, parts[0]),
                }
            }
        }
        assert!(first.is_some());
    }
}
