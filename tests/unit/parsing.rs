use avatar_platform::modules::documents::parsing::{self, DocumentFormat};
use std::time::Instant;

#[test]
fn explore() {
    for (name, format) in [
        ("R-FAQ.pdf", DocumentFormat::Pdf),
        ("gnu-maintain.pdf", DocumentFormat::Pdf),
        ("debian-reference-ch02.html", DocumentFormat::Html),
    ] {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let started = Instant::now();
        let parsed = parsing::parse(format, &bytes).unwrap();
        eprintln!(
            "=== {name}: {:?} sections={} metadata={:?}",
            started.elapsed(),
            parsed.sections.len(),
            parsed.metadata
        );
        std::fs::write(
            format!("/tmp/{name}.txt"),
            parsed
                .sections
                .iter()
                .map(|s| {
                    format!(
                        "##### page={:?} heading={:?}\n{}\n",
                        s.page, s.heading, s.text
                    )
                })
                .collect::<String>(),
        )
        .unwrap();
    }
}

#[test]
fn explore_timing() {
    for name in ["R-FAQ.pdf", "gnu-maintain.pdf"] {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let t = Instant::now();
        let _doc = pdf_extract::Document::load_mem(&bytes).unwrap();
        let load = t.elapsed();
        let t = Instant::now();
        let pages = pdf_extract::extract_text_from_mem_by_pages(&bytes).unwrap();
        eprintln!(
            "{name}: load {:?}, by_pages {:?} ({} pages)",
            load,
            t.elapsed(),
            pages.len()
        );
    }
}
