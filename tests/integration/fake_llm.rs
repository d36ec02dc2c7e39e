//! A local OpenAI-compatible chat-completions server for the chat tests: it speaks the real
//! streaming protocol (`data: {chunk}` events, a usage chunk with `choices: []`, `[DONE]`), can
//! answer 429/500, omit the usage, stall, break off mid-answer, and records every request
//! and whether the client hung up on a stream.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use serde_json::{Value, json};

/// How the server answers one request.
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

struct State {
    script: Mutex<VecDeque<Reply>>,
    fallback: Reply,
    requests: Mutex<Vec<Value>>,
    authorizations: Mutex<Vec<Option<String>>>,
    hung_up: AtomicUsize,
    completed: AtomicUsize,
    /// Requests to any other path: `METHOD /path?query`.
    elsewhere: Mutex<Vec<String>>,
}

pub struct FakeLlm {
    /// The API root to configure (`.../v1`).
    pub url: String,
    state: Arc<State>,
    _server: actix_web::dev::ServerHandle,
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
    request: actix_web::HttpRequest,
    state: web::Data<Arc<State>>,
    body: web::Json<Value>,
) -> HttpResponse {
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    state.authorizations.lock().unwrap().push(authorization);
    state.requests.lock().unwrap().push(body.into_inner());
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| state.fallback.clone());
    let (chunks, gap, usage, break_after) =
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
            } => (chunks, gap, usage, break_after),
        };
    let state = state.get_ref().clone();
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

/// Anything but the completions route: recorded, answered like an internal service would.
async fn elsewhere(request: actix_web::HttpRequest, state: web::Data<Arc<State>>) -> HttpResponse {
    let line = match request.uri().query() {
        Some(query) => format!("{} {}?{query}", request.method(), request.path()),
        None => format!("{} {}", request.method(), request.path()),
    };
    state.elsewhere.lock().unwrap().push(line);
    HttpResponse::Ok().body("internal: db_password=hunter2")
}

impl FakeLlm {
    /// A server answering every request with `fallback` unless a scripted reply is queued.
    pub async fn start(fallback: Reply) -> FakeLlm {
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            fallback,
            requests: Mutex::new(Vec::new()),
            authorizations: Mutex::new(Vec::new()),
            hung_up: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            elsewhere: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::JsonConfig::default().limit(4 << 20))
                .route("/v1/chat/completions", web::post().to(completions))
                .default_service(web::to(elsewhere))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeLlm {
            url: format!("http://127.0.0.1:{port}/v1"),
            state,
            _server: handle,
        }
    }

    /// Queues replies for the next requests, in order.
    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Every request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The `Authorization` header of every request, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.state.authorizations.lock().unwrap().clone()
    }

    /// Requests that reached any path but the completions route.
    pub fn elsewhere(&self) -> Vec<String> {
        self.state.elsewhere.lock().unwrap().clone()
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|tail| tail.trim_end_matches("/v1").parse().ok())
            .unwrap()
    }

    /// Streams the client dropped before their end.
    pub fn hung_up(&self) -> usize {
        self.state.hung_up.load(Ordering::SeqCst)
    }

    /// Streams sent to their end.
    pub fn completed(&self) -> usize {
        self.state.completed.load(Ordering::SeqCst)
    }
}
