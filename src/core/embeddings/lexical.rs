//! The lexical embedder: words and character trigrams hashed into buckets (see the module
//! documentation above for what it can and cannot find).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use std::sync::Arc;

use async_trait::async_trait;

use super::{Embedder, EmbeddingError, check_dimension};

/// Identifier of the local embedder's algorithm; change it whenever its vectors change.
pub const LEXICAL_MODEL_ID: &str = "local-lexical-v1";

/// Batches above either size are embedded on tokio's blocking pool so that they do not hold an
/// executor thread for long (a few milliseconds of hashing per 64 chunks is fine inline).
const INLINE_MAX_TEXTS: usize = 64;
const INLINE_MAX_BYTES: usize = 64 * 1024;

/// Weight of each character trigram relative to its word: enough to pull inflections of a
/// stem together, small enough that whole-word matches still dominate.
const TRIGRAM_WEIGHT: f64 = 0.5;

/// Namespaces keep a word and a trigram with the same letters in different buckets.
const WORD_FEATURE: u8 = b'w';
const TRIGRAM_FEATURE: u8 = b't';

/// The default embedder: deterministic lexical feature hashing, no network, no model files.
/// See the module documentation for what it can and cannot find.
///
/// A text becomes tokens (lowercased runs of Unicode letters and digits, at least two
/// characters, minus the stopwords of its language: a short English list by default, NLTK's
/// list for another language of an avatar's `rag.language`, none for `simple`). Each distinct token adds
/// `1 + ln(term frequency)` to the bucket its hash selects, with a sign taken from another bit
/// of the hash so that collisions cancel out on average rather than pile up; each trigram of
/// the token (with a start-of-word marker: `<in`, `ins`, `nst`, ...) adds half that weight. The
/// hash is FNV-1a with a 64-bit finaliser, fixed here, so vectors are identical across
/// processes, machines and Rust releases. The result is L2-normalised; a text without any
/// token (empty, punctuation, only stopwords) gives the zero vector, whose cosine with
/// anything is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexicalEmbedder {
    dimension: usize,
    stopwords: Stopwords,
}

/// The words left out of a text: they say little about what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopwords {
    /// The built-in English list (the vectors of [`LEXICAL_MODEL_ID`] by default).
    English,
    /// NLTK's list for another of PostgreSQL's text search languages.
    Listed(&'static HashSet<String>),
    /// None: `simple`, or a language without a list.
    Unlisted,
}

impl Stopwords {
    fn contains(self, token: &str) -> bool {
        match self {
            Stopwords::English => is_stopword(token),
            Stopwords::Listed(words) => words.contains(token),
            Stopwords::Unlisted => false,
        }
    }
}

/// PostgreSQL's text search configurations that NLTK has a stopword list for, by the list's
/// ISO 639-1 code (`stop-words` crate).
const NLTK_LISTS: [(&str, &str); 21] = [
    ("arabic", "ar"),
    ("basque", "eu"),
    ("catalan", "ca"),
    ("danish", "da"),
    ("dutch", "nl"),
    ("finnish", "fi"),
    ("french", "fr"),
    ("german", "de"),
    ("greek", "el"),
    ("hungarian", "hu"),
    ("indonesian", "id"),
    ("italian", "it"),
    ("nepali", "ne"),
    ("norwegian", "no"),
    ("portuguese", "pt"),
    ("romanian", "ro"),
    ("russian", "ru"),
    ("spanish", "es"),
    ("swedish", "sv"),
    ("tamil", "ta"),
    ("turkish", "tr"),
];

/// The stopwords of a text search configuration (an avatar's `rag.language`).
fn stopwords_for(language: &str) -> Stopwords {
    static LISTS: OnceLock<HashMap<&'static str, HashSet<String>>> = OnceLock::new();
    if language == "english" {
        return Stopwords::English;
    }
    let lists = LISTS.get_or_init(|| {
        NLTK_LISTS
            .iter()
            .filter_map(|(name, code)| {
                let words = stop_words::lookup(code)?
                    .iter()
                    .map(|word| word.trim().to_lowercase())
                    .filter(|word| !word.is_empty())
                    .collect();
                Some((*name, words))
            })
            .collect()
    });
    lists
        .get(language)
        .map_or(Stopwords::Unlisted, Stopwords::Listed)
}

impl LexicalEmbedder {
    /// A local embedder producing `dimension`-long vectors (at least 1; a few hundred keeps
    /// collisions rare for chunk-sized texts).
    pub fn new(dimension: usize) -> Result<Self, EmbeddingError> {
        check_dimension(dimension)?;
        Ok(Self {
            dimension,
            stopwords: Stopwords::English,
        })
    }

    /// The same embedder, leaving out the stopwords of `language` (a PostgreSQL text search
    /// configuration, as an avatar's `rag.language`) instead of English ones.
    pub fn for_language(&self, language: &str) -> Self {
        Self {
            stopwords: stopwords_for(language),
            ..*self
        }
    }

    /// The embedding of one text, computed on the calling thread (fast: microseconds for a
    /// chunk). [`Embedder::embed`] is the same per text.
    pub fn embed_text(&self, text: &str) -> Vec<f32> {
        let lowercase = text.to_lowercase();
        // Sorted, so that floating-point sums happen in the same order every time.
        let mut term_frequencies: BTreeMap<&str, u32> = BTreeMap::new();
        for token in tokens(&lowercase, self.stopwords) {
            *term_frequencies.entry(token).or_default() += 1;
        }

        let mut accumulator = vec![0.0_f64; self.dimension];
        let mut trigram = [0_u8; 12];
        for (token, frequency) in term_frequencies {
            let weight = 1.0 + f64::from(frequency).ln();
            self.add_feature(&mut accumulator, WORD_FEATURE, token.as_bytes(), weight);

            let characters: Vec<char> = std::iter::once('<').chain(token.chars()).collect();
            for window in characters.windows(3) {
                let mut length = 0;
                for character in window {
                    length += character.encode_utf8(&mut trigram[length..]).len();
                }
                self.add_feature(
                    &mut accumulator,
                    TRIGRAM_FEATURE,
                    &trigram[..length],
                    weight * TRIGRAM_WEIGHT,
                );
            }
        }

        let norm = accumulator.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return vec![0.0; self.dimension];
        }
        accumulator.iter().map(|x| (x / norm) as f32).collect()
    }

    fn add_feature(&self, accumulator: &mut [f64], namespace: u8, bytes: &[u8], weight: f64) {
        let hash = stable_hash(namespace, bytes);
        // The bucket comes from the low bits, the sign from the top one.
        let bucket = (hash % self.dimension as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        accumulator[bucket] += sign * weight;
    }

    fn embed_all(&self, texts: &[String]) -> Vec<Vec<f32>> {
        texts.iter().map(|text| self.embed_text(text)).collect()
    }
}

#[async_trait]
impl Embedder for LexicalEmbedder {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn model_id(&self) -> String {
        LEXICAL_MODEL_ID.to_owned()
    }

    fn for_language(&self, language: &str) -> Option<Arc<dyn Embedder>> {
        Some(Arc::new(LexicalEmbedder::for_language(self, language)))
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let total_bytes: usize = texts.iter().map(String::len).sum();
        if texts.len() <= INLINE_MAX_TEXTS && total_bytes <= INLINE_MAX_BYTES {
            return Ok(self.embed_all(texts));
        }
        let embedder = *self;
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || embedder.embed_all(&texts))
            .await
            .map_err(|error| {
                EmbeddingError::Permanent(format!("the local embedding task failed: {error}"))
            })
    }
}

/// Lowercased text split into runs of letters and digits, without short tokens and stopwords.
fn tokens(lowercase: &str, stopwords: Stopwords) -> impl Iterator<Item = &str> {
    lowercase
        .split(|character: char| !character.is_alphanumeric())
        .filter(move |token| token.chars().nth(1).is_some() && !stopwords.contains(token))
}

/// Words too common in English to tell passages apart. Kept short on purpose: with a lexical
/// embedder every dropped word is a keyword nobody can search for.
fn is_stopword(token: &str) -> bool {
    matches!(
        token,
        "about"
            | "above"
            | "after"
            | "again"
            | "all"
            | "also"
            | "am"
            | "an"
            | "and"
            | "any"
            | "are"
            | "as"
            | "at"
            | "be"
            | "because"
            | "been"
            | "before"
            | "being"
            | "below"
            | "between"
            | "both"
            | "but"
            | "by"
            | "can"
            | "could"
            | "did"
            | "do"
            | "does"
            | "doing"
            | "during"
            | "each"
            | "for"
            | "from"
            | "further"
            | "had"
            | "has"
            | "have"
            | "having"
            | "he"
            | "her"
            | "here"
            | "hers"
            | "him"
            | "his"
            | "how"
            | "if"
            | "in"
            | "into"
            | "is"
            | "it"
            | "its"
            | "itself"
            | "just"
            | "me"
            | "more"
            | "most"
            | "my"
            | "no"
            | "nor"
            | "not"
            | "of"
            | "off"
            | "on"
            | "once"
            | "only"
            | "or"
            | "other"
            | "our"
            | "ours"
            | "out"
            | "over"
            | "own"
            | "same"
            | "she"
            | "should"
            | "so"
            | "some"
            | "such"
            | "than"
            | "that"
            | "the"
            | "their"
            | "theirs"
            | "them"
            | "then"
            | "there"
            | "these"
            | "they"
            | "this"
            | "those"
            | "through"
            | "to"
            | "too"
            | "under"
            | "until"
            | "up"
            | "very"
            | "was"
            | "we"
            | "were"
            | "what"
            | "when"
            | "where"
            | "which"
            | "while"
            | "who"
            | "whom"
            | "why"
            | "will"
            | "with"
            | "would"
            | "you"
            | "your"
            | "yours"
    )
}

/// FNV-1a over a namespace byte and `bytes`, then the SplitMix64 finaliser so that every bit
/// of the result (the bucket's low bits, the sign's top bit) depends on every input byte.
/// Fixed forever for [`LEXICAL_MODEL_ID`]: changing it changes every stored vector.
fn stable_hash(namespace: u8, bytes: &[u8]) -> u64 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET_BASIS;
    for &byte in std::iter::once(&namespace).chain(bytes) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}
