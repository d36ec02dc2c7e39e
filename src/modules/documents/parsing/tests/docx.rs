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
        parsing::parse(DocumentFormat::Docx, &no_document),
        Err(ParseError::Corrupt(
            "it has no word/document.xml, so it is not a Word document".into()
        ))
    );
    let whole = sample_docx();
    for bytes in [&b"PK\x03\x04garbage"[..], &whole[..whole.len() / 2]] {
        let result = parsing::parse(DocumentFormat::Docx, bytes);
        assert!(matches!(result, Err(ParseError::Corrupt(_))), "{result:?}");
    }
    let broken_xml = docx(&[("word/document.xml", "<w:document><w:body><w:p></w:body>")]);
    let result = parsing::parse(DocumentFormat::Docx, &broken_xml);
    assert!(matches!(result, Err(ParseError::Corrupt(_))), "{result:?}");
}

#[test]
fn docx_without_text_is_empty() {
    let document = format!(
        r#"<w:document xmlns:w="{WORD_NAMESPACE}"><w:body><w:p/><w:p><w:r><w:t>  </w:t></w:r></w:p></w:body></w:document>"#
    );
    let bytes = docx(&[("word/document.xml", &document)]);
    assert_eq!(
        parsing::parse(DocumentFormat::Docx, &bytes),
        Err(ParseError::Empty(DocumentFormat::Docx))
    );
}
