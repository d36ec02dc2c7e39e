//! What an update asks of the bot, read from its payload alone (no database, no network): the
//! webhook's check of a body, and the handler's reading of a stored update — the parts the
//! fuzzer drives (`telegram::testkit`).

use frankenstein::types::{Chat, ChatType, Message, User};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::telegram::{Update, UpdateContent};

use super::super::domain::errors::TelegramError;

/// All the webhook reads of an update before storing it.
#[derive(Deserialize)]
struct UpdateId {
    update_id: i64,
}

/// A webhook body checked as JSON and kept as received (stored as it came, never parsed into
/// a tree), with its `update_id`.
pub fn read_webhook_body(body: &[u8]) -> Result<(i64, Box<RawValue>), TelegramError> {
    let payload: Box<RawValue> = serde_json::from_slice(body)
        .map_err(|error| TelegramError::MalformedUpdate(error.to_string()))?;
    let update: UpdateId = serde_json::from_str(payload.get())
        .map_err(|error| TelegramError::MalformedUpdate(error.to_string()))?;
    Ok((update.update_id, payload))
}

/// A message the bot answers: where it was written, by whom, and what it asks.
#[derive(Debug)]
pub struct Addressed {
    pub chat: Box<Chat>,
    pub from: Box<User>,
    /// A private chat (else a group: one end user, one conversation for all its members).
    pub private: bool,
    pub asks: Asks,
}

/// What a message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Asks {
    /// A photo, a sticker, a voice note...: answered with a sentence saying so.
    NotText,
    Start,
    Help,
    Reset,
    /// The question, trimmed, without the bot's `@name`.
    Question(String),
}

/// Reads a stored update as the handler answers it: `None` for what the bot leaves unanswered
/// — kinds of update other than a new message, shapes it does not know, bots' messages, talk
/// in a group that is not addressed to it, another bot's command.
pub fn read_update(
    payload: serde_json::Value,
    bot_id: i64,
    bot_username: &str,
) -> Option<Addressed> {
    let update = serde_json::from_value::<Update>(payload).ok()?;
    let UpdateContent::Message(message) = update.content else {
        return None;
    };
    let Message {
        chat,
        from,
        text,
        reply_to_message,
        ..
    } = *message;
    let from = from.filter(|user| !user.is_bot)?;
    let private = matches!(chat.type_field, ChatType::Private);
    let mention = format!("@{bot_username}");
    let text = text.as_deref().map(str::trim);
    if !private {
        // In a group: only what is addressed to the bot.
        let replied_to_bot = reply_to_message
            .as_deref()
            .and_then(|replied| replied.from.as_deref())
            .is_some_and(|author| i64::try_from(author.id).ok() == Some(bot_id));
        let mentioned = text.is_some_and(|text| text.contains(&mention));
        let command = text.is_some_and(|text| text.starts_with('/'));
        if !replied_to_bot && !mentioned && !command {
            return None;
        }
    }
    let asks = match text {
        None => Asks::NotText,
        Some(text) => match request(&text.replace(&mention, ""), bot_username)? {
            Request::Start => Asks::Start,
            Request::Help => Asks::Help,
            Request::Reset => Asks::Reset,
            Request::Text(question) => Asks::Question(question.to_owned()),
        },
    };
    Some(Addressed {
        chat,
        from,
        private,
        asks,
    })
}

/// What a message's text asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request<'a> {
    Start,
    Help,
    Reset,
    Text(&'a str),
}

/// The command or text of `text`; `/cmd@this_bot` is this bot's command, `/cmd@other` another's.
fn request<'a>(text: &'a str, username: &str) -> Option<Request<'a>> {
    let trimmed = text.trim();
    let Some(command) = trimmed.strip_prefix('/') else {
        return Some(Request::Text(trimmed));
    };
    let word = command.split_whitespace().next().unwrap_or_default();
    let (name, addressee) = word.split_once('@').unwrap_or((word, username));
    if !addressee.eq_ignore_ascii_case(username) {
        return None;
    }
    Some(match name.to_ascii_lowercase().as_str() {
        "start" => Request::Start,
        "reset" | "new" => Request::Reset,
        "help" => Request::Help,
        _ => Request::Help,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Asks, Request, read_update, request};

    #[test]
    fn commands_are_read_with_or_without_the_bot_s_name() {
        assert_eq!(request("/start", "r_bot"), Some(Request::Start));
        assert_eq!(request("/start@R_Bot", "r_bot"), Some(Request::Start));
        assert_eq!(request("/reset", "r_bot"), Some(Request::Reset));
        assert_eq!(request("/whatever", "r_bot"), Some(Request::Help));
        assert_eq!(request("/start@other_bot", "r_bot"), None);
        assert_eq!(
            request("  How do I update?  ", "r_bot"),
            Some(Request::Text("How do I update?"))
        );
    }

    fn message(chat: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
        let mut message = json!({
            "message_id": 5,
            "date": 1_700_000_000,
            "chat": chat,
            "from": {"id": 42, "is_bot": false, "first_name": "Ada"},
        });
        if let (Some(message), Some(extra)) = (message.as_object_mut(), extra.as_object()) {
            message.extend(extra.clone());
        }
        json!({"update_id": 7, "message": message})
    }

    #[test]
    fn updates_are_read_as_the_handler_answers_them() {
        let private = json!({"id": 42, "type": "private", "first_name": "Ada"});
        let group = json!({"id": -100, "type": "group", "title": "Team"});
        let asks = |payload| read_update(payload, 777, "r_bot").map(|addressed| addressed.asks);
        assert_eq!(
            asks(message(private.clone(), json!({"text": "  Hi there "}))),
            Some(Asks::Question("Hi there".into()))
        );
        assert_eq!(
            asks(message(private.clone(), json!({"text": "/new"}))),
            Some(Asks::Reset)
        );
        assert_eq!(
            asks(message(private.clone(), json!({"photo": []}))),
            Some(Asks::NotText)
        );
        // A group: only a mention, a command or a reply to the bot.
        assert_eq!(
            asks(message(group.clone(), json!({"text": "chatter"}))),
            None
        );
        assert_eq!(
            asks(message(group.clone(), json!({"text": "@r_bot what now?"}))),
            Some(Asks::Question("what now?".into()))
        );
        let reply = json!({"text": "and then?", "reply_to_message": {
            "message_id": 4, "date": 1_700_000_000, "chat": group,
            "from": {"id": 777, "is_bot": true, "first_name": "R"},
        }});
        assert_eq!(
            asks(message(group, reply)),
            Some(Asks::Question("and then?".into()))
        );
        // Other kinds, bots, unknown shapes: not answered.
        let edited = json!({"update_id": 8, "edited_message": {
            "message_id": 5, "date": 1, "chat": private, "text": "fixed"}});
        assert_eq!(asks(edited), None);
        let bot = json!({"update_id": 9, "message": {"message_id": 1, "date": 1,
            "chat": private, "from": {"id": 1, "is_bot": true, "first_name": "B"}, "text": "hi"}});
        assert_eq!(asks(bot), None);
        assert_eq!(asks(json!({"update_id": "x"})), None);
    }
}
