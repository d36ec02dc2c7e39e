//! The LLM client's reading of a streamed completion (`core::llm::testkit::decode_sse`): the
//! body as the network might cut it, decoded into events.
#![no_main]

use std::convert::Infallible;
use std::sync::LazyLock;
use std::time::Duration;

use avatar_platform::core::llm::testkit::decode_sse;
use avatar_platform::core::llm::{LlmError, StreamEvent};
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
});

/// `body` delivered in pieces of `piece` bytes (0: whole).
fn decode(body: &[u8], piece: usize) -> Vec<Result<StreamEvent, LlmError>> {
    let pieces: Vec<Result<Vec<u8>, Infallible>> = if piece == 0 {
        vec![Ok(body.to_vec())]
    } else {
        body.chunks(piece).map(|bytes| Ok(bytes.to_vec())).collect()
    };
    RUNTIME.block_on(
        decode_sse(
            futures_util::stream::iter(pieces),
            Duration::from_secs(3600),
        )
        .collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    // The first byte says where the network cuts the body, so that a line, an event or a
    // character split over two pieces is read too.
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let events = decode(body, usize::from(piece));
    // At most one error, and nothing after it.
    if let Some(at) = events.iter().position(Result::is_err) {
        assert_eq!(at + 1, events.len(), "{events:?}");
    }
    // The same text reads the same however it is cut. (Not for invalid UTF-8: how much is
    // read before the error depends on where the cut falls.)
    if piece != 0 && std::str::from_utf8(body).is_ok() {
        assert_eq!(events, decode(body, 0), "pieces of {piece}");
    }
});
