//! A local OpenAI-compatible `POST /v1/embeddings` for the document tests: it computes real
//! (local, lexical) vectors, so retrieval works, and can fail one request, slow every request
//! down, or hold requests whose input holds a marker until released.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use avatar_platform::core::embeddings::{Embedder, LocalEmbedder};
use serde_json::{Value, json};

/// How the server misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer 500 to the request with this (1-based) number, once; 0 for never.
    pub fail_request: usize,
    /// Every request waits this long first.
    pub delay: Duration,
    /// Requests whose input holds this text wait until [`FakeEmbeddings::release`].
    pub hold: Option<&'static str>,
}

pub struct FakeEmbeddings {
    /// The API root to configure (`.../v1`).
    pub url: String,
    pub requests: Arc<AtomicUsize>,
    holding: Arc<AtomicBool>,
    authorizations: Arc<Mutex<Vec<Option<String>>>>,
    _server: actix_web::dev::ServerHandle,
}

#[derive(Clone)]
struct State {
    faults: Faults,
    holding: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<Option<String>>>>,
    embedder: Arc<LocalEmbedder>,
}

async fn embeddings(
    request: actix_web::HttpRequest,
    state: web::Data<State>,
    body: web::Json<Value>,
) -> HttpResponse {
    let number = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    state.authorizations.lock().unwrap().push(
        request
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    );
    tokio::time::sleep(state.faults.delay).await;
    let inputs: Vec<String> = body["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_owned())
        .collect();
    if let Some(marker) = state.faults.hold {
        while state.holding.load(Ordering::SeqCst)
            && inputs.iter().any(|text| text.contains(marker))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if number == state.faults.fail_request {
        return HttpResponse::InternalServerError()
            .json(json!({"error": {"message": "upstream exploded"}}));
    }
    let vectors = state.embedder.embed(&inputs).await.unwrap();
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data, "model": "fake",
                                    "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
}

impl FakeEmbeddings {
    pub async fn start(faults: Faults) -> FakeEmbeddings {
        let state = State {
            faults,
            holding: Arc::new(AtomicBool::new(true)),
            requests: Arc::new(AtomicUsize::new(0)),
            authorizations: Arc::default(),
            embedder: Arc::new(LocalEmbedder::new(384).unwrap()),
        };
        let (holding, requests, authorizations) = (
            state.holding.clone(),
            state.requests.clone(),
            state.authorizations.clone(),
        );
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .route("/v1/embeddings", web::post().to(embeddings))
        })
        .workers(2)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeEmbeddings {
            url: format!("http://127.0.0.1:{port}/v1"),
            requests,
            holding,
            authorizations,
            _server: handle,
        }
    }

    /// The `Authorization` header of every request, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.authorizations.lock().unwrap().clone()
    }

    /// Lets held requests (and all later ones) through.
    pub fn release(&self) {
        self.holding.store(false, Ordering::SeqCst);
    }
}
