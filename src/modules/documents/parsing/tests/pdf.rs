//! PDF: pages, ligatures, encryption, corrupt and looping files.

use super::*;

// --- PDF -------------------------------------------------------------------------------------

#[test]
fn pdf_yields_one_section_per_page_with_page_numbers() {
    let document = parsed(DocumentFormat::Pdf, &two_page_pdf());
    assert_eq!(
        document.metadata,
        json!({"pages": 2}).as_object().unwrap().clone()
    );
    assert_eq!(document.sections.len(), 2);
    assert_eq!(document.sections[0].page, Some(1));
    assert_eq!(document.sections[1].page, Some(2));
    assert!(
        document
            .sections
            .iter()
            .all(|section| section.heading.is_none())
    );
    // Runs of spaces collapse; the line break between the two text lines stays.
    assert_eq!(document.sections[0].text, "Alpha page one\nSecond line");
    assert_eq!(document.sections[1].text, "Beta page two");
}

#[test]
fn pdf_ligatures_are_unfolded() {
    // Codes 1 and 2 drawn with the glyphs named "fi" and "fl" come out as U+FB01 and U+FB02.
    let encoding = Object::Dictionary(dictionary(vec![
        ("Type", name("Encoding")),
        ("BaseEncoding", name("WinAnsiEncoding")),
        (
            "Differences",
            Object::Array(vec![Object::Integer(1), name("fi"), name("fl")]),
        ),
    ]));
    let bytes = save(build_pdf_document(
        &[b"BT /F1 18 Tf 72 760 Td (\\001nd the \\002ow) Tj ET"],
        Some(encoding),
    ));
    let document = parsed(DocumentFormat::Pdf, &bytes);
    assert_eq!(document.sections[0].text, "find the flow");
}

#[test]
fn pdf_pages_without_text_are_skipped_and_no_text_at_all_is_empty() {
    let bytes = save(build_pdf_document(
        &[
            b"BT /F1 18 Tf 72 760 Td (Only text) Tj ET",
            b"0 0 100 100 re f",
        ],
        None,
    ));
    let document = parsed(DocumentFormat::Pdf, &bytes);
    assert_eq!(document.sections.len(), 1);
    assert_eq!(document.metadata["pages"], json!(2));

    // What a scan looks like: pages that only paint.
    let scan = save(build_pdf_document(&[b"0 0 100 100 re f", b"q Q"], None));
    assert_eq!(
        parsing::parse(DocumentFormat::Pdf, &scan, ParseLimits::default()),
        Err(ParseError::Empty(DocumentFormat::Pdf))
    );
    assert_eq!(
        ParseError::Empty(DocumentFormat::Pdf).to_string(),
        "no text could be extracted (a scanned PDF has no text layer)"
    );
}

#[test]
fn pdf_needing_a_password_is_encrypted_but_owner_only_protection_is_readable() {
    assert_eq!(
        parsing::parse(
            DocumentFormat::Pdf,
            &encrypted_pdf("secret"),
            ParseLimits::default()
        ),
        Err(ParseError::Encrypted)
    );
    assert_eq!(ParseError::Encrypted.to_string(), "the PDF is encrypted");

    // An empty user password only restricts printing/copying: the text is readable.
    let document = parsed(DocumentFormat::Pdf, &encrypted_pdf(""));
    assert_eq!(document.sections[0].text, "Confidential text");

    // An /Encrypt entry lopdf cannot even load is still reported as encryption.
    let mut broken = b"%PDF-1.4\n1 0 obj << /Filter /Standard /V 99 >> endobj\n".to_vec();
    broken.extend_from_slice(b"trailer << /Root 2 0 R /Encrypt 1 0 R >>\n%%EOF\n");
    assert_eq!(
        parsing::parse(DocumentFormat::Pdf, &broken, ParseLimits::default()),
        Err(ParseError::Encrypted)
    );
}

#[test]
fn garbage_and_truncated_pdfs_are_corrupt_not_panics() {
    for bytes in [
        b"%PDF-1.7\n".to_vec(),
        b"%PDF-1.4\n\x00\xff garbage garbage garbage \n%%EOF".to_vec(),
        b"not a pdf at all".to_vec(),
    ] {
        match parsing::parse(DocumentFormat::Pdf, &bytes, ParseLimits::default()) {
            Err(ParseError::Corrupt(reason)) => assert!(!reason.is_empty()),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    // Truncations of a valid file: lopdf may recover some, but never a panic or a success
    // with invented text.
    let whole = two_page_pdf();
    for length in [whole.len() / 4, whole.len() / 2, whole.len() - 40] {
        match parsing::parse(
            DocumentFormat::Pdf,
            &whole[..length],
            ParseLimits::default(),
        ) {
            Ok(document) => assert!(document.text().contains("page")),
            Err(ParseError::Corrupt(_) | ParseError::Empty(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let corrupt = ParseError::Corrupt("x".into()).to_string();
    assert_eq!(corrupt, "the file is damaged: x");
}

/// pdf-extract would recurse forever on these and overflow the stack (an abort, not a
/// panic); they must be refused up front.
#[test]
fn pdf_with_self_referencing_drawing_or_page_tree_loop_is_corrupt() {
    let mut document = build_pdf_document(&[b"/X0 Do"], None);
    let form_id: ObjectId = document.new_object_id();
    let form = Stream::new(
        dictionary(vec![
            ("Type", name("XObject")),
            ("Subtype", name("Form")),
            (
                "Resources",
                Object::Dictionary(dictionary(vec![(
                    "XObject",
                    Object::Dictionary(dictionary(vec![("X0", Object::Reference(form_id))])),
                )])),
            ),
        ]),
        b"/X0 Do".to_vec(),
    );
    document.objects.insert(form_id, Object::Stream(form));
    let page_id = *document.get_pages().values().next().expect("a page");
    document
        .get_dictionary_mut(page_id)
        .expect("page dictionary")
        .set(
            "Resources",
            Object::Dictionary(dictionary(vec![(
                "XObject",
                Object::Dictionary(dictionary(vec![("X0", Object::Reference(form_id))])),
            )])),
        );
    assert_eq!(
        parsing::parse(DocumentFormat::Pdf, &save(document), ParseLimits::default()),
        Err(ParseError::Corrupt(
            "a drawing in the PDF contains itself".into()
        ))
    );

    let mut document = build_pdf_document(&[b"BT /F1 18 Tf (x) Tj ET"], None);
    let page_id = *document.get_pages().values().next().expect("a page");
    document
        .get_dictionary_mut(page_id)
        .expect("page dictionary")
        .set("Parent", Object::Reference(page_id));
    let result = parsing::parse(DocumentFormat::Pdf, &save(document), ParseLimits::default());
    assert!(matches!(result, Err(ParseError::Corrupt(_))), "{result:?}");
}

// --- page limit ------------------------------------------------------------------------------

#[test]
fn pdf_over_the_page_limit_fails_before_extraction() {
    let pages: Vec<Vec<u8>> = (1..=5)
        .map(|page| format!("BT /F1 18 Tf 72 760 Td (Page {page}) Tj ET").into_bytes())
        .collect();
    let pages: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
    let bytes = save(build_pdf_document(&pages, None));
    let limit = |pdf_max_pages| ParseLimits {
        pdf_max_pages,
        ..ParseLimits::default()
    };
    assert_eq!(
        parsing::parse(DocumentFormat::Pdf, &bytes, limit(4)),
        Err(ParseError::TooLarge(
            "the PDF has 5 pages, more than the 4 allowed".into()
        ))
    );
    let document = parsing::parse(DocumentFormat::Pdf, &bytes, limit(5)).expect("at the limit");
    assert_eq!(document.sections.len(), 5);

    // A real one: R-FAQ.pdf has 52 pages.
    assert_eq!(
        parsing::parse(DocumentFormat::Pdf, &fixture("R-FAQ.pdf"), limit(50)),
        Err(ParseError::TooLarge(
            "the PDF has 52 pages, more than the 50 allowed".into()
        ))
    );
}
