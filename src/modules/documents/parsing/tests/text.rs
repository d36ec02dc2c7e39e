//! Markdown, plain text and CSV.

use super::*;

// --- Markdown --------------------------------------------------------------------------------

#[test]
fn markdown_headings_start_sections_and_code_lists_links_tables_stay_text() {
    let source = "---\ntitle: Guide\n---\n\nPreamble text.\n\n# Install\n\n## From source\n\nRun the [build script](https://example.com/build) first:\n\n```sh\nmake build\n    indented line\n```\n\n- one\n- two\n  - nested\n\n| Key | Value |\n|-----|-------|\n| a   | 1     |\n\n# Usage\n\nCall `run()` with\nsoft-wrapped text.\n";
    let document = parsed(DocumentFormat::Markdown, source.as_bytes());
    assert_eq!(
        headings(&document),
        vec![None, Some("From source"), Some("Usage")]
    );
    assert_eq!(document.sections[0].text, "title: Guide\n\nPreamble text.");
    assert_eq!(
        document.sections[1].text,
        "Install\n\nFrom source\n\nRun the build script first:\n\nmake build\n    indented line\n\n- one\n- two\n  - nested\n\nKey | Value\na | 1"
    );
    assert_eq!(
        document.sections[2].text,
        "Usage\n\nCall run() with soft-wrapped text."
    );
    assert!(!document.text().contains("https://"));
}

#[test]
fn markdown_deeply_nested_quotes_and_lists_do_not_crash() {
    let quotes = format!("{}quoted", "> ".repeat(10_000));
    assert!(
        parsing::parse(
            DocumentFormat::Markdown,
            quotes.as_bytes(),
            ParseLimits::default()
        )
        .is_ok()
    );
    let lists: String = (0..2_000)
        .map(|depth| format!("{}- item {depth}\n", "  ".repeat(depth)))
        .collect();
    assert!(
        parsing::parse(
            DocumentFormat::Markdown,
            lists.as_bytes(),
            ParseLimits::default()
        )
        .is_ok()
    );
}

// --- Plain text ------------------------------------------------------------------------------

#[test]
fn text_in_windows_1252_is_detected_and_decoded() {
    let bytes = b"Le caf\xe9 est d\xe9j\xe0 pr\xeat. Voil\xe0 le menu du jour: caf\xe9 d\xe9j\xe0 vu, cr\xe8me br\xfbl\xe9e et g\xe2teau \xe0 la fran\xe7aise.\r\nD\xe9licieux!\r\n";
    let document = parsed(DocumentFormat::Text, bytes);
    assert_eq!(document.metadata["encoding"], json!("windows-1252"));
    assert_eq!(
        document.text(),
        "Le café est déjà prêt. Voilà le menu du jour: café déjà vu, crème brûlée et gâteau à la française.\nDélicieux!"
    );
}

#[test]
fn text_with_byte_order_marks_is_decoded() {
    let document = parsed(
        DocumentFormat::Text,
        b"\xef\xbb\xbfhello\r\n\r\n\r\n\r\nworld\t \n",
    );
    assert_eq!(document.text(), "hello\n\nworld");
    assert_eq!(document.metadata["encoding"], json!("utf-8"));

    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain("naïve ☃".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let document = parsed(DocumentFormat::Text, &utf16);
    assert_eq!(document.text(), "naïve ☃");
    assert_eq!(document.metadata["encoding"], json!("utf-16le"));
}

#[test]
fn whitespace_only_input_is_empty_in_every_text_format() {
    for format in [
        DocumentFormat::Text,
        DocumentFormat::Markdown,
        DocumentFormat::Html,
        DocumentFormat::Csv,
    ] {
        assert_eq!(
            parsing::parse(format, b" \r\n\t\n  \x0c", ParseLimits::default()),
            Err(ParseError::Empty(format)),
            "{format}"
        );
        assert_eq!(
            parsing::parse(format, b"", ParseLimits::default()),
            Err(ParseError::Empty(format)),
            "{format}"
        );
    }
}

// --- CSV -------------------------------------------------------------------------------------

#[test]
fn csv_rows_become_header_value_lines_grouped_in_sections() {
    let mut source = String::from("name;city;;note\n");
    source.push_str("\"Doe; Jane\";Paris;x;\"two\nlines\"\n");
    for row in 2..=120 {
        source.push_str(&format!("person {row};city {row};;\n"));
    }
    source.push_str(";;;\n"); // a row of empty cells is not a row
    let document = parsed(DocumentFormat::Csv, source.as_bytes());
    assert_eq!(
        document.metadata,
        json!({"encoding": "utf-8", "rows": 120, "columns": 4, "delimiter": ";"})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(document.sections.len(), 3);
    let lines: Vec<&str> = document.sections[0].text.lines().collect();
    assert_eq!(lines.len(), 50);
    assert_eq!(
        lines[0],
        "name: Doe; Jane; city: Paris; column 3: x; note: two lines"
    );
    assert_eq!(lines[1], "name: person 2; city: city 2");
    assert_eq!(document.sections[2].text.lines().count(), 20);
    assert!(
        document.sections[2]
            .text
            .ends_with("name: person 120; city: city 120")
    );
}

#[test]
fn csv_delimiters_and_encodings_are_detected() {
    let tabs = parsed(DocumentFormat::Csv, b"a\tb\n1\t2\n");
    assert_eq!(tabs.text(), "a: 1; b: 2");
    assert_eq!(tabs.metadata["delimiter"], json!("tab"));

    let commas = parsed(DocumentFormat::Csv, b"\"x;y\",z\n1,2\n");
    assert_eq!(commas.text(), "x;y: 1; z: 2");

    let legacy = parsed(
        DocumentFormat::Csv,
        b"produit;prix\ncaf\xe9 cr\xe8me;2\ng\xe2teau \xe0 la fran\xe7aise;5\nth\xe9 glac\xe9;3\n",
    );
    assert_eq!(
        legacy.text(),
        "produit: café crème; prix: 2\nproduit: gâteau à la française; prix: 5\nproduit: thé glacé; prix: 3"
    );
    assert_eq!(legacy.metadata["encoding"], json!("windows-1252"));

    assert_eq!(
        parsing::parse(
            DocumentFormat::Csv,
            b"only,a,header\n",
            ParseLimits::default()
        ),
        Err(ParseError::Empty(DocumentFormat::Csv))
    );
}
