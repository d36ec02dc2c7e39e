//! What the document targets share: the parse the server runs, and what its result promises.

use std::collections::HashSet;
use std::sync::{Mutex, Once};

use avatar_platform::modules::documents::testkit::parsing::{DocumentFormat, ParseLimits, parse};

/// Small enough that a bomb the fuzzer builds costs milliseconds (the defaults allow 200 MB);
/// crossing them is a path worth exercising too.
const LIMITS: ParseLimits = ParseLimits {
    docx_max_uncompressed_bytes: 8 * 1024 * 1024,
    pdf_max_pages: 64,
};

/// Parses `bytes` as `format`, as the parsing child does, and checks the promises of a
/// successful parse: sections in reading order, none blank, PDF pages numbered upwards.
pub fn parse_and_check(format: DocumentFormat, bytes: &[u8]) {
    tolerate_library_panics();
    let Ok(document) = parse(format, bytes, LIMITS) else {
        return;
    };
    assert!(!document.sections.is_empty(), "a parsed document has text");
    for section in &document.sections {
        assert!(!section.text.trim().is_empty(), "a section is blank");
    }
    if format == DocumentFormat::Pdf {
        let pages: Vec<u32> = document
            .sections
            .iter()
            .map(|section| section.page.unwrap_or(0))
            .collect();
        assert!(pages.iter().all(|page| *page >= 1), "{pages:?}");
        assert!(pages.windows(2).all(|pair| pair[0] < pair[1]), "{pages:?}");
    }
}

/// `parse` catches panics by design: the libraries under it (pdf-extract above all) panic on
/// some broken files, and such a file fails with a reason. libFuzzer's own hook would abort on
/// every one of them, caught or not; this one aborts only for a panic in the platform's code
/// (a bug even when caught) and notes each library location once.
fn tolerate_library_panics() {
    static INSTALL: Once = Once::new();
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    INSTALL.call_once(|| {
        let libfuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map_or("", |location| location.file());
            let library = file.contains("/.cargo/registry/")
                || file.contains("/.cargo/git/")
                || file.starts_with("/rustc/");
            if !library {
                libfuzzer_hook(info);
                return;
            }
            let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let location = info
                .location()
                .map_or_else(String::new, |location| location.to_string());
            if seen
                .get_or_insert_with(HashSet::new)
                .insert(location.clone())
            {
                eprintln!("fuzz: a library panicked (caught by parse): {location}");
            }
        }));
    });
}
