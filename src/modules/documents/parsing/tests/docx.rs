//! DOCX: paragraphs, headings, tables; broken archives.

use super::*;

// --- DOCX ------------------------------------------------------------------------------------

#[test]
fn docx_paragraphs_headings_and_tables() {
    let document = parsed(DocumentFormat::Docx, &sample_docx());
    assert_eq!(
        headings(&document),
        vec![Some("Employee Handbook"), Some("Holidays")]
    );
    assert_eq!(
        document.sections[0].text,
        "Employee Handbook\n\nWelcome to Acme & Co."
    );
    assert_eq!(
        document.sections[1].text,
        "Holidays\n\nName\tDays\nSecond line\n\nRegion | Days off\nEurope | 25\n\nAsk HR for details."
    );
    assert!(!document.text().contains("removed words"));
    assert!(
        document
            .sections
            .iter()
            .all(|section| section.page.is_none())
    );
}

#[test]
fn docx_without_document_xml_or_with_a_broken_zip_is_corrupt() {
    let no_document = docx(&[("[Content_Types].xml", CONTENT_TYPES), ("hello.txt", "hi")]);
    assert_eq!(
        parsing::parse(DocumentFormat::Docx, &no_document, ParseLimits::default()),
        Err(ParseError::Corrupt(
            "it has no word/document.xml, so it is not a Word document".into()
        ))
    );
    let whole = sample_docx();
    for bytes in [&b"PK\x03\x04garbage"[..], &whole[..whole.len() / 2]] {
        let result = parsing::parse(DocumentFormat::Docx, bytes, ParseLimits::default());
        assert!(matches!(result, Err(ParseError::Corrupt(_))), "{result:?}");
    }
    let broken_xml = docx(&[("word/document.xml", "<w:document><w:body><w:p></w:body>")]);
    let result = parsing::parse(DocumentFormat::Docx, &broken_xml, ParseLimits::default());
    assert!(matches!(result, Err(ParseError::Corrupt(_))), "{result:?}");
}

#[test]
fn docx_without_text_is_empty() {
    let document = format!(
        r#"<w:document xmlns:w="{WORD_NAMESPACE}"><w:body><w:p/><w:p><w:r><w:t>  </w:t></w:r></w:p></w:body></w:document>"#
    );
    let bytes = docx(&[("word/document.xml", &document)]);
    assert_eq!(
        parsing::parse(DocumentFormat::Docx, &bytes, ParseLimits::default()),
        Err(ParseError::Empty(DocumentFormat::Docx))
    );
}

// --- decompression limit (zip bombs) ---------------------------------------------------------

const MEGABYTE: usize = 1024 * 1024;

fn with_docx_limit(bytes: u64) -> ParseLimits {
    ParseLimits {
        docx_max_uncompressed_bytes: bytes,
        ..ParseLimits::default()
    }
}

/// `word/document.xml` holding one paragraph of `length` letters: it compresses about a
/// thousand to one.
fn document_xml_of(length: usize) -> String {
    format!(
        r#"<w:document xmlns:w="{WORD_NAMESPACE}"><w:body><w:p><w:r><w:t>{}</w:t></w:r></w:p></w:body></w:document>"#,
        "a".repeat(length)
    )
}

/// Writes `value` as the uncompressed size of every entry, in its local header (offset 22)
/// and in the central directory (offset 24): an archive that lies about what it holds.
fn declare_uncompressed_size(mut archive: Vec<u8>, value: u32) -> Vec<u8> {
    let mut patched = 0;
    for (signature, offset) in [(&b"PK\x03\x04"[..], 22), (&b"PK\x01\x02"[..], 24)] {
        let starts: Vec<usize> = archive
            .windows(4)
            .enumerate()
            .filter(|(_, window)| *window == signature)
            .map(|(start, _)| start)
            .collect();
        for start in starts {
            archive[start + offset..start + offset + 4].copy_from_slice(&value.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "one entry, two headers");
    archive
}

#[test]
fn docx_zip_bomb_fails_at_the_decompression_limit() {
    let bomb = docx(&[("word/document.xml", &document_xml_of(8 * MEGABYTE))]);
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    assert_eq!(
        parsing::parse(
            DocumentFormat::Docx,
            &bomb,
            with_docx_limit(MEGABYTE as u64)
        ),
        Err(ParseError::TooLarge(
            "the Word document decompresses to more than 1 MB".into()
        ))
    );
    assert_eq!(
        ParseError::TooLarge("the Word document decompresses to more than 1 MB".into()).to_string(),
        "the file is too large to read: the Word document decompresses to more than 1 MB"
    );
    // Within the limit the same file is read.
    let document = parsing::parse(
        DocumentFormat::Docx,
        &bomb,
        with_docx_limit(9 * MEGABYTE as u64),
    )
    .expect("within the limit");
    assert_eq!(document.text().len(), 8 * MEGABYTE);
}

#[test]
fn docx_parts_share_one_decompression_limit() {
    let styles = format!(
        r#"<w:styles xmlns:w="{WORD_NAMESPACE}"><!-- {} --></w:styles>"#,
        "s".repeat(MEGABYTE / 2)
    );
    let document_xml = document_xml_of(MEGABYTE / 2);
    let both = docx(&[
        ("word/document.xml", &document_xml),
        ("word/styles.xml", &styles),
    ]);
    // Each part is below the limit; together they are not.
    assert_eq!(
        parsing::parse(
            DocumentFormat::Docx,
            &both,
            with_docx_limit(MEGABYTE as u64)
        ),
        Err(ParseError::TooLarge(
            "the Word document decompresses to more than 1 MB".into()
        ))
    );
    let alone = docx(&[("word/document.xml", &document_xml)]);
    assert!(
        parsing::parse(
            DocumentFormat::Docx,
            &alone,
            with_docx_limit(MEGABYTE as u64)
        )
        .is_ok()
    );
}

#[test]
fn docx_declaring_false_sizes_is_stopped_while_decompressing() {
    // 8 MB inside, 1000 bytes declared: a limit that trusted the headers would read it all.
    // zip 9 itself refuses to read past a declared size (the file is then damaged); the
    // limit's own `Read::take` is what holds with a reader that does not.
    let liar = declare_uncompressed_size(
        docx(&[("word/document.xml", &document_xml_of(8 * MEGABYTE))]),
        1000,
    );
    for limit in [MEGABYTE as u64, 100 * MEGABYTE as u64] {
        let result = parsing::parse(DocumentFormat::Docx, &liar, with_docx_limit(limit));
        assert!(
            matches!(
                &result,
                Err(ParseError::TooLarge(_)) | Err(ParseError::Corrupt(_))
            ),
            "{limit}: {result:?}"
        );
    }
}

#[test]
fn decompression_limits_read_as_sizes() {
    let message = |bytes| match parsing::parse(
        DocumentFormat::Docx,
        &docx(&[("word/document.xml", &document_xml_of(2 * MEGABYTE))]),
        with_docx_limit(bytes),
    ) {
        Err(ParseError::TooLarge(message)) => message,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        message(MEGABYTE as u64 * 3 / 2),
        "the Word document decompresses to more than 1.5 MB"
    );
    assert_eq!(
        message(4096),
        "the Word document decompresses to more than 4096 bytes"
    );
}
