//! Format sniffing and text extraction: fixtures built here for every format, plus the real
//! documents in tests/fixtures (see its README for their origin).

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use avatar_platform::modules::documents::parsing::{
    self, DocumentFormat, ParseError, ParsedDocument, SniffError,
};
use pdf_extract::{
    Dictionary, Document, EncryptionState, EncryptionVersion, Object, ObjectId, Permissions,
    Stream, StringFormat,
};
use serde_json::json;

// --- helpers ---------------------------------------------------------------------------------

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}

fn refusal(filename: &str, head: &[u8]) -> String {
    match parsing::sniff(filename, head) {
        Err(SniffError::Unsupported { reason }) => reason,
        Ok(format) => panic!("{filename} was accepted as {format}"),
    }
}

fn parsed(format: DocumentFormat, bytes: &[u8]) -> ParsedDocument {
    parsing::parse(format, bytes).unwrap_or_else(|error| panic!("parsing {format}: {error}"))
}

fn headings(document: &ParsedDocument) -> Vec<Option<&str>> {
    document
        .sections
        .iter()
        .map(|section| section.heading.as_deref())
        .collect()
}

fn dictionary(entries: Vec<(&str, Object)>) -> Dictionary {
    let mut dictionary = Dictionary::new();
    for (key, value) in entries {
        dictionary.set(key, value);
    }
    dictionary
}

fn name(value: &str) -> Object {
    Object::Name(value.as_bytes().to_vec())
}

/// A PDF with one page per content stream, Helvetica as /F1; `font_encoding` replaces the
/// font's encoding (to map codes to ligature glyphs).
fn build_pdf_document(page_contents: &[&[u8]], font_encoding: Option<Object>) -> Document {
    let mut document = Document::with_version("1.5");
    let pages_id = document.new_object_id();
    let mut font = dictionary(vec![
        ("Type", name("Font")),
        ("Subtype", name("Type1")),
        ("BaseFont", name("Helvetica")),
    ]);
    if let Some(encoding) = font_encoding {
        font.set("Encoding", encoding);
    }
    let font_id = document.add_object(font);
    let resources_id = document.add_object(dictionary(vec![(
        "Font",
        Object::Dictionary(dictionary(vec![("F1", Object::Reference(font_id))])),
    )]));
    let mut kids = Vec::new();
    for content in page_contents {
        let content_id = document.add_object(Stream::new(Dictionary::new(), content.to_vec()));
        let page_id = document.add_object(dictionary(vec![
            ("Type", name("Page")),
            ("Parent", Object::Reference(pages_id)),
            ("Contents", Object::Reference(content_id)),
        ]));
        kids.push(Object::Reference(page_id));
    }
    let count = kids.len() as i64;
    document.objects.insert(
        pages_id,
        Object::Dictionary(dictionary(vec![
            ("Type", name("Pages")),
            ("Kids", Object::Array(kids)),
            ("Count", Object::Integer(count)),
            ("Resources", Object::Reference(resources_id)),
            (
                "MediaBox",
                Object::Array(vec![0.into(), 0.into(), 595.into(), 842.into()]),
            ),
        ])),
    );
    let catalog_id = document.add_object(dictionary(vec![
        ("Type", name("Catalog")),
        ("Pages", Object::Reference(pages_id)),
    ]));
    document.trailer.set("Root", Object::Reference(catalog_id));
    document
}

fn save(mut document: Document) -> Vec<u8> {
    let mut bytes = Vec::new();
    document.save_to(&mut bytes).expect("saving the PDF");
    bytes
}

fn two_page_pdf() -> Vec<u8> {
    save(build_pdf_document(
        &[
            b"BT /F1 18 Tf 72 760 Td (Alpha page one) Tj 0 -24 Td (Second   line) Tj ET",
            b"BT /F1 18 Tf 72 760 Td (Beta page two) Tj ET",
        ],
        None,
    ))
}

fn encrypted_pdf(user_password: &str) -> Vec<u8> {
    let mut document =
        build_pdf_document(&[b"BT /F1 18 Tf 72 760 Td (Confidential text) Tj ET"], None);
    document.trailer.set(
        "ID",
        Object::Array(vec![
            Object::String(vec![1u8; 16], StringFormat::Literal),
            Object::String(vec![2u8; 16], StringFormat::Literal),
        ]),
    );
    let state = EncryptionState::try_from(EncryptionVersion::V2 {
        document: &document,
        owner_password: "owner",
        user_password,
        key_length: 128,
        permissions: Permissions::all(),
    })
    .expect("encryption state");
    document.encrypt(&state).expect("encrypting");
    save(document)
}

const WORD_NAMESPACE: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";

fn docx(parts: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in parts {
        writer.start_file(*name, options).expect("zip entry");
        writer.write_all(content.as_bytes()).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="xml" ContentType="application/xml"/>
  <Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
</Types>"#;

/// A Word document with a title, a localised heading style (id "berschrift1", name
/// "heading 1", as German Word writes it), tabs, breaks, tracked deletions and a 2×2 table.
fn sample_docx() -> Vec<u8> {
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="{WORD_NAMESPACE}"><w:body>
  <w:p><w:pPr><w:pStyle w:val="Title"/></w:pPr><w:r><w:t>Employee Handbook</w:t></w:r></w:p>
  <w:p><w:r><w:t xml:space="preserve">Welcome to </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>Acme &amp; Co.</w:t></w:r></w:p>
  <w:p>
    <w:pPr><w:pStyle w:val="berschrift1"/><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>
    <w:r><w:t>Holidays</w:t></w:r>
  </w:p>
  <w:p>
    <w:r><w:t>Name</w:t><w:tab/><w:t>Days</w:t><w:br/><w:t>Second line</w:t></w:r>
    <w:del w:id="1" w:author="x"><w:r><w:delText>removed words</w:delText></w:r></w:del>
  </w:p>
  <w:tbl>
    <w:tblPr><w:tblW w:w="0" w:type="auto"/></w:tblPr>
    <w:tr><w:tc><w:p><w:r><w:t>Region</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Days off</w:t></w:r></w:p></w:tc></w:tr>
    <w:tr><w:tc><w:p><w:r><w:t>Europe</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>25</w:t></w:r></w:p></w:tc></w:tr>
  </w:tbl>
  <w:p><w:r><w:t>Ask HR for details.</w:t></w:r></w:p>
  <w:sectPr/>
</w:body></w:document>"#
    );
    let styles = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:styles xmlns:w="{WORD_NAMESPACE}">
  <w:style w:type="paragraph" w:styleId="Standard"><w:name w:val="Normal"/></w:style>
  <w:style w:type="paragraph" w:styleId="berschrift1"><w:name w:val="heading 1"/></w:style>
</w:styles>"#
    );
    docx(&[
        ("[Content_Types].xml", CONTENT_TYPES),
        ("word/document.xml", &document),
        ("word/styles.xml", &styles),
    ])
}

// --- DocumentFormat --------------------------------------------------------------------------

#[test]
fn document_format_names_round_trip() {
    for format in DocumentFormat::ALL {
        assert_eq!(DocumentFormat::parse(format.as_str()), Some(format));
        assert_eq!(format.to_string(), format.as_str());
        assert_eq!(
            serde_json::to_value(format).unwrap(),
            json!(format.as_str())
        );
    }
    assert_eq!(DocumentFormat::parse("exe"), None);
    assert_eq!(DocumentFormat::Pdf.content_type(), "application/pdf");
    assert_eq!(
        DocumentFormat::Docx.content_type(),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    assert_eq!(DocumentFormat::Csv.content_type(), "text/csv");
    assert_eq!(DocumentFormat::Markdown.content_type(), "text/markdown");
}

// --- sniff -----------------------------------------------------------------------------------

#[test]
fn sniff_accepts_each_format_when_bytes_and_name_agree() {
    let pdf = two_page_pdf();
    assert_eq!(parsing::sniff("report.pdf", &pdf), Ok(DocumentFormat::Pdf));
    assert_eq!(
        parsing::sniff("C:\\Users\\me\\REPORT.PDF", &pdf),
        Ok(DocumentFormat::Pdf)
    );
    assert_eq!(
        parsing::sniff("handbook.docx", &sample_docx()),
        Ok(DocumentFormat::Docx)
    );
    let html = b"\xef\xbb\xbf  <!DOCTYPE html><html><body>Hi</body></html>";
    assert_eq!(parsing::sniff("page.html", html), Ok(DocumentFormat::Html));
    assert_eq!(parsing::sniff("page.HTM", html), Ok(DocumentFormat::Html));
    assert_eq!(
        parsing::sniff("notes.md", b"# Notes\n"),
        Ok(DocumentFormat::Markdown)
    );
    assert_eq!(
        parsing::sniff("notes.markdown", b"# Notes\n"),
        Ok(DocumentFormat::Markdown)
    );
    assert_eq!(
        parsing::sniff("a/b/notes.txt", b"plain words"),
        Ok(DocumentFormat::Text)
    );
    assert_eq!(
        parsing::sniff("notes.text", b"plain words"),
        Ok(DocumentFormat::Text)
    );
    assert_eq!(
        parsing::sniff("table.csv", b"a;b\n1;2\n"),
        Ok(DocumentFormat::Csv)
    );
    // HTML markup in a .txt file is text: the extension decides among text formats.
    assert_eq!(parsing::sniff("page.txt", html), Ok(DocumentFormat::Text));
}

#[test]
fn sniff_accepts_legacy_encodings_utf16_and_a_head_cut_mid_character() {
    let windows_1252 = b"Le caf\xe9 est d\xe9j\xe0 pr\xeat, voil\xe0.";
    assert_eq!(
        parsing::sniff("menu.txt", windows_1252),
        Ok(DocumentFormat::Text)
    );
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain("hello, world".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    assert_eq!(parsing::sniff("wide.txt", &utf16), Ok(DocumentFormat::Text));
    let mut head = "é".repeat(10).into_bytes();
    head.pop(); // the 8 KiB head may end inside a character
    assert_eq!(parsing::sniff("cut.txt", &head), Ok(DocumentFormat::Text));
}

#[test]
fn sniff_refuses_images_executables_and_mismatched_names() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";
    assert_eq!(
        refusal("photo.png", png),
        "unsupported file type .png (supported: .pdf, .docx, .html, .htm, .md, .markdown, .txt, .text, .csv)"
    );
    assert_eq!(
        refusal("photo.pdf", png),
        "the name ends in .pdf but the content is a PNG image, not a PDF"
    );
    assert_eq!(
        refusal("paper.txt", &two_page_pdf()),
        "the content is a PDF but the name ends in .txt"
    );
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0";
    assert_eq!(
        refusal("invoice.pdf", elf),
        "the name ends in .pdf but the content is an executable (ELF), not a PDF"
    );
    assert_eq!(
        refusal("setup.pdf", b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0"),
        "the name ends in .pdf but the content is a Windows executable, not a PDF"
    );
    assert_eq!(
        refusal("notes.txt", b"MZ\x90\0\x03\0\0\0"),
        "the name ends in .txt but the content is a Windows executable, not text"
    );
    assert_eq!(
        refusal("data.xyz", b"plain words"),
        "unsupported file type .xyz (supported: .pdf, .docx, .html, .htm, .md, .markdown, .txt, .text, .csv)"
    );
    assert_eq!(
        refusal("README", b"plain words"),
        "the file name has no extension; supported file types are .pdf, .docx, .html, .htm, .md, .markdown, .txt, .text, .csv"
    );
    assert_eq!(
        refusal("archive.txt", &sample_docx()),
        "the name ends in .txt but the content is a ZIP archive, not text"
    );
    assert_eq!(
        refusal("letter.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\0\0"),
        "the name ends in .docx but the content is a legacy or password-protected Microsoft Office file, not a Word document (.docx)"
    );
    assert_eq!(
        refusal("sheet.xlsx", &sample_docx()),
        "unsupported file type .xlsx (supported: .pdf, .docx, .html, .htm, .md, .markdown, .txt, .text, .csv)"
    );
    assert_eq!(
        refusal("empty.pdf", b""),
        "the name ends in .pdf but the content is empty, not a PDF"
    );
    // NUL bytes are not text, whatever the name says.
    assert_eq!(
        refusal("data.csv", b"a,b\n\0\0\0\x01\x02"),
        "the name ends in .csv but the content is binary data, not text"
    );
}

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
        parsing::parse(DocumentFormat::Pdf, &scan),
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
        parsing::parse(DocumentFormat::Pdf, &encrypted_pdf("secret")),
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
        parsing::parse(DocumentFormat::Pdf, &broken),
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
        match parsing::parse(DocumentFormat::Pdf, &bytes) {
            Err(ParseError::Corrupt(reason)) => assert!(!reason.is_empty()),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    // Truncations of a valid file: lopdf may recover some, but never a panic or a success
    // with invented text.
    let whole = two_page_pdf();
    for length in [whole.len() / 4, whole.len() / 2, whole.len() - 40] {
        match parsing::parse(DocumentFormat::Pdf, &whole[..length]) {
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
        parsing::parse(DocumentFormat::Pdf, &save(document)),
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
    let result = parsing::parse(DocumentFormat::Pdf, &save(document));
    assert!(matches!(result, Err(ParseError::Corrupt(_))), "{result:?}");
}

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
        parsing::parse(DocumentFormat::Html, only_markup),
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
    let (result, elapsed) =
        timed(|| parsing::parse(DocumentFormat::Html, nested(20_000).as_bytes()));
    assert_eq!(
        result,
        Err(ParseError::Unsupported(
            "the HTML is nested more than 2000 elements deep".into()
        ))
    );
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    // Unclosed paragraphs and list items (end tags are optional) do not count as nesting.
    let sloppy = "<ul>".to_owned() + &"<li><p>item".repeat(5_000) + "</ul>";
    assert!(parsing::parse(DocumentFormat::Html, sloppy.as_bytes()).is_ok());
}

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
    assert!(parsing::parse(DocumentFormat::Markdown, quotes.as_bytes()).is_ok());
    let lists: String = (0..2_000)
        .map(|depth| format!("{}- item {depth}\n", "  ".repeat(depth)))
        .collect();
    assert!(parsing::parse(DocumentFormat::Markdown, lists.as_bytes()).is_ok());
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
            parsing::parse(format, b" \r\n\t\n  \x0c"),
            Err(ParseError::Empty(format)),
            "{format}"
        );
        assert_eq!(
            parsing::parse(format, b""),
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
        parsing::parse(DocumentFormat::Csv, b"only,a,header\n"),
        Err(ParseError::Empty(DocumentFormat::Csv))
    );
}

// --- hostile input ---------------------------------------------------------------------------

#[test]
fn arbitrary_bytes_never_panic_in_any_parser() {
    // A deterministic pseudo-random byte soup, plus a few prefixes that steer each parser in.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let soup: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    for prefix in [
        &b""[..],
        b"%PDF-1.4\n",
        b"PK\x03\x04",
        b"<html><body>",
        b"# h\n",
        b"a;b\n",
    ] {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&soup);
        for format in DocumentFormat::ALL {
            // Any outcome but a panic or an abort is fine.
            let _ = parsing::parse(format, &bytes);
        }
    }
}

// --- real documents (tests/fixtures) ---------------------------------------------------------

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let result = work();
    (result, started.elapsed())
}

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
    let error = parsing::parse(DocumentFormat::Markdown, markup_only.as_bytes()).unwrap_err();
    assert_eq!(error.to_string(), "the Markdown file has no text");
    assert!(!error.to_string().contains("PDF"));
}
