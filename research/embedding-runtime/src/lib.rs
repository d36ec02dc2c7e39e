//! Spike: local all-MiniLM-L6-v2 sentence embedder, three runtimes.
//! Each backend module is self-contained (tokenizer setup + length batching + model + pooling).
#[cfg(feature = "candle")]
pub mod candle_embedder;
#[cfg(feature = "ort")]
pub mod ort_embedder;
#[cfg(feature = "tract")]
pub mod tract_embedder;
