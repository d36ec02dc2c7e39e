//! The one local Telegram Bot API of the test suite: `GET`/`POST /bot{token}/{method}` with the
//! real envelope (`{"ok":true,"result":...}`, `{"ok":false,"error_code":...,"description":...}`),
//! so that the app's real client (frankenstein) talks to it as to `api.telegram.org`. It knows
//! the bots tests add, answers `getMe`, the webhook methods, `sendMessage`, `editMessageText`
//! and `getUpdates` (a real long poll over updates tests queue), fails calls on demand (429
//! with `retry_after`, 403 blocked, any status), and records every call. The builders at the
//! bottom make updates in the Bot API's own shapes.
//!
//! The fake keeps one message history per chat id, shared by its bots: message ids grow per
//! chat from 1, and [`FakeTelegram::chat_texts`] lists what was sent there, after edits.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

/// Telegram's answer to an `editMessageText` that changes nothing.
pub const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message \
                                content and reply markup are exactly the same as a current \
                                content and reply markup of the message";

/// The longest text `sendMessage` and `editMessageText` accept, in UTF-16 code units. The fake
/// counts the text as sent (markup included), Telegram after parsing it: the fake is stricter.
pub const MAX_TEXT: usize = 4096;

/// How one call fails instead of succeeding ([`FakeTelegram::fail_next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelegramFault {
    /// 429 `Too Many Requests: retry after N`, with `parameters.retry_after`.
    TooManyRequests { retry_after: u32 },
    /// 403 `Forbidden: bot was blocked by the user`.
    BlockedByUser,
    /// Any status with this description (`error_code` is the status).
    Status { code: u16, description: String },
}

/// One call as the fake received it (failed ones too).
#[derive(Debug, Clone)]
pub struct Call {
    /// The token from the path, known to the fake or not.
    pub token: String,
    /// The method name, lowercase (`sendmessage`).
    pub method: String,
    /// The parameters: the query string, then the JSON or form body, as one object. Form and
    /// query values stay strings.
    pub params: Value,
    /// When the call arrived.
    pub at: Instant,
}

/// A well-formed token for `bot_id`: `<bot_id>:` and 35 URL-safe characters, always the same
/// for the same id.
pub fn token_for(bot_id: i64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut seed = (bot_id as u64) ^ 0x9e37_79b9_7f4a_7c15;
    let tail: String = (0..33)
        .map(|_| {
            // xorshift64*: cheap, deterministic, spread over the alphabet.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            let value = seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
            char::from(ALPHABET[(value >> 58) as usize])
        })
        .collect();
    format!("{bot_id}:AA{tail}")
}

// --- state -------------------------------------------------------------------------------------

struct Webhook {
    url: String,
    secret_token: String,
    allowed_updates: Option<Value>,
}

struct Bot {
    id: i64,
    username: String,
    webhook: Option<Webhook>,
    /// Queued, not yet confirmed updates, in queue order.
    updates: Vec<Value>,
    /// Wakes long polls when updates are queued.
    notify: Arc<Notify>,
}

struct Sent {
    token: String,
    text: String,
    reply_markup: Option<Value>,
    date: i64,
    edit_date: Option<i64>,
}

#[derive(Default)]
struct ChatLog {
    last_id: i64,
    messages: BTreeMap<i64, Sent>,
}

#[derive(Default)]
struct State {
    bots: Mutex<HashMap<String, Bot>>,
    chats: Mutex<HashMap<i64, ChatLog>>,
    faults: Mutex<HashMap<String, VecDeque<TelegramFault>>>,
    calls: Mutex<Vec<Call>>,
    /// Long polls in flight, per token.
    polling: Mutex<HashMap<String, usize>>,
    /// getUpdates calls refused because another was in flight for the same bot.
    poll_conflicts: Mutex<usize>,
}

// --- the server --------------------------------------------------------------------------------

/// The fake Bot API, listening on 127.0.0.1 until dropped.
pub struct FakeTelegram {
    /// The API root to configure instead of `https://api.telegram.org` (no trailing slash).
    pub url: String,
    state: Arc<State>,
    server: actix_web::dev::ServerHandle,
}

/// Starts a fake that knows no bot yet.
pub async fn start() -> FakeTelegram {
    FakeTelegram::start().await
}

impl FakeTelegram {
    /// Starts a fake that knows no bot yet.
    pub async fn start() -> FakeTelegram {
        let state = Arc::new(State::default());
        let shared = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .default_service(web::to(handle))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(0)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeTelegram {
            url: format!("http://127.0.0.1:{port}"),
            state,
            server: handle,
        }
    }

    /// Makes `token` known, as the token of bot `bot_id` called `username` (also its first
    /// name). Adding a known token again renames the bot and keeps its webhook and updates.
    pub fn add_bot(&self, token: &str, bot_id: i64, username: &str) {
        let mut bots = self.state.bots.lock().unwrap();
        let bot = bots.entry(token.to_owned()).or_insert_with(|| Bot {
            id: bot_id,
            username: username.to_owned(),
            webhook: None,
            updates: Vec::new(),
            notify: Arc::new(Notify::new()),
        });
        bot.id = bot_id;
        bot.username = username.to_owned();
    }

    /// Forgets `token`, as when its owner revokes it in @BotFather: later calls answer 401.
    pub fn revoke(&self, token: &str) {
        if let Some(bot) = self.state.bots.lock().unwrap().remove(token) {
            bot.notify.notify_waiters();
        }
    }

    /// The next `times` calls of `method` (any case, any bot) fail with `fault`.
    pub fn fail_next(&self, method: &str, times: usize, fault: TelegramFault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .entry(method.to_lowercase())
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Queues updates for the bot of `token` (a known one) and wakes its long polls.
    pub fn queue_updates(&self, token: &str, updates: Vec<Value>) {
        let mut bots = self.state.bots.lock().unwrap();
        let bot = bots
            .get_mut(token)
            .unwrap_or_else(|| panic!("queue_updates: no bot has the token {token}"));
        bot.updates.extend(updates);
        bot.notify.notify_waiters();
    }

    /// How many getUpdates calls met another one of the same bot still waiting (409): more
    /// than one poller.
    pub fn poll_conflicts(&self) -> usize {
        *self.state.poll_conflicts.lock().unwrap()
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The parameters of every call of `method` (any case), in order.
    pub fn calls_of(&self, method: &str) -> Vec<Value> {
        let method = method.to_lowercase();
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call.method == method)
            .map(|call| call.params.clone())
            .collect()
    }

    /// The webhook the bot of `token` has set: its url and secret token (empty when none).
    pub fn webhook(&self, token: &str) -> Option<(String, String)> {
        let bots = self.state.bots.lock().unwrap();
        let webhook = bots.get(token)?.webhook.as_ref()?;
        Some((webhook.url.clone(), webhook.secret_token.clone()))
    }

    /// The current text of every message the bots sent to `chat_id` (not deleted), in
    /// message-id order.
    pub fn chat_texts(&self, chat_id: i64) -> Vec<String> {
        self.state
            .chats
            .lock()
            .unwrap()
            .get(&chat_id)
            .map(|log| {
                log.messages
                    .values()
                    .map(|sent| sent.text.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Delivers `update` to the webhook the bot of `token` has set, as Telegram does: a JSON
    /// `POST` with `X-Telegram-Bot-Api-Secret-Token`. Answers the status the webhook gave.
    pub async fn deliver(&self, token: &str, update: &Value) -> u16 {
        let (url, secret) = self
            .webhook(token)
            .unwrap_or_else(|| panic!("deliver: the bot of {token} has no webhook"));
        let mut request = reqwest::Client::new().post(url).json(update);
        if !secret.is_empty() {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        request.send().await.unwrap().status().as_u16()
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        // The stop command is sent at once; nothing needs to wait for it.
        drop(self.server.stop(false));
    }
}

// --- answers -----------------------------------------------------------------------------------

fn ok(result: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true, "result": result}))
}

fn error(code: u16, description: &str) -> HttpResponse {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .json(json!({"ok": false, "error_code": code, "description": description}))
}

fn bad_request(description: &str) -> HttpResponse {
    error(400, &format!("Bad Request: {description}"))
}

fn fault_response(fault: TelegramFault) -> HttpResponse {
    match fault {
        TelegramFault::TooManyRequests { retry_after } => {
            HttpResponse::TooManyRequests().json(json!({"ok": false, "error_code": 429,
                   "description": format!("Too Many Requests: retry after {retry_after}"),
                   "parameters": {"retry_after": retry_after}}))
        }
        TelegramFault::BlockedByUser => error(403, "Forbidden: bot was blocked by the user"),
        TelegramFault::Status { code, description } => error(code, &description),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

/// A bot as a `User`.
fn bot_user(id: i64, username: &str) -> Value {
    json!({"id": id, "is_bot": true, "first_name": username, "username": username})
}

/// The chat a message the bot sent is in; only its id is known.
fn chat_of(chat_id: i64) -> Value {
    if chat_id > 0 {
        json!({"id": chat_id, "type": "private"})
    } else if chat_id <= -1_000_000_000_000 {
        json!({"id": chat_id, "type": "supergroup", "title": "Test supergroup"})
    } else {
        json!({"id": chat_id, "type": "group", "title": "Test group"})
    }
}

fn message_json(bot: &Value, chat_id: i64, message_id: i64, sent: &Sent) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "date": sent.date,
        "chat": chat_of(chat_id),
        "from": bot,
        "text": sent.text,
    });
    if let Some(edit_date) = sent.edit_date {
        message["edit_date"] = json!(edit_date);
    }
    if let Some(markup) = &sent.reply_markup {
        message["reply_markup"] = markup.clone();
    }
    message
}

/// An integer parameter, sent as a JSON number or as a string.
fn int(params: &Value, key: &str) -> Option<i64> {
    match &params[key] {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn string(params: &Value, key: &str) -> Option<String> {
    match &params[key] {
        Value::String(text) => Some(text.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `reply_markup` as an object (form bodies send it as a JSON string).
fn reply_markup(params: &Value) -> Option<Value> {
    match &params["reply_markup"] {
        Value::Null => None,
        Value::String(text) => serde_json::from_str(text).ok(),
        other => Some(other.clone()),
    }
}

/// The text, or why Telegram refuses it.
fn check_text(text: Option<String>) -> Result<String, &'static str> {
    match text {
        Some(text) if !text.trim().is_empty() => {
            if text.encode_utf16().count() > MAX_TEXT {
                Err("message is too long")
            } else {
                Ok(text)
            }
        }
        _ => Err("message text is empty"),
    }
}

// --- requests ----------------------------------------------------------------------------------

/// The query string, then the body (JSON or form), as one object; `None` for a JSON body
/// that is not an object.
fn parameters(request: &HttpRequest, body: &Bytes) -> Option<Value> {
    let mut params = Map::new();
    let pairs = |text: &str| {
        web::Query::<Vec<(String, String)>>::from_query(text)
            .map(web::Query::into_inner)
            .unwrap_or_default()
    };
    for (key, value) in pairs(request.query_string()) {
        params.insert(key, Value::String(value));
    }
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let looks_json = body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{');
    if content_type.starts_with("application/json") || (content_type.is_empty() && looks_json) {
        if !body.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(object)) => params.extend(object),
                _ => return None,
            }
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded")
        || content_type.is_empty()
    {
        for (key, value) in pairs(&String::from_utf8_lossy(body)) {
            params.insert(key, Value::String(value));
        }
    }
    Some(Value::Object(params))
}

/// `/bot{token}/{method}`, the token percent-decoded where clients encode its colon.
fn route(path: &str) -> Option<(String, String)> {
    let (token, method) = path.strip_prefix("/bot")?.split_once('/')?;
    let method = method.trim_end_matches('/');
    if token.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((
        token.replace("%3A", ":").replace("%3a", ":"),
        method.to_lowercase(),
    ))
}

async fn handle(request: HttpRequest, state: web::Data<State>, body: Bytes) -> HttpResponse {
    let Some((token, method)) = route(request.path()) else {
        return error(404, "Not Found");
    };
    if request.method() != actix_web::http::Method::GET
        && request.method() != actix_web::http::Method::POST
    {
        return error(404, "Not Found");
    }
    let params = parameters(&request, &body);
    state.calls.lock().unwrap().push(Call {
        token: token.clone(),
        method: method.clone(),
        params: params.clone().unwrap_or_else(|| json!({})),
        at: Instant::now(),
    });
    let params = match params {
        Some(params) => params,
        None => return bad_request("can't parse JSON object"),
    };
    let bot = {
        let bots = state.bots.lock().unwrap();
        bots.get(&token).map(|bot| bot_user(bot.id, &bot.username))
    };
    let Some(bot) = bot else {
        return error(401, "Unauthorized");
    };
    let fault = state
        .faults
        .lock()
        .unwrap()
        .get_mut(&method)
        .and_then(VecDeque::pop_front);
    if let Some(fault) = fault {
        return fault_response(fault);
    }
    match method.as_str() {
        "getme" => {
            let mut me = bot;
            for (key, value) in [
                ("can_join_groups", true),
                ("can_read_all_group_messages", false),
                ("supports_inline_queries", false),
                // Required by teloxide-core 0.13's `Me`, returned by today's Bot API.
                ("can_connect_to_business", false),
                ("has_main_web_app", false),
            ] {
                me[key] = json!(value);
            }
            ok(me)
        }
        "setwebhook" => set_webhook(&state, &token, &params),
        "deletewebhook" => {
            let mut bots = state.bots.lock().unwrap();
            if let Some(bot) = bots.get_mut(&token) {
                bot.webhook = None;
                if matches!(&params["drop_pending_updates"], Value::Bool(true))
                    || params["drop_pending_updates"] == "true"
                {
                    bot.updates.clear();
                }
            }
            HttpResponse::Ok()
                .json(json!({"ok": true, "result": true, "description": "Webhook was deleted"}))
        }
        "getwebhookinfo" => {
            let bots = state.bots.lock().unwrap();
            let bot = bots.get(&token);
            let webhook = bot.and_then(|bot| bot.webhook.as_ref());
            let mut info = json!({
                "url": webhook.map(|webhook| webhook.url.as_str()).unwrap_or_default(),
                "has_custom_certificate": false,
                "pending_update_count": bot.map(|bot| bot.updates.len()).unwrap_or_default(),
            });
            if let Some(allowed) = webhook.and_then(|webhook| webhook.allowed_updates.clone()) {
                info["allowed_updates"] = allowed;
            }
            ok(info)
        }
        "sendmessage" => send_message(&state, &token, &bot, &params),
        "editmessagetext" => edit_message_text(&state, &token, &bot, &params),
        "deletemessage" => {
            if let (Some(chat_id), Some(message_id)) =
                (int(&params, "chat_id"), int(&params, "message_id"))
                && let Some(log) = state.chats.lock().unwrap().get_mut(&chat_id)
            {
                log.messages.remove(&message_id);
            }
            ok(json!(true))
        }
        "getupdates" => get_updates(&state, &token, &params).await,
        _ => ok(json!(true)),
    }
}

fn set_webhook(state: &State, token: &str, params: &Value) -> HttpResponse {
    let url = string(params, "url").unwrap_or_default();
    let secret_token = string(params, "secret_token").unwrap_or_default();
    if secret_token.len() > 256
        || !secret_token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
    {
        return bad_request("secret token contains unallowed characters");
    }
    let allowed_updates = match &params["allowed_updates"] {
        Value::Null => None,
        Value::String(text) => serde_json::from_str(text).ok(),
        other => Some(other.clone()),
    };
    let mut bots = state.bots.lock().unwrap();
    let Some(bot) = bots.get_mut(token) else {
        return error(401, "Unauthorized");
    };
    if url.is_empty() {
        bot.webhook = None;
        return HttpResponse::Ok()
            .json(json!({"ok": true, "result": true, "description": "Webhook was deleted"}));
    }
    bot.webhook = Some(Webhook {
        url,
        secret_token,
        allowed_updates,
    });
    HttpResponse::Ok().json(json!({"ok": true, "result": true, "description": "Webhook was set"}))
}

fn send_message(state: &State, token: &str, bot: &Value, params: &Value) -> HttpResponse {
    let Some(chat_id) = int(params, "chat_id") else {
        return match params.get("chat_id") {
            None | Some(Value::Null) => bad_request("chat_id is empty"),
            Some(_) => bad_request("chat not found"),
        };
    };
    let text = match check_text(string(params, "text")) {
        Ok(text) => text,
        Err(description) => return bad_request(description),
    };
    let mut chats = state.chats.lock().unwrap();
    let log = chats.entry(chat_id).or_default();
    log.last_id += 1;
    let message_id = log.last_id;
    let sent = Sent {
        token: token.to_owned(),
        text,
        reply_markup: reply_markup(params),
        date: now(),
        edit_date: None,
    };
    let message = message_json(bot, chat_id, message_id, &sent);
    log.messages.insert(message_id, sent);
    ok(message)
}

fn edit_message_text(state: &State, token: &str, bot: &Value, params: &Value) -> HttpResponse {
    if params
        .get("inline_message_id")
        .is_some_and(|id| !id.is_null())
    {
        return ok(json!(true));
    }
    let (Some(chat_id), Some(message_id)) = (int(params, "chat_id"), int(params, "message_id"))
    else {
        return bad_request("message identifier is not specified");
    };
    let text = match check_text(string(params, "text")) {
        Ok(text) => text,
        Err(description) => return bad_request(description),
    };
    let markup = reply_markup(params);
    let mut chats = state.chats.lock().unwrap();
    let Some(sent) = chats
        .get_mut(&chat_id)
        .and_then(|log| log.messages.get_mut(&message_id))
    else {
        return bad_request("message to edit not found");
    };
    if sent.token != token {
        return bad_request("message can't be edited");
    }
    if sent.text == text && sent.reply_markup == markup {
        return error(400, NOT_MODIFIED);
    }
    sent.text = text;
    sent.reply_markup = markup;
    sent.edit_date = Some(now());
    ok(message_json(bot, chat_id, message_id, sent))
}

/// Telegram's `getUpdates`: an offset confirms (drops) every update below it; with nothing to
/// answer, waits up to `timeout` seconds for updates to be queued.
/// Marks a long poll of a bot in flight while it lives.
struct InFlight<'a> {
    state: &'a State,
    token: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut polling = self.state.polling.lock().unwrap();
        if let Some(count) = polling.get_mut(&self.token) {
            *count = count.saturating_sub(1);
        }
    }
}

async fn get_updates(state: &State, token: &str, params: &Value) -> HttpResponse {
    // Like Telegram: a second getUpdates while one is waiting is a conflict (two pollers).
    {
        let mut polling = state.polling.lock().unwrap();
        let count = polling.entry(token.to_owned()).or_default();
        if *count > 0 {
            *state.poll_conflicts.lock().unwrap() += 1;
            return error(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one \
                 bot instance is running",
            );
        }
        *count += 1;
    }
    let _in_flight = InFlight {
        state,
        token: token.to_owned(),
    };
    let offset = int(params, "offset").unwrap_or(0);
    let limit = int(params, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = int(params, "timeout").unwrap_or(0).max(0) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notify = {
            let bots = state.bots.lock().unwrap();
            match bots.get(token) {
                Some(bot) => bot.notify.clone(),
                None => return error(401, "Unauthorized"),
            }
        };
        // Registered before looking, so that updates queued in between wake this poll.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut bots = state.bots.lock().unwrap();
            let Some(bot) = bots.get_mut(token) else {
                return error(401, "Unauthorized");
            };
            if bot.webhook.is_some() {
                return error(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use \
                     deleteWebhook to delete the webhook first",
                );
            }
            if offset > 0 {
                bot.updates
                    .retain(|update| update["update_id"].as_i64().unwrap_or(0) >= offset);
            } else if offset < 0 {
                let keep = offset.unsigned_abs() as usize;
                let excess = bot.updates.len().saturating_sub(keep);
                bot.updates.drain(..excess);
            }
            if !bot.updates.is_empty() {
                let answer: Vec<Value> = bot.updates.iter().take(limit).cloned().collect();
                return ok(Value::Array(answer));
            }
        }
        if tokio::time::Instant::now() >= deadline
            || tokio::time::timeout_at(deadline, notified).await.is_err()
        {
            return ok(json!([]));
        }
    }
}

// --- updates -----------------------------------------------------------------------------------

/// A user as messages carry it.
fn user(user_id: i64, first_name: &str) -> Value {
    json!({"id": user_id, "is_bot": false, "first_name": first_name, "language_code": "en"})
}

/// The name the builders without one give users.
const FIRST_NAME: &str = "Tester";

/// `text`'s entities: a `bot_command` covering a leading `/command`, a `mention` per
/// `@username`. Offsets and lengths in UTF-16 code units, as Telegram counts.
fn entities(text: &str) -> Vec<Value> {
    let utf16 = |part: &str| part.encode_utf16().count();
    let mut found = Vec::new();
    if text.starts_with('/') {
        let command = text.split_whitespace().next().unwrap_or_default();
        found.push(json!({"type": "bot_command", "offset": 0, "length": utf16(command)}));
    }
    let mut previous: Option<char> = None;
    for (index, character) in text.char_indices() {
        let starts = character == '@'
            && !previous.is_some_and(|before| before.is_alphanumeric() || before == '_');
        previous = Some(character);
        if !starts {
            continue;
        }
        let name: String = text[index + 1..]
            .chars()
            .take_while(|next| next.is_ascii_alphanumeric() || *next == '_')
            .collect();
        // Telegram usernames have at least 5 characters; shorter ones are plain text. The
        // mention inside a `/command@bot` is part of the command.
        if name.len() >= 5 && !(text.starts_with('/') && index < command_end(text)) {
            found.push(json!({
                "type": "mention",
                "offset": utf16(&text[..index]),
                "length": 1 + name.len(),
            }));
        }
    }
    found
}

/// The byte length of the leading `/command` (0 without one).
fn command_end(text: &str) -> usize {
    if text.starts_with('/') {
        text.split_whitespace().next().map(str::len).unwrap_or(0)
    } else {
        0
    }
}

fn text_message(update_id: i64, chat: Value, from: Value, text: &str) -> Value {
    let mut message = json!({
        "message_id": update_id,
        "from": from,
        "chat": chat,
        "date": now(),
        "text": text,
    });
    let entities = entities(text);
    if !entities.is_empty() {
        message["entities"] = Value::Array(entities);
    }
    message
}

fn private_chat(chat_id: i64, first_name: &str) -> Value {
    json!({"id": chat_id, "type": "private", "first_name": first_name})
}

/// A private-chat text message from a user (`message_id` is `update_id`); a leading
/// `/command` comes with its `bot_command` entity.
pub fn text_update(
    update_id: i64,
    chat_id: i64,
    user_id: i64,
    first_name: &str,
    text: &str,
) -> Value {
    json!({
        "update_id": update_id,
        "message": text_message(
            update_id,
            private_chat(chat_id, first_name),
            user(user_id, first_name),
            text,
        ),
    })
}

/// A private-chat photo without caption: three `PhotoSize`s and no text.
pub fn photo_update(update_id: i64, chat_id: i64, user_id: i64) -> Value {
    let photo: Vec<Value> = [(90, 67, 1_312), (320, 240, 15_044), (800, 600, 61_877)]
        .iter()
        .enumerate()
        .map(|(index, (width, height, size))| {
            json!({
                "file_id": format!("AgACAgIAAxkBAAIB{update_id}x{index}"),
                "file_unique_id": format!("AQAD{update_id}x{index}"),
                "file_size": size,
                "width": width,
                "height": height,
            })
        })
        .collect();
    json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": user(user_id, FIRST_NAME),
            "chat": private_chat(chat_id, FIRST_NAME),
            "date": now(),
            "photo": photo,
        },
    })
}

/// A user edited an earlier private-chat message (`message_id` is `update_id`) to `text`.
pub fn edited_message_update(update_id: i64, chat_id: i64, user_id: i64, text: &str) -> Value {
    let mut message = text_message(
        update_id,
        private_chat(chat_id, FIRST_NAME),
        user(user_id, FIRST_NAME),
        text,
    );
    message["date"] = json!(now() - 60);
    message["edit_date"] = json!(now());
    json!({"update_id": update_id, "edited_message": message})
}

/// A user pressed an inline button carrying `data` under a bot message (`message_id` 1) in
/// their private chat.
pub fn callback_query_update(update_id: i64, chat_id: i64, user_id: i64, data: &str) -> Value {
    json!({
        "update_id": update_id,
        "callback_query": {
            "id": format!("{user_id}{update_id:08}"),
            "from": user(user_id, FIRST_NAME),
            "message": {
                "message_id": 1,
                "from": bot_user(1, "fake_bot"),
                "chat": private_chat(chat_id, FIRST_NAME),
                "date": now() - 60,
                "text": "Choose:",
                "reply_markup": {"inline_keyboard": [[{"text": data, "callback_data": data}]]},
            },
            "chat_instance": format!("-{}", chat_id.unsigned_abs()),
            "data": data,
        },
    })
}

/// A text message in a basic group (`group_chat_id` negative), with a `mention` entity per
/// `@username` in it and a `bot_command` entity for a leading `/command`.
pub fn group_text_update(
    update_id: i64,
    group_chat_id: i64,
    user_id: i64,
    first_name: &str,
    text: &str,
) -> Value {
    json!({
        "update_id": update_id,
        "message": text_message(
            update_id,
            json!({"id": group_chat_id, "type": "group", "title": "Test group"}),
            user(user_id, first_name),
            text,
        ),
    })
}

// --- the fake's own test -----------------------------------------------------------------------

#[tokio::test]
async fn fake_telegram_speaks_the_bot_api() {
    let telegram = start().await;
    let token = token_for(4_200_001);
    let (id, tail) = token.split_once(':').unwrap();
    assert_eq!(id, "4200001");
    assert_eq!(tail.len(), 35);
    assert!(
        tail.bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    );
    telegram.add_bot(&token, 4_200_001, "avatar_test_bot");
    let client = reqwest::Client::new();
    let call = |method: &str, params: Value| {
        let request = client
            .post(format!("{}/bot{token}/{method}", telegram.url))
            .json(&params);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    // An unknown token.
    let unknown = client
        .get(format!("{}/bot{}/getMe", telegram.url, token_for(7)))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 401);
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );

    let (status, me) = call("GetMe", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(me["ok"], true);
    assert_eq!(me["result"]["id"], 4_200_001);
    assert_eq!(me["result"]["is_bot"], true);
    assert_eq!(me["result"]["username"], "avatar_test_bot");
    assert_eq!(me["result"]["can_join_groups"], true);

    let (status, sent) = call("SendMessage", json!({"chat_id": 77, "text": "Hello"})).await;
    assert_eq!(status, 200);
    assert_eq!(sent["result"]["message_id"], 1);
    assert_eq!(sent["result"]["chat"]["id"], 77);
    assert_eq!(sent["result"]["chat"]["type"], "private");
    assert_eq!(sent["result"]["from"]["username"], "avatar_test_bot");
    assert_eq!(sent["result"]["text"], "Hello");
    let (_, second) = call("sendMessage", json!({"chat_id": 77, "text": "Wor"})).await;
    assert_eq!(second["result"]["message_id"], 2);

    let (status, edited) = call(
        "EditMessageText",
        json!({"chat_id": 77, "message_id": 2, "text": "World"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(edited["result"]["text"], "World");
    assert!(edited["result"]["edit_date"].is_i64());
    let (status, same) = call(
        "editMessageText",
        json!({"chat_id": 77, "message_id": 2, "text": "World"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(same["error_code"], 400);
    assert_eq!(same["description"], NOT_MODIFIED);
    assert_eq!(telegram.chat_texts(77), ["Hello", "World"]);
    assert_eq!(
        telegram.calls_of("EDITMESSAGETEXT").len(),
        2,
        "a failed call is recorded"
    );

    // A form body, and failures on demand.
    let (status, _) = call("sendChatAction", json!({"chat_id": 77, "action": "typing"})).await;
    assert_eq!(status, 200);
    telegram.fail_next(
        "sendMessage",
        1,
        TelegramFault::TooManyRequests { retry_after: 3 },
    );
    telegram.fail_next("sendMessage", 1, TelegramFault::BlockedByUser);
    telegram.fail_next(
        "sendMessage",
        1,
        TelegramFault::Status {
            code: 502,
            description: "Bad Gateway".into(),
        },
    );
    let (status, limited) = call("sendMessage", json!({"chat_id": 77, "text": "x"})).await;
    assert_eq!(status, 429);
    assert_eq!(limited["parameters"]["retry_after"], 3);
    assert_eq!(limited["description"], "Too Many Requests: retry after 3");
    let (status, _) = call("sendMessage", json!({"chat_id": 77, "text": "x"})).await;
    assert_eq!(status, 403);
    let (status, _) = call("sendMessage", json!({"chat_id": 77, "text": "x"})).await;
    assert_eq!(status, 502);
    let form = client
        .post(format!("{}/bot{token}/sendMessage", telegram.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("chat_id=77&text=via+form")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 200);
    assert_eq!(telegram.chat_texts(77), ["Hello", "World", "via form"]);
    assert_eq!(
        telegram.calls_of("sendmessage").last().unwrap()["chat_id"],
        "77"
    );

    // Webhooks.
    let (status, _) = call(
        "setWebhook",
        json!({"url": "http://127.0.0.1:9/telegram", "secret_token": "s3cret-token",
               "allowed_updates": ["message"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        telegram.webhook(&token),
        Some((
            "http://127.0.0.1:9/telegram".to_owned(),
            "s3cret-token".to_owned()
        ))
    );
    let (_, info) = call("getWebhookInfo", json!({})).await;
    assert_eq!(info["result"]["url"], "http://127.0.0.1:9/telegram");
    assert_eq!(info["result"]["pending_update_count"], 0);
    // Delivered to a webhook: here the fake itself, which records what it got.
    let hook = format!("{}/bot{token}/webhookProbe", telegram.url);
    call("setWebhook", json!({"url": hook, "secret_token": "abc"})).await;
    assert_eq!(
        telegram
            .deliver(&token, &text_update(1, 77, 77, "Ann", "hi"))
            .await,
        200
    );
    assert_eq!(
        telegram.calls_of("webhookprobe")[0]["message"]["text"],
        "hi"
    );
    let (status, _) = call("getUpdates", json!({})).await;
    assert_eq!(status, 409, "no polling while a webhook is set");
    let (status, _) = call("deleteWebhook", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(telegram.webhook(&token), None);

    // Updates: an offset confirms those below it; a long poll wakes when updates are queued.
    telegram.queue_updates(
        &token,
        vec![
            text_update(10, 77, 77, "Ann", "/start now"),
            photo_update(11, 77, 77),
            edited_message_update(12, 77, 77, "fixed"),
            callback_query_update(13, 77, 77, "pick:1"),
            group_text_update(14, -500, 77, "Ann", "hi @avatar_test_bot"),
        ],
    );
    let (_, updates) = call("getUpdates", json!({"timeout": 0})).await;
    let ids: Vec<i64> = updates["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|update| update["update_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [10, 11, 12, 13, 14]);
    let start = &updates["result"][0]["message"];
    assert_eq!(
        start["entities"],
        json!([{"type": "bot_command", "offset": 0, "length": 6}])
    );
    assert!(updates["result"][1]["message"]["photo"].is_array());
    assert!(updates["result"][1]["message"]["text"].is_null());
    assert_eq!(updates["result"][2]["edited_message"]["text"], "fixed");
    assert_eq!(updates["result"][3]["callback_query"]["data"], "pick:1");
    let group = &updates["result"][4]["message"];
    assert_eq!(group["chat"]["type"], "group");
    assert_eq!(
        group["entities"],
        json!([{"type": "mention", "offset": 3, "length": 16}])
    );
    let later = client
        .get(format!(
            "{}/bot{token}/getUpdates?offset=13&limit=1",
            telegram.url
        ))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(later["result"][0]["update_id"], 13);

    let polls_before = telegram.calls_of("getupdates").len();
    let asked = Instant::now();
    let poll = tokio::spawn(call("getUpdates", json!({"offset": 15, "timeout": 30})));
    while telegram.calls_of("getupdates").len() == polls_before {
        tokio::task::yield_now().await;
    }
    telegram.queue_updates(&token, vec![text_update(15, 77, 77, "Ann", "again")]);
    let (status, woken) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(woken["result"][0]["update_id"], 15);
    assert!(asked.elapsed() < Duration::from_secs(10));
    let (_, empty) = call("getUpdates", json!({"offset": 16, "timeout": 1})).await;
    assert_eq!(empty["result"], json!([]));

    let calls = telegram.calls();
    assert!(calls.windows(2).all(|pair| pair[0].at <= pair[1].at));
    assert!(
        calls
            .iter()
            .any(|call| call.token != token && call.method == "getme")
    );

    // Deleted messages leave the chat; revoked tokens are unauthorised.
    let (status, _) = call("deleteMessage", json!({"chat_id": 77, "message_id": 1})).await;
    assert_eq!(status, 200);
    assert_eq!(telegram.chat_texts(77), ["World", "via form"]);
    telegram.revoke(&token);
    let (status, revoked) = call("getMe", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(revoked["description"], "Unauthorized");
}
