//! The one local OpenAI-compatible server of the test suite (and the chat benchmark): the real
//! protocol on `POST /v1/chat/completions` (streamed `data: {chunk}` events, a usage chunk with
//! `choices: []`, `[DONE]`) and `POST /v1/embeddings`, with the misbehaviour tests ask for —
//! error statuses, stalls, cut streams, answers without usage, wrong dimensions, held
//! requests. It records every request, its `Authorization` header, the streams the client hung
//! up on, and requests to any other path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use avatar_platform::core::embeddings::{Embedder, LexicalEmbedder};
use bytes::Bytes;
use serde_json::{Value, json};

// --- chat completions --------------------------------------------------------------------------

/// How the server answers one chat-completions request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Streams `chunks`, `gap` apart; then the usage (if any) and `[DONE]`. With `break_after`,
    /// the connection is cut after that many chunks.
    Stream {
        chunks: Vec<String>,
        gap: Duration,
        usage: Option<(u32, u32)>,
        break_after: Option<usize>,
    },
    /// An error status with OpenAI's error body.
    Status(u16),
    /// Streams `chunks`, then fails in the stream as OpenAI-compatible servers do once the
    /// status line is sent: a `data: {"error": ...}` event (`status` is its code, 429 or 500),
    /// and the stream ends without `[DONE]`.
    StreamThenError { chunks: Vec<String>, status: u16 },
    /// Streams `chunks`, then sends nothing more and keeps the connection open.
    StreamThenSilence { chunks: Vec<String> },
    /// Any status with these headers and this body (a redirect, an internal service's page).
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

impl Reply {
    /// A prompt answer in a few pieces, with usage.
    pub fn answer(text: &str, usage: (u32, u32)) -> Reply {
        Reply::Stream {
            chunks: pieces(text),
            gap: Duration::ZERO,
            usage: Some(usage),
            break_after: None,
        }
    }
}

/// `text` cut after each space, as models stream words.
pub fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

// --- embeddings --------------------------------------------------------------------------------

/// The vectors `/v1/embeddings` answers with.
#[derive(Debug, Clone, Copy)]
pub enum Vectors {
    /// The platform's own lexical embedder of this dimension, in input order: retrieval over
    /// them works.
    Lexical(usize),
    /// Fixed, text-dependent and not normalised (the client must normalise), listed in reverse
    /// `index` order (the client must reorder).
    Unnormalised(usize),
}

/// How `/v1/embeddings` misbehaves, request by request.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer 500 to the embeddings request with this (1-based) number, once; 0 for never.
    pub fail_request: usize,
    /// Every embeddings request waits this long first.
    pub delay: Duration,
    /// Requests whose input holds this text wait until [`FakeOpenAi::release`].
    pub hold: Option<&'static str>,
}

/// How one embeddings request fails instead of succeeding ([`FakeOpenAi::fail_next`]).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// 429 with `Retry-After: 0`.
    RateLimited,
    /// 500 with an OpenAI error body.
    ServerError,
    /// 400 with an OpenAI error body.
    BadRequest,
    /// 401 whose message echoes the key, as some servers do.
    EchoesKey,
    /// 200 with vectors of this length.
    WrongDimension(usize),
    /// Answers correctly, but only after this long.
    Stall(Duration),
}

/// An embeddings request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub model: String,
    pub inputs: Vec<String>,
    pub encoding_format: Option<String>,
    /// OpenAI's `dimensions` parameter, when sent (the vectors then have that size).
    pub dimensions: Option<usize>,
    pub authorization: Option<String>,
}

// --- the server --------------------------------------------------------------------------------

struct State {
    // chat
    script: Mutex<VecDeque<Reply>>,
    fallback: Reply,
    requests: Mutex<Vec<Value>>,
    hung_up: AtomicUsize,
    completed: AtomicUsize,
    // embeddings
    vectors: Vectors,
    lexical: Option<LexicalEmbedder>,
    faults: Faults,
    holding: AtomicBool,
    next_faults: Mutex<VecDeque<Fault>>,
    every_request: Mutex<Option<Fault>>,
    received: Mutex<Vec<Received>>,
    // both
    authorizations: Mutex<Vec<Option<String>>>,
    /// Requests to any other path: `METHOD /path?query`.
    elsewhere: Mutex<Vec<String>>,
}

pub struct FakeOpenAi {
    /// The API root to configure (`.../v1`).
    pub url: String,
    state: Arc<State>,
    server: actix_web::dev::ServerHandle,
}

impl FakeOpenAi {
    /// A server answering chat requests with `fallback` unless a scripted reply is queued
    /// (and embeddings with the lexical embedder's 384-dimension vectors).
    pub async fn chat(fallback: Reply) -> FakeOpenAi {
        Self::start(fallback, Vectors::Lexical(384), Faults::default())
    }

    /// A server answering embeddings with the lexical embedder's 384-dimension vectors,
    /// misbehaving as `faults` say.
    pub async fn embeddings(faults: Faults) -> FakeOpenAi {
        Self::start(Reply::answer("", (0, 0)), Vectors::Lexical(384), faults)
    }

    /// A server answering embeddings with `vectors`.
    pub async fn embeddings_of(vectors: Vectors) -> FakeOpenAi {
        Self::start(Reply::answer("", (0, 0)), vectors, Faults::default())
    }

    fn start(fallback: Reply, vectors: Vectors, faults: Faults) -> FakeOpenAi {
        let lexical = match vectors {
            Vectors::Lexical(dimension) => Some(LexicalEmbedder::new(dimension).unwrap()),
            Vectors::Unnormalised(_) => None,
        };
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            fallback,
            requests: Mutex::new(Vec::new()),
            hung_up: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            vectors,
            lexical,
            faults,
            holding: AtomicBool::new(true),
            next_faults: Mutex::new(VecDeque::new()),
            every_request: Mutex::new(None),
            received: Mutex::new(Vec::new()),
            authorizations: Mutex::new(Vec::new()),
            elsewhere: Mutex::new(Vec::new()),
        });
        let shared = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::JsonConfig::default().limit(16 << 20))
                .route("/v1/chat/completions", web::post().to(completions))
                .route("/v1/embeddings", web::post().to(embeddings))
                .default_service(web::to(elsewhere))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(0)
        // An instant model: each streamed piece leaves at once (no Nagle delay).
        .tcp_nodelay(true)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeOpenAi {
            url: format!("http://127.0.0.1:{port}/v1"),
            state,
            server: handle,
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|tail| tail.trim_end_matches("/v1").parse().ok())
            .unwrap()
    }

    /// The `Authorization` header of every request to either route, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.state.authorizations.lock().unwrap().clone()
    }

    /// Requests that reached any other path.
    pub fn elsewhere(&self) -> Vec<String> {
        self.state.elsewhere.lock().unwrap().clone()
    }

    // chat

    /// Queues chat replies for the next requests, in order.
    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Every chat request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Streams the client dropped before their end.
    pub fn hung_up(&self) -> usize {
        self.state.hung_up.load(Ordering::SeqCst)
    }

    /// Streams sent to their end.
    pub fn completed(&self) -> usize {
        self.state.completed.load(Ordering::SeqCst)
    }

    // embeddings

    /// The next `times` embeddings requests fail with `fault`.
    pub fn fail_next(&self, fault: Fault, times: usize) {
        self.state
            .next_faults
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Every embeddings request fails with `fault`.
    pub fn fail_always(&self, fault: Fault) {
        *self.state.every_request.lock().unwrap() = Some(fault);
    }

    /// Every embeddings request, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// How many embeddings requests arrived.
    pub fn embedding_requests(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// Lets held embeddings requests (and all later ones) through.
    pub fn release(&self) {
        self.state.holding.store(false, Ordering::SeqCst);
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        // The stop command is sent at once; nothing needs to wait for it.
        drop(self.server.stop(false));
    }
}

fn authorization(request: &HttpRequest) -> Option<String> {
    request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn openai_error(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

/// Counts a stream the client dropped before its end.
struct HangUpGuard {
    state: Arc<State>,
    finished: bool,
}

impl Drop for HangUpGuard {
    fn drop(&mut self) {
        if self.finished {
            self.state.completed.fetch_add(1, Ordering::SeqCst);
        } else {
            self.state.hung_up.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    let body = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {body}\n\n"))
}

async fn completions(
    request: HttpRequest,
    state: web::Data<State>,
    body: web::Json<Value>,
) -> HttpResponse {
    state
        .authorizations
        .lock()
        .unwrap()
        .push(authorization(&request));
    state.requests.lock().unwrap().push(body.into_inner());
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| state.fallback.clone());
    let (chunks, gap, usage, break_after, fail_with) =
        match reply {
            Reply::Status(status) => {
                return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .json(json!({"error": {"message": format!("fake says {status}"), "type": "fake"}}));
            }
            Reply::Raw {
                status,
                headers,
                body,
            } => {
                let mut response =
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                for (name, value) in headers {
                    response.insert_header((name, value));
                }
                return response.body(body);
            }
            Reply::Stream {
                chunks,
                gap,
                usage,
                break_after,
            } => (chunks, gap, usage, break_after, None),
            Reply::StreamThenError { chunks, status } => {
                (chunks, Duration::ZERO, None, None, Some(Some(status)))
            }
            Reply::StreamThenSilence { chunks } => (chunks, Duration::ZERO, None, None, Some(None)),
        };
    let state = state.into_inner();
    let stream = async_stream::stream! {
        let mut guard = HangUpGuard { state, finished: false };
        yield Ok::<Bytes, std::io::Error>(chunk(json!({"role": "assistant", "content": ""}), None));
        for (index, piece) in chunks.iter().enumerate() {
            if break_after == Some(index) {
                guard.finished = true;
                yield Err(std::io::Error::other("connection cut"));
                return;
            }
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            yield Ok(chunk(json!({"content": piece}), None));
        }
        if fail_with == Some(None) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if let Some(Some(status)) = fail_with {
            let kind = if status == 429 { "rate_limit_exceeded" } else { "server_error" };
            let body = openai_error(&format!("fake fails with {status} mid-answer"), kind);
            yield Ok(Bytes::from(format!("data: {body}\n\n")));
            guard.finished = true;
            return;
        }
        yield Ok(chunk(json!({}), Some("stop")));
        if let Some((prompt, completion)) = usage {
            let body = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [],
                              "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                        "total_tokens": prompt + completion}});
            yield Ok(Bytes::from(format!("data: {body}\n\n")));
        }
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
        guard.finished = true;
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(stream)
}

/// A fixed, text-dependent vector (not normalised: the client must normalise).
pub fn unnormalised_vector(text: &str, dimension: usize) -> Vec<f32> {
    let seed = text.bytes().fold(7_u64, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(u64::from(byte))
    });
    (0..dimension)
        .map(|position| ((seed >> ((position % 8) * 8)) & 0xff) as f32 + 1.0 + position as f32)
        .collect()
}

async fn embeddings(
    request: HttpRequest,
    state: web::Data<State>,
    body: web::Json<Value>,
) -> HttpResponse {
    let inputs: Vec<String> = body["input"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let authorization = authorization(&request);
    state
        .authorizations
        .lock()
        .unwrap()
        .push(authorization.clone());
    let number = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            model: body["model"].as_str().unwrap_or_default().to_owned(),
            inputs: inputs.clone(),
            encoding_format: body["encoding_format"].as_str().map(str::to_owned),
            dimensions: body["dimensions"].as_u64().map(|value| value as usize),
            authorization: authorization.clone(),
        });
        received.len()
    };

    tokio::time::sleep(state.faults.delay).await;
    if let Some(marker) = state.faults.hold {
        while state.holding.load(Ordering::SeqCst)
            && inputs.iter().any(|text| text.contains(marker))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if number == state.faults.fail_request {
        return HttpResponse::InternalServerError()
            .json(openai_error("upstream exploded", "server_error"));
    }
    let fault = state
        .next_faults
        .lock()
        .unwrap()
        .pop_front()
        .or(*state.every_request.lock().unwrap());
    let mut wrong_dimension = None;
    match fault {
        Some(Fault::RateLimited) => {
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "0"))
                .json(openai_error("Rate limit reached for requests", "requests"));
        }
        Some(Fault::ServerError) => {
            return HttpResponse::InternalServerError()
                .json(openai_error("The server had an error", "server_error"));
        }
        Some(Fault::BadRequest) => {
            return HttpResponse::BadRequest().json(openai_error(
                "This model's maximum context length is 8192 tokens",
                "invalid_request_error",
            ));
        }
        Some(Fault::EchoesKey) => {
            let echoed = authorization.unwrap_or_default().replace("Bearer ", "");
            return HttpResponse::Unauthorized().json(openai_error(
                &format!("Incorrect API key provided: {echoed}"),
                "invalid_request_error",
            ));
        }
        Some(Fault::WrongDimension(wrong)) => wrong_dimension = Some(wrong),
        Some(Fault::Stall(duration)) => tokio::time::sleep(duration).await,
        None => {}
    }

    let data: Vec<Value> = match (state.vectors, &state.lexical) {
        (Vectors::Lexical(_), Some(embedder)) if wrong_dimension.is_none() => embedder
            .embed(&inputs)
            .await
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
            .collect(),
        (Vectors::Lexical(dimension) | Vectors::Unnormalised(dimension), _) => {
            let asked = body["dimensions"].as_u64().map(|value| value as usize);
            let dimension = wrong_dimension.or(asked).unwrap_or(dimension);
            inputs
                .iter()
                .enumerate()
                .rev()
                .map(|(index, text)| {
                    json!({"object": "embedding", "index": index,
                           "embedding": unnormalised_vector(text, dimension)})
                })
                .collect()
        }
    };
    let tokens: usize = inputs
        .iter()
        .map(|text| text.split_whitespace().count())
        .sum();
    HttpResponse::Ok().json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

/// Anything but the two routes: recorded, answered like an internal service would.
async fn elsewhere(request: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let line = match request.uri().query() {
        Some(query) => format!("{} {}?{query}", request.method(), request.path()),
        None => format!("{} {}", request.method(), request.path()),
    };
    state.elsewhere.lock().unwrap().push(line);
    HttpResponse::Ok().body("internal: db_password=hunter2")
}
