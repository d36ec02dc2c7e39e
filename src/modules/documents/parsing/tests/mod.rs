//! Format sniffing and text extraction: fixtures built here for every format, plus the real
//! documents in tests/fixtures (see its README for their origin). One file per format.

mod docx;
mod html;
mod pdf;
mod real;
mod text;

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use crate::modules::documents::parsing::sniff::SniffError;
use crate::modules::documents::parsing::{
    self, DocumentFormat, ParseError, ParseLimits, ParsedDocument,
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
    parsing::parse(format, bytes, ParseLimits::default())
        .unwrap_or_else(|error| panic!("parsing {format}: {error}"))
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
            let _ = parsing::parse(format, &bytes, ParseLimits::default());
        }
    }
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let result = work();
    (result, started.elapsed())
}
