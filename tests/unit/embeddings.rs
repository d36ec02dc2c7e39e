//! The local embedder: deterministic, normalised, lexical (shared words and stems bring texts
//! together), safe on empty input, and fine with large batches.

use avatar_platform::core::embeddings::{
    Embedder, EmbeddingError, LEXICAL_MODEL_ID, LexicalEmbedder, cosine,
};

const DIMENSION: usize = 384;

fn embedder() -> LexicalEmbedder {
    LexicalEmbedder::new(DIMENSION).unwrap()
}

fn norm(vector: &[f32]) -> f32 {
    vector.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|text| (*text).to_owned()).collect()
}

#[tokio::test]
async fn the_same_text_gives_the_same_vector_every_time_and_in_every_instance() {
    let text = "Install R packages from CRAN with install.packages().".to_owned();
    let first = embedder().embed(std::slice::from_ref(&text)).await.unwrap();
    let again = embedder().embed(std::slice::from_ref(&text)).await.unwrap();
    let other_instance = LexicalEmbedder::new(DIMENSION).unwrap();
    let third = other_instance
        .embed(std::slice::from_ref(&text))
        .await
        .unwrap();

    assert_eq!(first, again);
    assert_eq!(first, third);
    assert_eq!(first[0], other_instance.embed_text(&text));
}

#[test]
fn vectors_do_not_depend_on_the_process_or_the_platform() {
    // Pinned: if this changes, every stored vector changes, and so must LEXICAL_MODEL_ID.
    let vector = LexicalEmbedder::new(16)
        .unwrap()
        .embed_text("How do I install R packages?");
    let scaled: Vec<i32> = vector
        .iter()
        .map(|x| (x * 10_000.0).round() as i32)
        .collect();
    assert_eq!(
        scaled,
        [
            2085, 0, 0, 2085, -4170, 0, 0, -4170, -2085, -2085, 6255, 0, -2085, -2085, 0, 0
        ]
    );
}

#[tokio::test]
async fn vectors_have_the_configured_dimension_and_unit_length() {
    for dimension in [1, 16, 384, 1536] {
        let embedder = LexicalEmbedder::new(dimension).unwrap();
        assert_eq!(embedder.dimension(), dimension);
        let vectors = embedder
            .embed(&texts(&[
                "A short sentence about installing software.",
                "Football is played by two teams of eleven players.",
            ]))
            .await
            .unwrap();
        assert_eq!(vectors.len(), 2);
        for vector in vectors {
            assert_eq!(vector.len(), dimension);
            assert!((norm(&vector) - 1.0).abs() < 1e-5, "norm {}", norm(&vector));
        }
    }
}

#[test]
fn a_zero_dimension_is_refused() {
    assert!(matches!(
        LexicalEmbedder::new(0),
        Err(EmbeddingError::Permanent(_))
    ));
}

#[test]
fn the_model_id_names_the_algorithm() {
    assert_eq!(embedder().model_id(), "local-lexical-v1");
    assert_eq!(LEXICAL_MODEL_ID, "local-lexical-v1");
}

#[tokio::test]
async fn a_question_is_closest_to_the_passage_that_shares_its_keywords() {
    let vectors = embedder()
        .embed(&texts(&[
            "How do I install R packages?",
            "To install packages in R, call install.packages(\"name\") from the console; \
             packages are downloaded from CRAN and installed into your library.",
            "The football match ended in a draw after both teams scored twice in the \
             second half.",
        ]))
        .await
        .unwrap();
    let (question, relevant, unrelated) = (&vectors[0], &vectors[1], &vectors[2]);

    let relevant_score = cosine(question, relevant);
    let unrelated_score = cosine(question, unrelated);
    assert!(relevant_score > 0.3, "relevant scored {relevant_score}");
    assert!(
        unrelated_score.abs() < 0.1,
        "unrelated scored {unrelated_score}"
    );
    assert!(relevant_score > unrelated_score + 0.2);
}

#[test]
fn inflections_of_a_word_are_close_and_other_words_are_not() {
    let embedder = embedder();
    let install = embedder.embed_text("install");
    let installing = embedder.embed_text("installing");
    let installed = embedder.embed_text("installed");
    let football = embedder.embed_text("football");

    assert!(cosine(&install, &installing) > 0.4);
    assert!(cosine(&install, &installed) > 0.4);
    assert!(cosine(&installing, &installed) > 0.4);
    assert!(cosine(&install, &football).abs() < 0.15);
}

#[test]
fn case_and_punctuation_do_not_matter() {
    let embedder = embedder();
    let plain = embedder.embed_text("install packages");
    let shouted = embedder.embed_text("INSTALL, Packages!!!");
    assert!((cosine(&plain, &shouted) - 1.0).abs() < 1e-6);
}

#[test]
fn unicode_letters_and_digits_are_kept() {
    let embedder = embedder();
    let german = embedder.embed_text("Größe der Straße 2024");
    assert!((norm(&german) - 1.0).abs() < 1e-5);
    assert!(cosine(&german, &embedder.embed_text("GRÖSSE straße")) > 0.2);
    assert!(cosine(&german, &embedder.embed_text("2024")) > 0.1);
    let russian = embedder.embed_text("установка пакетов");
    assert!(cosine(&russian, &embedder.embed_text("установка")) > 0.4);
}

#[tokio::test]
async fn text_without_words_gives_the_zero_vector_whose_cosine_is_zero() {
    let embedder = embedder();
    let vectors = embedder
        .embed(&texts(&["", "   ", "the of and to is", "a I ! ? ...", "x"]))
        .await
        .unwrap();
    let sentence = embedder.embed_text("install packages");
    for vector in &vectors {
        assert_eq!(vector.len(), DIMENSION);
        assert!(vector.iter().all(|&x| x == 0.0), "{vector:?}");
        let similarity = cosine(vector, &sentence);
        assert_eq!(similarity, 0.0);
        assert!(!similarity.is_nan());
    }
    assert_eq!(cosine(&vectors[0], &vectors[1]), 0.0);
}

#[test]
fn cosine_is_zero_for_vectors_of_different_lengths() {
    assert_eq!(cosine(&[1.0, 0.0], &[1.0, 0.0, 0.0]), 0.0);
    assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
    assert!((cosine(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-6);
}

#[tokio::test]
async fn an_empty_batch_gives_no_vectors() {
    assert!(embedder().embed(&[]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_is_embedded_in_order_off_the_executor() {
    let embedder = embedder();
    let batch: Vec<String> = (0..200)
        .map(|index| {
            format!("Passage number {index} talks about topic{index} and installing packages.")
        })
        .collect();
    let vectors = embedder.embed(&batch).await.unwrap();

    assert_eq!(vectors.len(), 200);
    for (text, vector) in batch.iter().zip(&vectors) {
        assert_eq!(vector, &embedder.embed_text(text));
    }

    // Over 64 KiB in few texts also goes to the blocking pool; the result is the same.
    let long = vec!["install packages ".repeat(5000); 2];
    let vectors = embedder.embed(&long).await.unwrap();
    assert_eq!(vectors[0], embedder.embed_text(&long[0]));
}

#[test]
fn errors_say_whether_a_retry_can_help() {
    let transient = EmbeddingError::Transient("timed out".to_owned());
    let permanent = EmbeddingError::Permanent("bad request".to_owned());
    assert!(transient.is_transient());
    assert!(!permanent.is_transient());
    assert_eq!(transient.message(), "timed out");
    assert_eq!(permanent.to_string(), "embedding failed: bad request");
}

#[test]
fn a_chunk_size_is_capped_to_the_local_model_s_window_and_its_overlap_in_proportion() {
    use avatar_platform::core::config::EmbeddingProvider;
    use avatar_platform::core::embeddings::{fit_chunk, max_chunk_tokens};
    let window = max_chunk_tokens(EmbeddingProvider::Local);
    assert_eq!(window, Some(254));
    assert_eq!(fit_chunk(512, 64, window), (254, 31));
    assert_eq!(fit_chunk(200, 40, window), (200, 40));
    assert_eq!(max_chunk_tokens(EmbeddingProvider::Lexical), None);
    assert_eq!(fit_chunk(2000, 100, None), (2000, 100));
}

#[test]
fn an_avatar_s_language_chooses_the_stopwords_left_out() {
    let english = embedder();
    let russian = english.for_language("russian");
    let simple = english.for_language("simple");
    // "и" (and) and "на" (on) are Russian stopwords: left out in Russian only.
    let with = "кошки и собаки спят на солнце";
    let without = "кошки собаки спят солнце";
    let same = |embedder: &LexicalEmbedder| {
        cosine(&embedder.embed_text(with), &embedder.embed_text(without))
    };
    assert!(same(&russian) > 0.9999, "{}", same(&russian));
    assert!(same(&english) < 0.99, "{}", same(&english));
    // English stopwords count under `simple` (no list) and under Russian.
    let english_text = "the cats and the dogs";
    let bare = "cats dogs";
    assert!(cosine(&english.embed_text(english_text), &english.embed_text(bare)) > 0.9999);
    assert!(cosine(&simple.embed_text(english_text), &simple.embed_text(bare)) < 0.99);
    // A language without a list leaves nothing out; English is the default.
    assert_eq!(english.for_language("english"), english);
    assert_eq!(english.for_language("armenian"), simple);
}
