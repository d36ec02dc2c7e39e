//! The local semantic embedder: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions, mean
//! pooling, normalised), run in-process by ONNX Runtime through `ort`.
//!
//! `scripts/embedder.sh` installs what it needs into one directory
//! (`embeddings.local_model_dir`): the tokenizer (`tokenizer.json`), the graph (`model.onnx`,
//! written from the model's weights by `scripts/embedder/build_onnx.py`; pooling and
//! normalisation are inside it) and the runtime (`libonnxruntime.so.<version>`, loaded at
//! start-up). Nothing is fetched at run time. ONNX Runtime was chosen by measurement over
//! candle and tract (`research/embedding-runtime/REPORT.md`).
//!
//! # Never in the way
//! The model is loaded once per process and shared by every embedder built from the same
//! directory. It runs in two sessions:
//! - **documents** (`embed`) go through one session, one batch at a time, with
//!   `embeddings.threads` threads: however many documents are being indexed, embedding uses
//!   at most that many cores;
//! - **questions** (`embed_query`) have a session of their own (two threads where there are
//!   two cores: a question is short work, and on the user's path), so a question never waits
//!   behind a document's batches.
//!
//! # Long texts
//! The model reads at most [`MAX_PIECES`] word pieces. A longer text is not cut: it is read in
//! windows of that size, and its vector is the mean of theirs, weighted by their pieces, made
//! unit length again. Chunks are sized to fit one window; this is for questions and odd inputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use tokenizers::Tokenizer;

use super::{Embedder, EmbeddingError, TokenUnit, normalize};

/// Stored with every chunk this embedder wrote.
pub const SEMANTIC_MODEL_ID: &str = "local:all-MiniLM-L6-v2";
/// The length of its vectors.
pub const SEMANTIC_DIMENSION: usize = 384;
/// The model's window in word pieces, `[CLS]` and `[SEP]` included.
pub const MAX_PIECES: usize = 256;
/// The most word pieces of text a chunk holds for the model to read it whole.
pub const MAX_CHUNK_PIECES: usize = MAX_PIECES - 2;
/// The ONNX Runtime library `scripts/embedder.sh` installs, matching the `ort` crate's version.
pub const ONNXRUNTIME_LIBRARY: &str = "libonnxruntime.so.1.32.0";
/// Sequences run together: at most 8, and at most 512 word pieces in all (padding included).
/// Short texts gain from sharing a run; long chunks do not (measured on one thread: 15.4
/// chunks of 256 pieces per second alone or in pairs, 13.3 in eights), and a batch's memory
/// grows with it.
const MAX_BATCH: usize = 8;
const MAX_BATCH_PIECES: usize = 512;
/// Threads a question runs on: two where there are two cores (a short question takes about
/// 4.5 ms on one thread here); they sleep between questions.
const QUESTION_THREADS: usize = 2;
const INSTALL_HINT: &str = "install it with `make setup` (scripts/embedder.sh), or set \
    embeddings.provider = \"lexical\"";

/// Counts word pieces as the model reads them, `[CLS]` and `[SEP]` left out: what chunks are
/// sized in. Loaded from `tokenizer.json` alone (the document parser's child process uses it).
#[derive(Clone)]
pub struct WordPieceCounter {
    tokenizer: Tokenizer,
}

impl WordPieceCounter {
    pub fn load(path: &Path) -> Result<Self, String> {
        let mut tokenizer =
            Tokenizer::from_file(path).map_err(|error| format!("{}: {error}", path.display()))?;
        // The file ships padding to 128 and truncation at 128: neither is wanted here.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        Ok(WordPieceCounter { tokenizer })
    }

    /// The word pieces of `text`, without `[CLS]` and `[SEP]` (a text that cannot be
    /// tokenized counts a piece per byte: never less than it is).
    pub fn count(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text, false)
            .map_or(text.len(), |encoding| encoding.get_ids().len())
    }
}

/// all-MiniLM-L6-v2, in-process. Cheap to clone and share.
#[derive(Clone)]
pub struct SemanticEmbedder {
    model: Arc<Model>,
}

impl std::fmt::Debug for SemanticEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticEmbedder")
            .field("dir", &self.model.dir)
            .finish_non_exhaustive()
    }
}

/// The models loaded in this process, by directory and threads.
type Loaded = HashMap<(PathBuf, usize), Arc<Model>>;

struct Model {
    dir: PathBuf,
    counter: WordPieceCounter,
    /// The `[CLS]` and `[SEP]` ids, which open and close every window.
    cls: u32,
    sep: u32,
    /// For documents: one batch at a time, on `embeddings.threads` threads.
    documents: Mutex<Session>,
    /// For questions: never behind the documents' batches.
    questions: Mutex<Session>,
}

impl SemanticEmbedder {
    /// The model in `dir`, loaded once per process (and per `threads`). The error is one line
    /// that says what is missing and how to install it.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, EmbeddingError> {
        static MODELS: OnceLock<Mutex<Loaded>> = OnceLock::new();
        let mut models = MODELS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (dir.to_path_buf(), threads.max(1));
        if let Some(model) = models.get(&key) {
            return Ok(SemanticEmbedder {
                model: model.clone(),
            });
        }
        let model = Arc::new(Model::load(dir, key.1)?);
        models.insert(key, model.clone());
        Ok(SemanticEmbedder { model })
    }

    /// The vector of a sequence of piece ids (one window), as the graph computes it.
    #[cfg(test)]
    fn embed_ids(&self, ids: &[u32]) -> Result<Vec<f32>, EmbeddingError> {
        let mut session = self
            .model
            .questions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(run(&mut session, &[ids])?.remove(0))
    }
}

/// The process's one ONNX Runtime environment, from `library`. A library that failed to load
/// cannot be loaded again in this process: its error is kept.
fn environment(library: &Path) -> Result<Environment, EmbeddingError> {
    static LOADED: OnceLock<Result<Environment, String>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        if !library.is_file() {
            return Err(format!("{} is missing", library.display()));
        }
        ort::init_from(library)
            .map_err(|error| error.to_string())
            .and_then(|builder| {
                builder
                    .with_name("avatar-platform")
                    .build()
                    .map_err(|error| error.to_string())
            })
            .map_err(|error| format!("{} did not load: {error}", library.display()))
    });
    loaded.clone().map_err(|error| {
        EmbeddingError::Permanent(format!(
            "the local embedding model cannot run: {error}; {INSTALL_HINT}"
        ))
    })
}

impl Model {
    fn load(dir: &Path, threads: usize) -> Result<Self, EmbeddingError> {
        let unusable = |what: String| {
            let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
            EmbeddingError::Permanent(format!(
                "the local embedding model in {} is unusable: {what}; {INSTALL_HINT}",
                dir.display()
            ))
        };
        for file in ["tokenizer.json", "model.onnx"] {
            if !dir.join(file).is_file() {
                return Err(unusable(format!("{file} is missing")));
            }
        }
        let counter = WordPieceCounter::load(&dir.join("tokenizer.json")).map_err(&unusable)?;
        let special = |token: &str| {
            counter
                .tokenizer
                .token_to_id(token)
                .ok_or_else(|| unusable(format!("tokenizer.json has no {token}")))
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
        let environment = environment(&dir.join(ONNXRUNTIME_LIBRARY))?;
        let session = |threads: usize| -> Result<Session, EmbeddingError> {
            let failed = |error: String| unusable(format!("model.onnx: {error}"));
            Session::builder(&environment)
                .map_err(|error| failed(error.to_string()))?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(|error| failed(error.to_string()))?
                .with_intra_threads(threads)
                .map_err(|error| failed(error.to_string()))?
                .with_inter_threads(1)
                .map_err(|error| failed(error.to_string()))?
                // Idle threads sleep: the server has other work for the cores.
                .with_intra_op_spinning(false)
                .map_err(|error| failed(error.to_string()))?
                .commit_from_file(dir.join("model.onnx"))
                .map_err(|error| failed(error.to_string()))
        };
        let model = Model {
            // Absolute: the document parser's child is handed the tokenizer's path.
            dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
            documents: Mutex::new(session(threads)?),
            questions: Mutex::new(session(
                std::thread::available_parallelism()
                    .map_or(1, |cores| cores.get().min(QUESTION_THREADS)),
            )?),
            counter,
            cls,
            sep,
        };
        // A graph that loads but computes something else is caught here, not per request.
        let probe = model.embed_with(&model.questions, &["probe"])?;
        if probe.len() != 1 || probe[0].len() != SEMANTIC_DIMENSION {
            return Err(unusable(format!(
                "model.onnx does not give {SEMANTIC_DIMENSION}-dimensional vectors"
            )));
        }
        Ok(model)
    }

    /// The piece ids of `text`, `[CLS]` and `[SEP]` included, however long.
    fn pieces(&self, text: &str) -> Result<Vec<u32>, EmbeddingError> {
        self.counter
            .tokenizer
            .encode(text, true)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|error| EmbeddingError::Permanent(format!("tokenizing failed: {error}")))
    }

    /// `ids` cut into windows of at most [`MAX_PIECES`], each opened and closed as the model
    /// expects; with the pieces of text each holds (none for an empty text).
    fn windows(&self, ids: &[u32]) -> Vec<(Vec<u32>, usize)> {
        if ids.len() <= 2 {
            // Nothing but `[CLS]` and `[SEP]`: no text, no vector (all zeros, as promised).
            return Vec::new();
        }
        if ids.len() <= MAX_PIECES {
            return vec![(ids.to_vec(), ids.len().saturating_sub(2).max(1))];
        }
        let inner = &ids[1..ids.len() - 1];
        inner
            .chunks(MAX_PIECES - 2)
            .map(|part| {
                let mut window = Vec::with_capacity(part.len() + 2);
                window.push(self.cls);
                window.extend_from_slice(part);
                window.push(self.sep);
                (window, part.len())
            })
            .collect()
    }

    /// Embeds `texts` through `session`, one batch at a time (the lock is taken per batch, so
    /// two documents take turns).
    fn embed_with(
        &self,
        session: &Mutex<Session>,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        // Every window of every text: (text, its window, the window's weight).
        let mut windows = Vec::new();
        for (text, content) in texts.iter().enumerate() {
            for (window, weight) in self.windows(&self.pieces(content)?) {
                windows.push((text, window, weight));
            }
        }
        // Longest first, so each batch pads to about its own length.
        windows.sort_by_key(|(_, window, _)| std::cmp::Reverse(window.len()));
        let mut sums = vec![vec![0.0_f32; SEMANTIC_DIMENSION]; texts.len()];
        let mut rest = &windows[..];
        while !rest.is_empty() {
            // The longest first: its length is the batch's width.
            let width = rest[0].1.len().max(1);
            let size = (MAX_BATCH_PIECES / width)
                .clamp(1, MAX_BATCH)
                .min(rest.len());
            let (batch, after) = rest.split_at(size);
            rest = after;
            let ids: Vec<&[u32]> = batch.iter().map(|(_, window, _)| &window[..]).collect();
            let vectors = {
                let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
                run(&mut session, &ids)?
            };
            for ((text, _, weight), vector) in batch.iter().zip(vectors) {
                for (sum, value) in sums[*text].iter_mut().zip(vector) {
                    *sum += value * *weight as f32;
                }
            }
        }
        for sum in &mut sums {
            normalize(sum);
        }
        Ok(sums)
    }
}

/// One run of the graph over `sequences` (padded to the longest, masked): their vectors.
fn run(session: &mut Session, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
    let failed =
        |error: ort::Error| EmbeddingError::Permanent(format!("the model failed: {error}"));
    let rows = sequences.len();
    let width = sequences.iter().map(|ids| ids.len()).max().unwrap_or(0);
    let mut ids = vec![0_i64; rows * width];
    let mut mask = vec![0_i64; rows * width];
    for (row, sequence) in sequences.iter().enumerate() {
        for (column, &id) in sequence.iter().enumerate() {
            ids[row * width + column] = i64::from(id);
            mask[row * width + column] = 1;
        }
    }
    let outputs = session
        .run(ort::inputs![
            "input_ids" => Tensor::from_array(([rows, width], ids)).map_err(failed)?,
            "attention_mask" => Tensor::from_array(([rows, width], mask)).map_err(failed)?,
        ])
        .map_err(failed)?;
    let (_, values) = outputs["sentence_embedding"]
        .try_extract_tensor::<f32>()
        .map_err(failed)?;
    if values.len() != rows * SEMANTIC_DIMENSION {
        return Err(EmbeddingError::Permanent(format!(
            "the model gave {} values for {rows} texts",
            values.len()
        )));
    }
    Ok(values
        .chunks(SEMANTIC_DIMENSION)
        .map(<[f32]>::to_vec)
        .collect())
}

#[async_trait]
impl Embedder for SemanticEmbedder {
    fn dimension(&self) -> usize {
        SEMANTIC_DIMENSION
    }

    fn model_id(&self) -> String {
        SEMANTIC_MODEL_ID.to_owned()
    }

    fn token_unit(&self) -> TokenUnit {
        TokenUnit::WordPieces(self.model.dir.join("tokenizer.json"))
    }

    fn max_chunk_tokens(&self) -> Option<usize> {
        Some(MAX_CHUNK_PIECES)
    }

    fn embeds_in_background(&self) -> bool {
        true
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let model = self.model.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed_with(&model.documents, &texts)
        })
        .await
        .map_err(|error| EmbeddingError::Transient(format!("the embedding task failed: {error}")))?
    }

    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbeddingError> {
        let model = self.model.clone();
        let text = text.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut vectors = model.embed_with(&model.questions, &[&text])?;
            Ok(vectors.pop().unwrap_or_default())
        })
        .await
        .map_err(|error| EmbeddingError::Transient(format!("the embedding task failed: {error}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::embeddings::cosine;

    /// The installed model (`scripts/embedder.sh`), or `APP__EMBEDDINGS__LOCAL_MODEL_DIR`.
    fn embedder() -> SemanticEmbedder {
        let dir = std::env::var("APP__EMBEDDINGS__LOCAL_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/embedder"));
        SemanticEmbedder::load(&dir, 1).unwrap_or_else(|error| panic!("{error}"))
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        max_len: usize,
        cos_card_example: f64,
        items: Vec<ReferenceItem>,
    }

    #[derive(serde::Deserialize)]
    struct ReferenceItem {
        text: String,
        n_pieces_untruncated: usize,
        ids: Vec<u32>,
        embedding: Vec<f32>,
    }

    /// Computed once by `scripts/embedder/reference.py`: a float64 numpy forward pass of the
    /// model (its cos for the model card's example is the card's 0.7553).
    fn reference() -> Reference {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embedder/reference.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn vectors_match_sentence_transformers_one_by_one_and_batched() {
        let embedder = embedder();
        let reference = reference();
        assert_eq!(reference.max_len, MAX_PIECES);
        let within: Vec<&ReferenceItem> = reference
            .items
            .iter()
            .filter(|item| item.n_pieces_untruncated <= MAX_PIECES)
            .collect();
        assert!(within.len() >= 6);
        let texts: Vec<String> = within.iter().map(|item| item.text.clone()).collect();
        let batched = embedder.embed(&texts).await.unwrap();
        for (item, vector) in within.iter().zip(&batched) {
            assert_eq!(embedder.model.pieces(&item.text).unwrap(), item.ids);
            let alone = embedder.embed_query(&item.text).await.unwrap();
            for (how, vector) in [("batched", vector), ("alone", &alone)] {
                let similarity = cosine(vector, &item.embedding);
                assert!(
                    similarity >= 0.999,
                    "{how} {:?}: cos {similarity}",
                    item.text
                );
                let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-5, "unit length, not {norm}");
            }
        }
        let [eating, bread] = [&batched[0], &batched[1]];
        let card = f64::from(cosine(eating, bread));
        assert!((card - reference.cos_card_example).abs() < 1e-3, "{card}");
        assert!(
            (card - 0.7553).abs() < 1e-3,
            "the model card's example: {card}"
        );
    }

    #[tokio::test]
    async fn a_text_longer_than_the_window_is_read_whole_and_an_empty_one_as_zeros() {
        let embedder = embedder();
        let reference = reference();
        let long = reference
            .items
            .iter()
            .find(|item| item.n_pieces_untruncated > 2 * MAX_PIECES)
            .expect("a long text in the reference");
        let ids = embedder.model.pieces(&long.text).unwrap();
        assert_eq!(ids.len(), long.n_pieces_untruncated);
        assert_eq!(embedder.model.counter.count(&long.text) + 2, ids.len());
        // The first window is what the reference (truncated at the window) saw.
        let windows = embedder.model.windows(&ids);
        assert_eq!(windows.len(), (ids.len() - 2).div_ceil(MAX_PIECES - 2));
        assert_eq!(windows[0].0, long.ids);
        let first = embedder.embed_ids(&windows[0].0).unwrap();
        assert!(cosine(&first, &long.embedding) >= 0.999);
        // The whole text: the weighted mean of every window's vector.
        let mut expected = vec![0.0_f32; SEMANTIC_DIMENSION];
        for (window, weight) in &windows {
            assert!(window.len() <= MAX_PIECES);
            let vector = embedder.embed_ids(window).unwrap();
            for (sum, value) in expected.iter_mut().zip(vector) {
                *sum += value * *weight as f32;
            }
        }
        normalize(&mut expected);
        let whole = embedder
            .embed(std::slice::from_ref(&long.text))
            .await
            .unwrap()
            .remove(0);
        assert!(cosine(&whole, &expected) >= 0.9999);
        assert!(
            cosine(&whole, &long.embedding) < 0.999,
            "more than the first window counted"
        );
        // Nothing to read: all zeros, beside a text in the same call.
        let texts = ["".to_owned(), " \n ".to_owned(), "Hi".to_owned()];
        let vectors = embedder.embed(&texts).await.unwrap();
        assert!(vectors[..2].iter().flatten().all(|&value| value == 0.0));
        assert!(cosine(&vectors[2], &embedder.embed_query("Hi").await.unwrap()) > 0.9999);
    }

    #[tokio::test]
    async fn the_model_is_loaded_once_and_a_missing_one_says_how_to_install_it() {
        let (first, second) = (embedder(), embedder());
        assert!(Arc::ptr_eq(&first.model, &second.model));
        let dir = tempfile::tempdir().unwrap();
        let error = SemanticEmbedder::load(dir.path(), 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("tokenizer.json is missing"), "{error}");
        assert!(error.contains("make setup"), "{error}");
        // A corrupt graph beside a good tokenizer and runtime.
        for file in ["tokenizer.json", ONNXRUNTIME_LIBRARY] {
            std::fs::copy(first.model.dir.join(file), dir.path().join(file)).unwrap();
        }
        std::fs::write(dir.path().join("model.onnx"), b"not a model").unwrap();
        let error = SemanticEmbedder::load(dir.path(), 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("model.onnx: "), "{error}");
        assert!(error.contains("make setup"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }
}
