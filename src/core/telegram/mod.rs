//! The Telegram Bot API, for the modules that talk to it (`telegram`, `notifications`):
//! frankenstein's typed calls, sent with the outbound policy's HTTP client (our reqwest and
//! rustls: no second stack) to the operator's `telegram.api_base_url`, or to a project's own Bot
//! API server (`TELEGRAM_API_BASE_URL`, judged as a tenant URL). A bot token is checked for
//! Telegram's format before it goes into any URL, and is sealed bound to the endpoint it was
//! entered for ([`TELEGRAM_SECRETS`]).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use frankenstein::AsyncTelegramApi;
use frankenstein::client_reqwest::Bot;
use frankenstein::methods::{
    DeleteWebhookParams, EditMessageTextParams, GetUpdatesParams, SendChatActionParams,
    SendMessageParams, SetWebhookParams,
};
use frankenstein::response::MethodResponse;
use frankenstein::types::{AllowedUpdate, ChatAction, LinkPreviewOptions};
use secrecy::{ExposeSecret, SecretString};

use crate::core::outbound::{BaseUrl, SecretBinding};

mod polling;

pub use polling::{PolledBot, long_poll};

pub use frankenstein::types::User as BotUser;
pub use frankenstein::updates::{Update, UpdateContent};

/// A project's bot token, sealed bound to the Bot API endpoint it was entered for: a
/// project-set `TELEGRAM_API_BASE_URL` (a self-hosted Bot API server), else the platform's.
pub const TELEGRAM_SECRETS: SecretBinding = SecretBinding {
    credential: "TELEGRAM_BOT_TOKEN",
    endpoint: "TELEGRAM_API_BASE_URL",
};

/// The longest text of one message, in UTF-16 code units (Telegram counts those).
pub const MAX_MESSAGE_UTF16: usize = 4096;

/// The update kinds the platform asks for.
pub const ALLOWED_UPDATES: [AllowedUpdate; 3] = [
    AllowedUpdate::Message,
    AllowedUpdate::EditedMessage,
    AllowedUpdate::CallbackQuery,
];

/// A bot token: `<bot id>:<at least 30 URL-safe characters>`.
#[derive(Clone)]
pub struct BotToken {
    token: SecretString,
    bot_id: i64,
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotToken({}:***)", self.bot_id)
    }
}

impl BotToken {
    /// Checks the format (nothing else: [`BotApi::get_me`] tells if Telegram knows it).
    pub fn parse(text: &str) -> Result<BotToken, &'static str> {
        const FORMAT: &str = "is not a Telegram bot token (<bot id>:<secret>, from @BotFather)";
        let text = text.trim();
        let (id, secret) = text.split_once(':').ok_or(FORMAT)?;
        let id_ok = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
        let secret_ok = (30..=128).contains(&secret.len())
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok || !secret_ok {
            return Err(FORMAT);
        }
        let bot_id = id.parse().map_err(|_| FORMAT)?;
        Ok(BotToken {
            token: SecretString::from(text.to_owned()),
            bot_id,
        })
    }

    pub fn bot_id(&self) -> i64 {
        self.bot_id
    }

    pub fn secret(&self) -> &SecretString {
        &self.token
    }
}

/// Whether `given` (Telegram's `X-Telegram-Bot-Api-Secret-Token`) is the webhook's `secret`,
/// compared in constant time.
pub fn secret_matches(secret: &SecretString, given: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    given.is_some_and(|given| bool::from(secret.expose_secret().as_bytes().ct_eq(given.as_bytes())))
}

/// How a call failed, in the terms the callers act on.
#[derive(Debug, thiserror::Error)]
pub enum BotApiError {
    /// 429: wait this many seconds.
    #[error("Telegram asks to wait {0} s (too many requests)")]
    RetryAfter(u32),
    /// 403 from a chat: the user blocked the bot (or it was removed from the group).
    #[error("the bot may no longer write to this chat: {0}")]
    Forbidden(String),
    /// Any other refusal, with Telegram's description (a bad token: 401 `Unauthorized`).
    #[error("Telegram refused the call ({code}): {description}")]
    Rejected { code: u64, description: String },
    /// No answer, or not one of Telegram's.
    #[error("the Telegram Bot API could not be reached: {0}")]
    Unreachable(String),
}

impl BotApiError {
    /// Worth trying again shortly: Telegram failed itself (5xx) or did not answer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BotApiError::Unreachable(_) | BotApiError::Rejected { code: 500.., .. }
        )
    }
}

fn classify(error: frankenstein::Error) -> BotApiError {
    match error {
        frankenstein::Error::Api(response) => {
            let retry_after = response
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.retry_after);
            match (response.error_code, retry_after) {
                (429, Some(seconds)) => BotApiError::RetryAfter(u32::from(seconds)),
                (429, None) => BotApiError::RetryAfter(1),
                (403, _) => BotApiError::Forbidden(response.description),
                (code, _) => BotApiError::Rejected {
                    code,
                    description: response.description,
                },
            }
        }
        // frankenstein strips the URL (it holds the token) from transport errors.
        other => BotApiError::Unreachable(other.to_string()),
    }
}

/// Telegram's limits on sending, as it documents them: about 30 messages a second per bot,
/// and one a second per chat with short bursts. Every send, edit and chat action of a bot
/// waits its turn here (per process; a 429 that still comes is honoured by the callers).
pub struct Pacing {
    per_bot: DefaultKeyedRateLimiter<i64>,
    per_chat: DefaultKeyedRateLimiter<(i64, i64)>,
}

impl fmt::Debug for Pacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pacing")
    }
}

impl Pacing {
    pub fn new(bot_per_sec: u32, chat_per_sec: u32, chat_burst: u32) -> Arc<Pacing> {
        let rate = |value: u32| NonZeroU32::new(value.max(1)).unwrap_or(NonZeroU32::MIN);
        Arc::new(Pacing {
            per_bot: RateLimiter::keyed(Quota::per_second(rate(bot_per_sec))),
            per_chat: RateLimiter::keyed(
                Quota::per_second(rate(chat_per_sec)).allow_burst(rate(chat_burst)),
            ),
        })
    }

    /// Waits until `bot_id` may send to `chat_id`.
    pub async fn ready(&self, bot_id: i64, chat_id: i64) {
        self.per_chat.until_key_ready(&(bot_id, chat_id)).await;
        self.per_bot.until_key_ready(&bot_id).await;
    }

    /// Forgets chats and bots that have been quiet (memory stays bounded).
    pub fn forget_idle(&self) {
        self.per_chat.retain_recent();
        self.per_bot.retain_recent();
    }
}

/// One bot's calls.
#[derive(Clone)]
pub struct BotApi {
    bot: Bot,
    bot_id: i64,
    pacing: Option<Arc<Pacing>>,
}

impl fmt::Debug for BotApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotApi")
    }
}

impl BotApi {
    /// The bot of `token` at `base`, through `client` (the outbound policy's, for `base`).
    pub fn new(base: &BaseUrl, token: &BotToken, client: reqwest::Client) -> BotApi {
        let api_url = base
            .endpoint(&format!("bot{}", token.secret().expose_secret()))
            .to_string();
        BotApi {
            bot: Bot::builder().api_url(api_url).client(client).build(),
            bot_id: token.bot_id(),
            pacing: None,
        }
    }

    /// Sends, edits and chat actions wait their turn in `pacing`.
    pub fn paced(mut self, pacing: Arc<Pacing>) -> BotApi {
        self.pacing = Some(pacing);
        self
    }

    async fn turn(&self, chat_id: i64) {
        if let Some(pacing) = &self.pacing {
            pacing.ready(self.bot_id, chat_id).await;
        }
    }

    pub async fn get_me(&self) -> Result<BotUser, BotApiError> {
        Ok(self.bot.get_me().await.map_err(classify)?.result)
    }

    /// Sends updates to `url`, with `secret` in `X-Telegram-Bot-Api-Secret-Token`.
    pub async fn set_webhook(&self, url: &str, secret: &str) -> Result<(), BotApiError> {
        let params = SetWebhookParams::builder()
            .url(url)
            .secret_token(secret)
            .allowed_updates(ALLOWED_UPDATES.to_vec())
            .build();
        self.bot.set_webhook(&params).await.map_err(classify)?;
        Ok(())
    }

    pub async fn delete_webhook(&self) -> Result<(), BotApiError> {
        let params = DeleteWebhookParams::builder().build();
        self.bot.delete_webhook(&params).await.map_err(classify)?;
        Ok(())
    }

    /// Sends `text` as plain text (no parse mode: nothing in an answer can break its
    /// formatting); returns the message's id.
    pub async fn send_text(&self, chat_id: i64, text: &str) -> Result<i32, BotApiError> {
        let params = SendMessageParams::builder()
            .chat_id(chat_id)
            .text(text)
            .link_preview_options(LinkPreviewOptions::builder().is_disabled(true).build())
            .build();
        self.turn(chat_id).await;
        let sent = self.bot.send_message(&params).await.map_err(classify)?;
        Ok(sent.result.message_id)
    }

    /// Replaces a sent message's text. Telegram's "message is not modified" counts as done.
    pub async fn edit_text(
        &self,
        chat_id: i64,
        message_id: i32,
        text: &str,
    ) -> Result<(), BotApiError> {
        let params = EditMessageTextParams::builder()
            .chat_id(chat_id)
            .message_id(message_id)
            .text(text)
            .link_preview_options(LinkPreviewOptions::builder().is_disabled(true).build())
            .build();
        self.turn(chat_id).await;
        match self.bot.edit_message_text(&params).await.map_err(classify) {
            Ok(_) => Ok(()),
            Err(BotApiError::Rejected { description, .. })
                if description.contains("message is not modified") =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// "typing…" in the chat, for about five seconds or until the next message.
    pub async fn typing(&self, chat_id: i64) -> Result<(), BotApiError> {
        let params = SendChatActionParams::builder()
            .chat_id(chat_id)
            .action(ChatAction::Typing)
            .build();
        self.turn(chat_id).await;
        self.bot.send_chat_action(&params).await.map_err(classify)?;
        Ok(())
    }
}

impl BotApi {
    /// The updates from `offset` on (confirming those before it), waiting up to `timeout` for
    /// one. Each as Telegram sent it: a kind the platform does not know never spoils a batch.
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        timeout: std::time::Duration,
    ) -> Result<Vec<serde_json::Value>, BotApiError> {
        let seconds = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX);
        let params = GetUpdatesParams::builder()
            .maybe_offset(offset)
            .timeout(seconds)
            .allowed_updates(ALLOWED_UPDATES.to_vec())
            .build();
        let call = self
            .bot
            .request::<_, MethodResponse<Vec<serde_json::Value>>>("getUpdates", Some(params));
        // The long poll ends by itself after `timeout`; a connection that hangs does not.
        match tokio::time::timeout(timeout + std::time::Duration::from_secs(15), call).await {
            Ok(answer) => Ok(answer.map_err(classify)?.result),
            Err(_) => Err(BotApiError::Unreachable("getUpdates did not answer".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BotToken;

    #[test]
    fn a_token_is_digits_a_colon_and_a_long_url_safe_secret() {
        let token = BotToken::parse(" 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw ").unwrap();
        assert_eq!(token.bot_id(), 123_456_789);
        assert!(!format!("{token:?}").contains("AAHdq"));
        for bad in [
            "",
            "123456789",
            "abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "123:short",
            "123:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/../../x",
            "123:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw?x=1",
        ] {
            assert!(BotToken::parse(bad).is_err(), "{bad}");
        }
    }
}
