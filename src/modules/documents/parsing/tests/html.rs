//! HTML: readable text by heading, legacy charsets, hostile markup.

use super::*;

// --- HTML ------------------------------------------------------------------------------------

const SAMPLE_HTML: &str = r#"<!DOCTYPE html>
<html><head><title>Ignored title</title>
<style>body { color: red; }</style>
<script>alert("tracking");</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About us</a></nav>
<noscript>Please enable JavaScript</noscript>
<p>Intro paragraph with a <a href="https://example.com/x">useful link</a>.</p>
<h1>Returns policy</h1>
<p>You may return items within <strong>30 days</strong>.</p>
<script type="text/javascript">var secret = 1;</script>
<h2>Refunds</h2>
<p>Refunds take five days.</p>
<ul><li>Card</li><li>Cash</li></ul>
<h4>Small print</h4>
<p>Exceptions apply.</p>
<div hidden>Invisible text</div>
</body></html>"#;

#[test]
fn html_readable_text_split_at_headings_without_scripts_styles_or_navigation() {
    let document = parsed(DocumentFormat::Html, SAMPLE_HTML.as_bytes());
    assert_eq!(
        headings(&document),
        vec![None, Some("Returns policy"), Some("Refunds")]
    );
    assert_eq!(
        document.sections[0].text,
        "Intro paragraph with a useful link."
    );
    assert_eq!(
        document.sections[1].text,
        "Returns policy\n\nYou may return items within 30 days."
    );
    // h4 is not a section boundary, but its text stays.
    assert_eq!(
        document.sections[2].text,
        "Refunds\n\nRefunds take five days.\n- Card\n- Cash\n\nSmall print\n\nExceptions apply."
    );
    let text = document.text();
    for absent in [
        "alert",
        "color",
        "secret",
        "JavaScript",
        "About us",
        "Invisible",
        "[1]",
        "https://",
        "Ignored title",
    ] {
        assert!(!text.contains(absent), "{absent:?} leaked into {text:?}");
    }
    assert_eq!(document.metadata["encoding"], json!("utf-8"));
}

#[test]
fn html_in_a_declared_legacy_charset_is_decoded() {
    let mut bytes = b"<html><head><meta charset=\"windows-1252\"></head><body><p>".to_vec();
    bytes.extend_from_slice(b"Caf\xe9 cr\xe8me \x80 5</p></body></html>");
    let document = parsed(DocumentFormat::Html, &bytes);
    assert_eq!(document.text(), "Café crème € 5");
    assert_eq!(document.metadata["encoding"], json!("windows-1252"));
}

#[test]
fn html_with_only_markup_is_empty_and_deep_nesting_does_not_crash() {
    let only_markup = b"<html><head><script>x()</script></head><body><div> </div></body></html>";
    assert_eq!(
        parsing::parse(DocumentFormat::Html, only_markup, ParseLimits::default()),
        Err(ParseError::Empty(DocumentFormat::Html))
    );

    // Deep but plausible nesting is read; absurd nesting (html5ever is quadratic in depth) is
    // refused quickly instead of tying up a worker.
    let nested = |depth: usize| {
        format!(
            "{}deep text{}",
            "<div><span>".repeat(depth / 2),
            "</span></div>".repeat(depth / 2)
        )
    };
    assert_eq!(
        parsed(DocumentFormat::Html, nested(1_000).as_bytes()).text(),
        "deep text"
    );
    let (result, elapsed) = timed(|| {
        parsing::parse(
            DocumentFormat::Html,
            nested(20_000).as_bytes(),
            ParseLimits::default(),
        )
    });
    assert_eq!(
        result,
        Err(ParseError::Unsupported(
            "the HTML is nested more than 2000 elements deep".into()
        ))
    );
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    // Unclosed paragraphs and list items (end tags are optional) do not count as nesting.
    let sloppy = "<ul>".to_owned() + &"<li><p>item".repeat(5_000) + "</ul>";
    assert!(
        parsing::parse(
            DocumentFormat::Html,
            sloppy.as_bytes(),
            ParseLimits::default()
        )
        .is_ok()
    );
}
