//! The real documents in tests/fixtures.

use super::*;

// --- real documents (tests/fixtures) ---------------------------------------------------------

#[test]
fn real_r_faq_pdf() {
    let bytes = fixture("R-FAQ.pdf");
    assert_eq!(
        parsing::sniff("R-FAQ.pdf", &bytes[..8192]),
        Ok(DocumentFormat::Pdf)
    );
    let (document, elapsed) = timed(|| parsed(DocumentFormat::Pdf, &bytes));
    eprintln!("R-FAQ.pdf parsed in {elapsed:?}");
    assert_eq!(document.metadata["pages"], json!(52));
    assert!(document.sections.len() >= 50);
    let pages: Vec<u32> = document
        .sections
        .iter()
        .filter_map(|section| section.page)
        .collect();
    assert_eq!(pages.len(), document.sections.len());
    assert!(pages.windows(2).all(|pair| pair[0] < pair[1]));

    let answer = document
        .sections
        .iter()
        .find(|section| {
            section
                .text
                .contains("R is a system for statistical computation and graphics")
        })
        .expect("the answer to 'What is R?'");
    assert_eq!(answer.page, Some(7));
    assert!(answer.text.contains("2.1 What is R?"));
    let text = document.text();
    assert!(!text.contains(['\u{fb00}', '\u{fb01}', '\u{fb02}', '\u{fb03}', '\u{fb04}']));
    // Table-of-contents dot leaders are collapsed.
    assert!(text.contains("2.1 What is R? … 3"));
    assert!(!text.contains(". . . ."));
}

#[test]
fn real_gnu_maintain_pdf() {
    let bytes = fixture("gnu-maintain.pdf");
    let (document, elapsed) = timed(|| parsed(DocumentFormat::Pdf, &bytes));
    eprintln!("gnu-maintain.pdf parsed in {elapsed:?}");
    assert_eq!(document.metadata["pages"], json!(55));
    assert!(document.sections.len() >= 50);
    assert_eq!(document.sections[0].page, Some(1));
    assert!(
        document.sections[0]
            .text
            .starts_with("Information for Maintainers of GNU")
    );
    let accounts = document
        .sections
        .iter()
        .find(|section| {
            section
                .text
                .contains("The directory /gd/gnuorg mentioned throughout this document")
        })
        .expect("the GNU accounts section");
    assert_eq!(accounts.page, Some(7));
}

#[test]
fn real_debian_reference_html() {
    let bytes = fixture("debian-reference-ch02.html");
    assert_eq!(
        parsing::sniff("debian-reference-ch02.html", &bytes[..8192]),
        Ok(DocumentFormat::Html)
    );
    let (document, elapsed) = timed(|| parsed(DocumentFormat::Html, &bytes));
    eprintln!("debian-reference-ch02.html parsed in {elapsed:?}");
    let text = document.text();
    assert!(text.contains(
        "Debian is a volunteer organization which builds consistent distributions of pre-compiled binary packages of free software"
    ));
    assert_eq!(
        document.sections[0].heading.as_deref(),
        Some("Chapter 2. Debian package management")
    );
    let configuration = document
        .sections
        .iter()
        .find(|section| section.heading.as_deref() == Some("2.1.1. Package configuration"))
        .expect("a section per h3");
    assert!(
        configuration
            .text
            .contains("Here are some key points for package configuration")
    );
    assert!(document.sections.len() > 50);
    // DocBook's previous/next navigation bars are dropped, markup never leaks.
    for absent in ["<script", "<style", "</", "Prev", "stylesheet"] {
        assert!(!text.contains(absent), "{absent:?} leaked");
    }
}

#[test]
fn real_html_with_injected_scripts_and_styles_drops_them() {
    let page = String::from_utf8(fixture("debian-reference-ch02.html")).expect("UTF-8");
    let page = page
        .replacen(
            "</head>",
            "<style>.chapter { color: #123456 }</style><script>window.trackMe()</script></head>",
            1,
        )
        .replacen(
            "<div class=\"chapter\">",
            "<div class=\"chapter\"><script>document.write('injected')</script><noscript>enable js</noscript>",
            1,
        );
    let text = parsed(DocumentFormat::Html, page.as_bytes()).text();
    for absent in ["#123456", "trackMe", "injected", "enable js", "<script"] {
        assert!(!text.contains(absent), "{absent:?} leaked");
    }
    assert!(text.contains("Debian is a volunteer organization"));
}

#[test]
fn markdown_html_blocks_keep_their_text_and_empty_files_say_so_in_their_own_terms() {
    let source = "# Welcome\n\n<div class=\"hero\">\n  <p>Welcome to Acme <b>cloud</b> support.</p>\n</div>\n\nPlain <span>inline</span> text.\n";
    let document = parsed(DocumentFormat::Markdown, source.as_bytes());
    let text = document.text();
    assert!(text.contains("Welcome to Acme cloud support."), "{text}");
    assert!(text.contains("Plain inline text."), "{text}");
    assert!(!text.contains("<div"), "{text}");

    let html_only = "<div>\n<p>Only HTML here: opening hours are 9 to 5.</p>\n</div>\n";
    let document = parsed(DocumentFormat::Markdown, html_only.as_bytes());
    assert!(
        document.text().contains("opening hours are 9 to 5"),
        "{}",
        document.text()
    );

    let markup_only = "<div>\n<!-- nothing to read -->\n</div>\n";
    let error = parsing::parse(
        DocumentFormat::Markdown,
        markup_only.as_bytes(),
        ParseLimits::default(),
    )
    .unwrap_err();
    assert_eq!(error.to_string(), "the Markdown file has no text");
    assert!(!error.to_string().contains("PDF"));
}
