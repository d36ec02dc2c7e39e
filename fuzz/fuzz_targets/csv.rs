//! The CSV parser on arbitrary bytes (seeds: scripts/fuzz.sh).
#![no_main]

mod document;

use avatar_platform::modules::documents::testkit::parsing::DocumentFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| document::parse_and_check(DocumentFormat::Csv, bytes));
