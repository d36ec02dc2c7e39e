//! The OpenAI-compatible embedder against a local fake of `POST /v1/embeddings` that speaks
//! the real protocol and can be told to misbehave: batching and ordering, the bearer key,
//! retries on 429 and 5xx, giving up, permanent 4xx, a wrong dimension, timeouts, and keys
//! that never show. No database needed.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use avatar_platform::core::embeddings::{
    Embedder, EmbeddingError, OpenAiEmbedder, OpenAiEmbedderConfig, cosine,
};
use secrecy::SecretString;

use crate::fake_openai::{FakeOpenAi, Fault, Vectors, unnormalised_vector};

const DIMENSION: usize = 8;
const MODEL: &str = "text-embedding-3-small";
const API_KEY: &str = "sk-test-0123456789-secret";

/// The shared fake, answering unnormalised vectors of the test dimension in reverse order.
async fn start_fake() -> FakeOpenAi {
    FakeOpenAi::embeddings_of(Vectors::Unnormalised(DIMENSION)).await
}

/// The embedder under test, pointed at the fake, with quick retries.
trait EmbedderUnderTest {
    fn config(&self) -> OpenAiEmbedderConfig;
    fn embedder(&self) -> OpenAiEmbedder;
    fn batch_sizes(&self) -> Vec<usize>;
}

impl EmbedderUnderTest for FakeOpenAi {
    fn config(&self) -> OpenAiEmbedderConfig {
        OpenAiEmbedderConfig {
            retry_base: Duration::from_millis(2),
            timeout: Duration::from_secs(5),
            ..OpenAiEmbedderConfig::new(&self.url, MODEL, DIMENSION)
        }
    }

    fn embedder(&self) -> OpenAiEmbedder {
        OpenAiEmbedder::new(self.config()).unwrap()
    }

    fn batch_sizes(&self) -> Vec<usize> {
        self.received()
            .iter()
            .map(|request| request.inputs.len())
            .collect()
    }
}

fn numbered_texts(count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("passage number {index}"))
        .collect()
}

fn assert_unit_length(vector: &[f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn texts_are_sent_in_batches_and_come_back_in_order() {
    let fake = start_fake().await;
    let embedder = fake.embedder();
    let texts = numbered_texts(150);

    let vectors = embedder.embed(&texts).await.unwrap();

    assert_eq!(fake.batch_sizes(), vec![64, 64, 22]);
    let sent: Vec<String> = fake.received().into_iter().flat_map(|r| r.inputs).collect();
    assert_eq!(sent, texts);
    for request in fake.received() {
        assert_eq!(request.model, MODEL);
        assert_eq!(request.encoding_format.as_deref(), Some("float"));
        assert_eq!(request.authorization, None);
    }
    assert_eq!(vectors.len(), 150);
    for (text, vector) in texts.iter().zip(&vectors) {
        assert_eq!(vector.len(), DIMENSION);
        assert_unit_length(vector);
        let similarity = cosine(vector, &unnormalised_vector(text, DIMENSION));
        assert!((similarity - 1.0).abs() < 1e-5, "{text}: {similarity}");
    }
    assert_eq!(embedder.dimension(), DIMENSION);
    assert_eq!(embedder.model_id(), "openai:text-embedding-3-small");
}

#[tokio::test]
async fn blank_texts_are_not_sent_and_get_the_zero_vector() {
    let fake = start_fake().await;
    let texts = vec!["first".to_owned(), "  ".to_owned(), "third".to_owned()];

    let vectors = fake.embedder().embed(&texts).await.unwrap();

    assert_eq!(fake.batch_sizes(), vec![2]);
    assert_eq!(fake.received()[0].inputs, vec!["first", "third"]);
    assert_eq!(vectors[1], vec![0.0; DIMENSION]);
    assert_unit_length(&vectors[0]);
    assert_unit_length(&vectors[2]);
    assert!(fake.embedder().embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token() {
    let fake = start_fake().await;
    let embedder = OpenAiEmbedder::new(OpenAiEmbedderConfig {
        api_key: Some(SecretString::from(API_KEY)),
        ..fake.config()
    })
    .unwrap();

    embedder.embed(&numbered_texts(1)).await.unwrap();

    assert_eq!(
        fake.received()[0].authorization.as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
}

#[tokio::test]
async fn rate_limits_are_retried_until_success() {
    let fake = start_fake().await;
    fake.fail_next(Fault::RateLimited, 2);

    let vectors = fake.embedder().embed(&numbered_texts(3)).await.unwrap();

    assert_eq!(vectors.len(), 3);
    assert_eq!(fake.batch_sizes(), vec![3, 3, 3]);
}

#[tokio::test]
async fn retry_after_is_honoured_instead_of_the_backoff() {
    let fake = start_fake().await;
    fake.fail_next(Fault::RateLimited, 1);
    // A backoff this long would time the test out: `Retry-After: 0` must win.
    let embedder = OpenAiEmbedder::new(OpenAiEmbedderConfig {
        retry_base: Duration::from_secs(20),
        ..fake.config()
    })
    .unwrap();

    let started = Instant::now();
    embedder.embed(&numbered_texts(1)).await.unwrap();

    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let fake = start_fake().await;
    fake.fail_next(Fault::ServerError, 3);

    let vectors = fake.embedder().embed(&numbered_texts(2)).await.unwrap();

    assert_eq!(vectors.len(), 2);
    assert_eq!(fake.received().len(), 4);
}

#[tokio::test]
async fn it_gives_up_after_max_retries_with_a_transient_error() {
    let fake = start_fake().await;
    fake.fail_always(Fault::ServerError);
    let embedder = OpenAiEmbedder::new(OpenAiEmbedderConfig {
        max_retries: 2,
        ..fake.config()
    })
    .unwrap();

    let error = embedder.embed(&numbered_texts(2)).await.unwrap_err();

    assert_eq!(
        error,
        EmbeddingError::Transient(
            "gave up after 3 attempts: the embedding endpoint answered 500 Internal Server Error"
                .to_owned()
        )
    );
    assert_eq!(fake.received().len(), 3);
}

#[tokio::test]
async fn a_rejected_request_fails_at_once_naming_the_status_not_the_servers_words() {
    let fake = start_fake().await;
    fake.fail_always(Fault::BadRequest);

    let error = fake.embedder().embed(&numbered_texts(2)).await.unwrap_err();

    assert_eq!(
        error,
        EmbeddingError::Permanent("the embedding endpoint answered 400 Bad Request".to_owned())
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_wrong_dimension_is_a_permanent_error_naming_both_numbers() {
    let fake = start_fake().await;
    fake.fail_always(Fault::WrongDimension(1536));

    let error = fake.embedder().embed(&numbered_texts(2)).await.unwrap_err();

    assert_eq!(
        error,
        EmbeddingError::Permanent(format!(
            "dimension mismatch: the model returned 1536, the deployment stores {DIMENSION}; \
             change embeddings.dimension and run the re-embed command"
        ))
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_slow_server_times_out_with_a_transient_error() {
    let fake = start_fake().await;
    fake.fail_always(Fault::Stall(Duration::from_secs(3)));
    let embedder = OpenAiEmbedder::new(OpenAiEmbedderConfig {
        timeout: Duration::from_millis(200),
        max_retries: 1,
        ..fake.config()
    })
    .unwrap();

    let started = Instant::now();
    let error = embedder.embed(&numbered_texts(1)).await.unwrap_err();

    assert_eq!(
        error,
        EmbeddingError::Transient(
            "gave up after 2 attempts: the embedding endpoint did not answer within 200ms"
                .to_owned()
        )
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let embedder = OpenAiEmbedder::new(OpenAiEmbedderConfig {
        max_retries: 1,
        retry_base: Duration::from_millis(2),
        ..OpenAiEmbedderConfig::new(format!("http://127.0.0.1:{port}/v1"), MODEL, DIMENSION)
    })
    .unwrap();

    let error = embedder.embed(&numbered_texts(1)).await.unwrap_err();

    assert!(error.is_transient());
    assert!(
        error
            .message()
            .starts_with("gave up after 2 attempts: cannot reach the embedding endpoint"),
        "{error}"
    );
}

#[tokio::test]
async fn the_api_key_never_shows_in_debug_output_or_errors() {
    let fake = start_fake().await;
    fake.fail_always(Fault::EchoesKey);
    let config = OpenAiEmbedderConfig {
        api_key: Some(SecretString::from(API_KEY)),
        ..fake.config()
    };
    let embedder = OpenAiEmbedder::new(config.clone()).unwrap();

    let error = embedder.embed(&numbered_texts(1)).await.unwrap_err();

    // The server did see it (so the echo below is real) ...
    assert!(
        fake.received()[0]
            .authorization
            .as_deref()
            .unwrap()
            .contains(API_KEY)
    );
    // ... but nothing we print does.
    for printed in [
        format!("{config:?}"),
        format!("{embedder:?}"),
        format!("{error}"),
        format!("{error:?}"),
    ] {
        assert!(!printed.contains(API_KEY), "{printed}");
        assert!(!printed.contains("0123456789"), "{printed}");
    }
    assert!(format!("{embedder:?}").contains("[REDACTED]"));
    assert_eq!(
        error,
        EmbeddingError::Permanent("the embedding endpoint answered 401 Unauthorized".to_owned())
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_before_any_request() {
    let valid = OpenAiEmbedderConfig::new("http://127.0.0.1:1/v1", MODEL, DIMENSION);
    for (config, expected) in [
        (
            OpenAiEmbedderConfig {
                dimension: 0,
                ..valid.clone()
            },
            "the embedding dimension must be at least 1",
        ),
        (
            OpenAiEmbedderConfig {
                batch_size: 0,
                ..valid.clone()
            },
            "the embedding batch size must be at least 1",
        ),
        (
            OpenAiEmbedderConfig {
                model: " ".to_owned(),
                ..valid.clone()
            },
            "no embedding model is configured",
        ),
        (
            OpenAiEmbedderConfig {
                base_url: "api.openai.com/v1".to_owned(),
                ..valid
            },
            "the embedding base URL is not a URL (relative URL without a base); write it like \
             https://host/v1",
        ),
    ] {
        assert_eq!(
            OpenAiEmbedder::new(config).unwrap_err(),
            EmbeddingError::Permanent(expected.to_owned())
        );
    }
}

#[tokio::test]
async fn openai_s_shortenable_models_are_asked_for_the_deployment_s_dimension_and_others_are_not() {
    let fake = FakeOpenAi::embeddings_of(Vectors::Unnormalised(1536)).await;
    let texts = numbered_texts(3);
    for (model, dimension, sent) in [
        // Its own size is 1536: asked for 8.
        ("text-embedding-3-small", DIMENSION, Some(DIMENSION)),
        ("openai/text-embedding-3-large", 256, Some(256)),
        // Its own size: nothing to ask.
        ("text-embedding-3-small", 1536, None),
        // Not a model known to take the parameter.
        ("nomic-embed-text", 1536, None),
    ] {
        let embedder = OpenAiEmbedder::new(OpenAiEmbedderConfig {
            retry_base: Duration::from_millis(2),
            ..OpenAiEmbedderConfig::new(&fake.url, model, dimension)
        })
        .unwrap();
        let vectors = embedder.embed(&texts).await.unwrap();
        assert!(vectors.iter().all(|vector| vector.len() == dimension));
        let request = fake.received().pop().unwrap();
        assert_eq!((request.model.as_str(), request.dimensions), (model, sent));
    }
    // A model that does not shorten, configured smaller than it answers: a clear error.
    let embedder = OpenAiEmbedder::new(OpenAiEmbedderConfig {
        retry_base: Duration::from_millis(2),
        ..OpenAiEmbedderConfig::new(&fake.url, "nomic-embed-text", 384)
    })
    .unwrap();
    let error = embedder.embed(&texts).await.unwrap_err();
    assert!(error.message().contains("dimension mismatch"), "{error}");
}
