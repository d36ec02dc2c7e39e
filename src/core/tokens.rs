//! The process's one cl100k tokenizer: chunk sizes, usage when a server reports none, history
//! trimming and budget estimates all count with it.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

static CL100K: OnceLock<Result<CoreBPE, String>> = OnceLock::new();

/// The cl100k tokenizer, loaded once per process (its tables are built in).
pub fn cl100k() -> Result<&'static CoreBPE, String> {
    CL100K
        .get_or_init(|| tiktoken_rs::cl100k_base().map_err(|error| error.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// Tokens of `text` for cl100k-style models. Should the tables ever fail to load, a
/// conservative estimate (a token per three bytes) stands in rather than a panic.
pub fn count_tokens(text: &str) -> u32 {
    let count = match cl100k() {
        Ok(bpe) => bpe.encode_ordinary(text).len(),
        Err(_) => text.len().div_ceil(3),
    };
    u32::try_from(count).unwrap_or(u32::MAX)
}
