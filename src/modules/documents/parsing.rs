//! Turns an uploaded file into text: `sniff` decides the format from the first bytes and the
//! file name (they must agree), `parse` extracts sections of text per format. Pure and
//! synchronous (callers run it on a blocking thread); hostile input yields a `ParseError`,
//! never a panic or a crash.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{Cursor, Read};
use std::panic::{self, AssertUnwindSafe};

use encoding_rs::{Encoding, UTF_8};
use pdf_extract::{Dictionary, Document, Object, ObjectId, Stream};
use quick_xml::events::{BytesRef, BytesStart, Event};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// How many leading bytes `sniff` wants to see.
pub const SNIFF_LENGTH: usize = 8 * 1024;

/// The extensions `sniff` accepts, for messages.
const SUPPORTED_EXTENSIONS: &str = ".pdf, .docx, .html, .htm, .md, .markdown, .txt, .text, .csv";

/// Rows of a CSV file per section: big enough for context, small enough to cite.
const CSV_ROWS_PER_SECTION: usize = 50;

/// HTML is rendered this wide so that html2text never re-wraps a paragraph.
const HTML_RENDER_WIDTH: usize = 10_000;

/// html2text prefixes h1–h3 lines with this (control characters are stripped from the input
/// first, so it cannot be forged) to let us split sections at headings.
const HEADING_MARKER: char = '\u{1}';

/// html5ever's tree building is quadratic in nesting depth (20 000 nested `<div>`s take
/// seconds); real pages stay far below this.
const MAX_HTML_NESTING: usize = 2_000;

/// A DOCX part larger than this once decompressed is refused (zip bombs).
const MAX_DOCX_PART_BYTES: u64 = 256 * 1024 * 1024;

/// Limits on nested PDF drawings (form XObjects), see `check_pdf_structure`.
const MAX_PDF_FORM_DEPTH: usize = 32;
const MAX_PDF_FORM_EXPANSIONS: usize = 100_000;
const MAX_PDF_PAGE_TREE_DEPTH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentFormat {
    Pdf,
    Docx,
    Html,
    Markdown,
    Text,
    Csv,
}

impl DocumentFormat {
    pub const ALL: [DocumentFormat; 6] = [
        DocumentFormat::Pdf,
        DocumentFormat::Docx,
        DocumentFormat::Html,
        DocumentFormat::Markdown,
        DocumentFormat::Text,
        DocumentFormat::Csv,
    ];

    /// The stored name (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentFormat::Pdf => "pdf",
            DocumentFormat::Docx => "docx",
            DocumentFormat::Html => "html",
            DocumentFormat::Markdown => "markdown",
            DocumentFormat::Text => "text",
            DocumentFormat::Csv => "csv",
        }
    }

    /// The inverse of `as_str`.
    pub fn parse(value: &str) -> Option<DocumentFormat> {
        DocumentFormat::ALL
            .into_iter()
            .find(|format| format.as_str() == value)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            DocumentFormat::Pdf => "application/pdf",
            DocumentFormat::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            DocumentFormat::Html => "text/html",
            DocumentFormat::Markdown => "text/markdown",
            DocumentFormat::Text => "text/plain",
            DocumentFormat::Csv => "text/csv",
        }
    }
}

impl fmt::Display for DocumentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an upload is refused before it is stored (HTTP 415). The message is a whole sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    #[error("{reason}")]
    Unsupported { reason: String },
}

/// Why a stored document could not be read. Messages are shown to end users as the
/// document's failure reason; all of them are permanent (retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the PDF is encrypted")]
    Encrypted,
    /// Nothing to read; the message fits the format (a scan for a PDF, markup for a page).
    #[error("{}", empty_message(*.0))]
    Empty(DocumentFormat),
    #[error("the file is damaged: {0}")]
    Corrupt(String),
    #[error("the file cannot be read: {0}")]
    Unsupported(String),
}

fn empty_message(format: DocumentFormat) -> &'static str {
    match format {
        DocumentFormat::Pdf => "no text could be extracted (a scanned PDF has no text layer)",
        DocumentFormat::Docx => "the Word document has no text",
        DocumentFormat::Html => "the page has no readable text, only markup",
        DocumentFormat::Markdown => "the Markdown file has no text",
        DocumentFormat::Text => "the file has no text",
        DocumentFormat::Csv => "the CSV file has no rows with text",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedDocument {
    /// In reading order; never empty, and no section's text is blank.
    pub sections: Vec<Section>,
    /// What the parser learnt: `pages` (PDF), `encoding` (text formats), `rows`/`columns` (CSV).
    pub metadata: Map<String, Value>,
}

impl ParsedDocument {
    /// All the text, sections separated by a blank line.
    pub fn text(&self) -> String {
        self.sections
            .iter()
            .map(|section| section.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Paragraphs separated by a blank line. A section that starts at a heading begins with
    /// the heading's text, so the sections together hold the whole document.
    pub text: String,
    /// 1-based page number (PDF only).
    pub page: Option<u32>,
    /// The nearest heading above this text, when the format has headings.
    pub heading: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Sniffing

/// Decides the format from the first bytes of the file (`head`, up to `SNIFF_LENGTH`) and the
/// extension of `filename`; refuses the file unless both agree on a supported format.
pub fn sniff(filename: &str, head: &[u8]) -> Result<DocumentFormat, SniffError> {
    let extension = extension_of(filename);
    let content = ContentKind::classify(head);
    let named = match &extension {
        Some(extension) => format!("the name ends in .{extension}"),
        None => "the file name has no extension".to_owned(),
    };
    let refuse = |reason: String| Err(SniffError::Unsupported { reason });

    match (&content, extension.as_deref()) {
        (ContentKind::Pdf, Some("pdf")) => Ok(DocumentFormat::Pdf),
        (ContentKind::Pdf, _) => refuse(format!("the content is a PDF but {named}")),
        (ContentKind::Zip, Some("docx")) => Ok(DocumentFormat::Docx),
        (_, Some("pdf")) => refuse(format!(
            "{named} but the content is {}, not a PDF",
            content.describe()
        )),
        (_, Some("docx")) => refuse(format!(
            "{named} but the content is {}, not a Word document (.docx)",
            content.describe()
        )),
        (_, Some(extension)) => match text_format_for(extension) {
            Some(format) if matches!(content, ContentKind::Text | ContentKind::Empty) => Ok(format),
            Some(_) => refuse(format!(
                "{named} but the content is {}, not text",
                content.describe()
            )),
            None if matches!(content, ContentKind::Zip) && !is_known_zip_extension(extension) => {
                refuse(format!("the content is a ZIP archive but {named}"))
            }
            None => refuse(format!(
                "unsupported file type .{extension} (supported: {SUPPORTED_EXTENSIONS})"
            )),
        },
        (_, None) => refuse(format!(
            "{named}; supported file types are {SUPPORTED_EXTENSIONS}"
        )),
    }
}

/// The lower-cased extension of the last path component, if any.
fn extension_of(filename: &str) -> Option<String> {
    let name = filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(filename)
        .trim()
        .trim_end_matches('.');
    let (_, extension) = name.rsplit_once('.')?;
    if extension.is_empty() {
        return None;
    }
    Some(extension.to_ascii_lowercase())
}

fn text_format_for(extension: &str) -> Option<DocumentFormat> {
    match extension {
        "html" | "htm" => Some(DocumentFormat::Html),
        "md" | "markdown" => Some(DocumentFormat::Markdown),
        "txt" | "text" => Some(DocumentFormat::Text),
        "csv" => Some(DocumentFormat::Csv),
        _ => None,
    }
}

/// ZIP-based formats we recognise by name but do not read.
fn is_known_zip_extension(extension: &str) -> bool {
    matches!(
        extension,
        "zip" | "xlsx" | "pptx" | "odt" | "ods" | "odp" | "epub" | "jar" | "apk"
    )
}

/// What the first bytes of a file look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentKind {
    Empty,
    Pdf,
    Zip,
    Text,
    /// Binary data, with a description for messages ("a PNG image").
    Binary(&'static str),
}

impl ContentKind {
    fn classify(head: &[u8]) -> ContentKind {
        if head.is_empty() {
            return ContentKind::Empty;
        }
        // The PDF header may follow some junk, within the first 1024 bytes.
        if find(&head[..head.len().min(1024)], b"%PDF-").is_some() {
            return ContentKind::Pdf;
        }
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            return ContentKind::Zip;
        }
        if looks_like_text(head) {
            return ContentKind::Text;
        }
        const SIGNATURES: &[(&[u8], &str)] = &[
            (b"\x89PNG\r\n\x1a\n", "a PNG image"),
            (b"\xff\xd8\xff", "a JPEG image"),
            (b"GIF87a", "a GIF image"),
            (b"GIF89a", "a GIF image"),
            (b"\x7fELF", "an executable (ELF)"),
            (b"MZ", "a Windows executable"),
            (b"\xcf\xfa\xed\xfe", "an executable (Mach-O)"),
            (b"\xfe\xed\xfa\xcf", "an executable (Mach-O)"),
            (b"\xca\xfe\xba\xbe", "an executable (Mach-O)"),
            (
                b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
                "a legacy or password-protected Microsoft Office file",
            ),
            (b"\x1f\x8b", "a gzip archive"),
            (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
            (b"Rar!", "a RAR archive"),
        ];
        if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
            return ContentKind::Binary("a WebP image");
        }
        SIGNATURES
            .iter()
            .find(|(signature, _)| head.starts_with(signature))
            .map_or(ContentKind::Binary("binary data"), |(_, description)| {
                ContentKind::Binary(description)
            })
    }

    fn describe(self) -> &'static str {
        match self {
            ContentKind::Empty => "empty",
            ContentKind::Pdf => "a PDF",
            ContentKind::Zip => "a ZIP archive",
            ContentKind::Text => "text",
            ContentKind::Binary(description) => description,
        }
    }
}

/// Text means: UTF-16 with a byte-order mark, or no NUL bytes and decodable (UTF-8, or the
/// legacy encoding chardetng guesses) into something that is not mostly control characters.
fn looks_like_text(head: &[u8]) -> bool {
    if let Some((encoding, bom_length)) = Encoding::for_bom(head)
        && encoding != UTF_8
    {
        let (text, _) = encoding.decode_without_bom_handling(&head[bom_length..]);
        return mostly_printable(&text);
    }
    if head.contains(&0) {
        return false;
    }
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    match std::str::from_utf8(head) {
        Ok(text) => return mostly_printable(text),
        // The head may end in the middle of a character.
        Err(error) if error.error_len().is_none() => {
            return mostly_printable(&String::from_utf8_lossy(&head[..error.valid_up_to()]));
        }
        Err(_) => {}
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(head, false);
    let encoding = detector.guess(None, false);
    // A multi-byte legacy encoding may be cut mid-character at the end of the head.
    (0..4.min(head.len())).any(|cut| {
        encoding
            .decode_without_bom_handling_and_without_replacement(&head[..head.len() - cut])
            .is_some_and(|text| mostly_printable(&text))
    })
}

/// At most 1% control characters (other than tab, newlines and form feed).
fn mostly_printable(text: &str) -> bool {
    let mut total = 0usize;
    let mut control = 0usize;
    for character in text.chars() {
        total += 1;
        if character.is_control() && !matches!(character, '\t' | '\n' | '\r' | '\x0c') {
            control += 1;
        }
    }
    control * 100 <= total
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Extracts the text of a file whose format `sniff` decided.
pub fn parse(format: DocumentFormat, bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    // Every parser is written not to panic; this is the net under the libraries.
    let parsed = catch_panic(|| match format {
        DocumentFormat::Pdf => parse_pdf(bytes),
        DocumentFormat::Docx => parse_docx(bytes),
        DocumentFormat::Html => parse_html(bytes),
        DocumentFormat::Markdown => parse_markdown(bytes),
        DocumentFormat::Text => parse_text(bytes),
        DocumentFormat::Csv => parse_csv(bytes),
    })
    .unwrap_or_else(|| {
        Err(ParseError::Corrupt(format!(
            "the {} parser could not make sense of it",
            format
        )))
    })?;
    let sections: Vec<Section> = parsed
        .sections
        .into_iter()
        .filter(|section| !section.text.trim().is_empty())
        .collect();
    if sections.is_empty() {
        return Err(ParseError::Empty(format));
    }
    Ok(ParsedDocument {
        sections,
        metadata: parsed.metadata,
    })
}

/// Runs `work`, turning a panic into `None`. (The default panic hook still logs it.)
fn catch_panic<T>(work: impl FnOnce() -> T) -> Option<T> {
    panic::catch_unwind(AssertUnwindSafe(work)).ok()
}

fn single_section(text: String) -> Vec<Section> {
    vec![Section {
        text,
        page: None,
        heading: None,
    }]
}

// --- PDF -------------------------------------------------------------------------------------

fn parse_pdf(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let document = match catch_panic(|| Document::load_mem(bytes)) {
        Some(Ok(document)) => document,
        Some(Err(pdf_extract::Error::Decryption(_) | pdf_extract::Error::InvalidPassword)) => {
            return Err(ParseError::Encrypted);
        }
        Some(Err(_)) | None if find(bytes, b"/Encrypt").is_some() => {
            return Err(ParseError::Encrypted);
        }
        Some(Err(error)) => {
            return Err(ParseError::Corrupt(format!(
                "the PDF structure cannot be read, the file may be truncated ({error})"
            )));
        }
        None => {
            return Err(ParseError::Corrupt(
                "the PDF structure could not be read".into(),
            ));
        }
    };
    // lopdf decrypts documents whose user password is empty (restrictions only) while
    // loading and drops `/Encrypt`; if it is still there, a password is needed.
    if document.trailer.get(b"Encrypt").is_ok() {
        return Err(ParseError::Encrypted);
    }
    let pages = document.get_pages();
    if pages.is_empty() {
        return Err(ParseError::Corrupt("the PDF has no readable pages".into()));
    }
    check_pdf_structure(&document, &pages)?;

    let mut sections = Vec::new();
    let mut unreadable_pages = Vec::new();
    for &page_number in pages.keys() {
        // One broken page (pdf-extract panics on some) costs only that page.
        match catch_panic(|| extract_pdf_page(&document, page_number)) {
            Some(Ok(text)) => {
                let text = tidy_pdf_text(&text);
                if !text.is_empty() {
                    sections.push(Section {
                        text,
                        page: Some(page_number),
                        heading: None,
                    });
                }
            }
            Some(Err(_)) | None => unreadable_pages.push(page_number),
        }
    }
    if unreadable_pages.len() == pages.len() {
        return Err(ParseError::Corrupt(
            "none of its pages could be read".into(),
        ));
    }
    let mut metadata = Map::new();
    metadata.insert("pages".into(), json!(pages.len()));
    if !unreadable_pages.is_empty() {
        metadata.insert("unreadable_pages".into(), json!(unreadable_pages));
    }
    Ok(ParsedDocument { sections, metadata })
}

fn extract_pdf_page(document: &Document, page_number: u32) -> Result<String, String> {
    let mut text = String::new();
    let mut output = pdf_extract::PlainTextOutput::new(&mut text);
    pdf_extract::output_doc_page(document, &mut output, page_number)
        .map_err(|error| error.to_string())?;
    Ok(text)
}

/// pdf-extract recurses without a limit through page-tree parents and through drawings that
/// invoke other drawings (`Do`); a crafted loop there overflows the stack, which aborts the
/// whole process and cannot be caught. Refuse such documents before extracting.
fn check_pdf_structure(
    document: &Document,
    pages: &BTreeMap<u32, ObjectId>,
) -> Result<(), ParseError> {
    let mut invoked_by_stream: HashMap<*const Stream, Vec<Vec<u8>>> = HashMap::new();
    let mut expansions = 0usize;
    for &page_id in pages.values() {
        let resources = page_resources(document, page_id)?;
        let Ok(content) = document.get_page_content(page_id) else {
            continue;
        };
        // A drawing's identity is its address: the document is borrowed, nothing moves.
        let mut pending: Vec<PendingDrawings<'_>> =
            vec![(invoked_xobjects(&content), resources, Vec::new())];
        while let Some((names, resources, path)) = pending.pop() {
            for name in names {
                let Some(stream) = resources.and_then(|resources| {
                    let xobjects = resources
                        .get_deref(b"XObject", document)
                        .ok()?
                        .as_dict()
                        .ok()?;
                    xobjects.get_deref(&name, document).ok()?.as_stream().ok()
                }) else {
                    continue;
                };
                let identity = stream as *const Stream;
                if path.contains(&identity) {
                    return Err(ParseError::Corrupt(
                        "a drawing in the PDF contains itself".into(),
                    ));
                }
                if path.len() >= MAX_PDF_FORM_DEPTH {
                    return Err(ParseError::Corrupt(
                        "drawings in the PDF are nested too deeply".into(),
                    ));
                }
                expansions += 1;
                if expansions > MAX_PDF_FORM_EXPANSIONS {
                    return Err(ParseError::Corrupt(
                        "its drawings are nested too many times to read".into(),
                    ));
                }
                let invoked = invoked_by_stream
                    .entry(identity)
                    .or_insert_with(|| {
                        let content = stream
                            .decompressed_content()
                            .unwrap_or_else(|_| stream.content.clone());
                        invoked_xobjects(&content)
                    })
                    .clone();
                if invoked.is_empty() {
                    continue;
                }
                let own_resources = stream
                    .dict
                    .get_deref(b"Resources", document)
                    .ok()
                    .and_then(|resources| resources.as_dict().ok());
                let mut path = path.clone();
                path.push(identity);
                pending.push((invoked, own_resources.or(resources), path));
            }
        }
    }
    Ok(())
}

/// Drawings still to visit: the names a content stream invokes, the resources they are
/// looked up in, and the drawings (by address) on the way there.
type PendingDrawings<'document> = (
    Vec<Vec<u8>>,
    Option<&'document Dictionary>,
    Vec<*const Stream>,
);

/// The page's resources as pdf-extract finds them (up the `Parent` chain), refusing loops.
fn page_resources(
    document: &Document,
    page_id: ObjectId,
) -> Result<Option<&Dictionary>, ParseError> {
    let mut seen = HashSet::new();
    let mut resources = None;
    let mut current = document.get_dictionary(page_id).ok();
    while let Some(dictionary) = current {
        if !seen.insert(dictionary as *const Dictionary) || seen.len() > MAX_PDF_PAGE_TREE_DEPTH {
            return Err(ParseError::Corrupt(
                "its page tree loops back on itself".into(),
            ));
        }
        if resources.is_none() {
            resources = dictionary
                .get_deref(b"Resources", document)
                .ok()
                .and_then(|resources| resources.as_dict().ok());
        }
        current = dictionary
            .get(b"Parent")
            .and_then(Object::as_reference)
            .and_then(|parent| document.get_dictionary(parent))
            .ok();
    }
    Ok(resources)
}

/// Names of the XObjects a content stream draws with `Do`.
fn invoked_xobjects(content: &[u8]) -> Vec<Vec<u8>> {
    if find(content, b"Do").is_none() {
        return Vec::new();
    }
    let Ok(content) = pdf_extract::content::Content::decode(content) else {
        return Vec::new();
    };
    content
        .operations
        .iter()
        .filter(|operation| operation.operator == "Do")
        .filter_map(|operation| operation.operands.first()?.as_name().ok())
        .map(<[u8]>::to_vec)
        .collect()
}

/// PDF text: ligatures unfolded, spaces collapsed, lines trimmed, paragraph breaks kept.
fn tidy_pdf_text(text: &str) -> String {
    let mut unfolded = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\u{fb00}' => unfolded.push_str("ff"),
            '\u{fb01}' => unfolded.push_str("fi"),
            '\u{fb02}' => unfolded.push_str("fl"),
            '\u{fb03}' => unfolded.push_str("ffi"),
            '\u{fb04}' => unfolded.push_str("ffl"),
            '\u{fb05}' | '\u{fb06}' => unfolded.push_str("st"),
            '\u{ad}' => {}
            '\u{a0}' | '\t' => unfolded.push(' '),
            other => unfolded.push(other),
        }
    }
    let collapsed: Vec<String> = unfolded
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split(' ').filter(|word| !word.is_empty()).collect();
            collapse_dot_leaders(&words.join(" "))
        })
        .collect();
    tidy(&collapsed.join("\n"))
}

/// Tables of contents pad with dots (". . . . . 12"); four or more become one "…".
fn collapse_dot_leaders(line: &str) -> String {
    let characters: Vec<char> = line.chars().collect();
    let mut collapsed = String::with_capacity(line.len());
    let mut index = 0;
    while index < characters.len() {
        if characters[index] == '.' {
            let mut end = index;
            let mut dots = 0;
            while end < characters.len() && characters[end] == '.' {
                dots += 1;
                end += 1;
                if end + 1 < characters.len()
                    && characters[end] == ' '
                    && characters[end + 1] == '.'
                {
                    end += 1;
                }
            }
            if dots >= 4 {
                let kept = collapsed.trim_end().len();
                collapsed.truncate(kept);
                collapsed.push_str(" … ");
                while end < characters.len() && characters[end] == ' ' {
                    end += 1;
                }
            } else {
                collapsed.extend(&characters[index..end]);
            }
            index = end;
        } else {
            collapsed.push(characters[index]);
            index += 1;
        }
    }
    collapsed.trim_end().to_owned()
}

// --- DOCX ------------------------------------------------------------------------------------

fn parse_docx(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_error)?;
    let document_xml = read_zip_part(&mut archive, "word/document.xml")?.ok_or_else(|| {
        ParseError::Corrupt("it has no word/document.xml, so it is not a Word document".into())
    })?;
    // Styles are optional; without them only style ids (not names) identify headings.
    let heading_styles = match read_zip_part(&mut archive, "word/styles.xml") {
        Ok(Some(styles_xml)) => heading_style_ids(&styles_xml),
        _ => HashSet::new(),
    };
    let sections = docx_sections(&document_xml, &heading_styles)?;
    Ok(ParsedDocument {
        sections,
        metadata: Map::new(),
    })
}

fn read_zip_part(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<Vec<u8>>, ParseError> {
    let part = match archive.by_name(name) {
        Ok(part) => part,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(error) => return Err(zip_error(error)),
    };
    let too_large = || {
        ParseError::Unsupported(format!(
            "{name} is larger than {} MB once decompressed",
            MAX_DOCX_PART_BYTES / (1024 * 1024)
        ))
    };
    if part.size() > MAX_DOCX_PART_BYTES {
        return Err(too_large());
    }
    let mut content = Vec::new();
    part.take(MAX_DOCX_PART_BYTES + 1)
        .read_to_end(&mut content)
        .map_err(|error| ParseError::Corrupt(format!("{name} cannot be decompressed ({error})")))?;
    if content.len() as u64 > MAX_DOCX_PART_BYTES {
        return Err(too_large());
    }
    Ok(Some(content))
}

fn zip_error(error: zip::result::ZipError) -> ParseError {
    use zip::result::ZipError;
    match error {
        ZipError::UnsupportedArchive(reason) => ParseError::Unsupported(format!(
            "the ZIP container uses an unsupported feature ({reason})"
        )),
        ZipError::CompressionMethodNotSupported(_) => ParseError::Unsupported(
            "the ZIP container uses an unsupported compression method".into(),
        ),
        ZipError::InvalidPassword => {
            ParseError::Unsupported("the document is password-protected".into())
        }
        other => ParseError::Corrupt(format!("its ZIP container is broken ({other})")),
    }
}

/// Ids of paragraph styles whose name or id says heading or title (ids are localised by
/// Word, names of built-in styles are not: "heading 1" is "Überschrift1" as an id).
fn heading_style_ids(styles_xml: &[u8]) -> HashSet<String> {
    let mut reader = quick_xml::Reader::from_reader(styles_xml);
    let mut headings = HashSet::new();
    let mut current_style: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(element)) | Ok(Event::Empty(element)) => {
                match element.local_name().as_ref() {
                    b"style" => current_style = attribute(&element, b"styleId"),
                    b"name" => {
                        if let (Some(style), Some(name)) =
                            (&current_style, attribute(&element, b"val"))
                            && is_heading_style_name(&name)
                        {
                            headings.insert(style.clone());
                        }
                    }
                    _ => {}
                }
            }
            Ok(Event::End(element)) if element.local_name().as_ref() == b"style" => {
                current_style = None;
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    headings
}

fn is_heading_style_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("heading") || name == "title"
}

/// The value of the attribute whose local name is `local_name` (prefixes vary).
fn attribute(element: &BytesStart<'_>, local_name: &[u8]) -> Option<String> {
    element
        .attributes()
        .flatten()
        .find(|attribute| attribute.key.local_name().as_ref() == local_name)
        .and_then(|attribute| {
            attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(Cow::into_owned)
        })
}

#[derive(Default)]
struct DocxParagraph {
    text: String,
    heading: bool,
}

#[derive(Default)]
struct DocxTable {
    rows: Vec<String>,
    cells: Vec<String>,
    cell: String,
}

/// Paragraphs, headings and tables of `word/document.xml`, streamed with quick-xml. Deleted
/// text, fallback copies of text boxes and superseded formatting are skipped.
fn docx_sections(
    document_xml: &[u8],
    heading_styles: &HashSet<String>,
) -> Result<Vec<Section>, ParseError> {
    let mut reader = quick_xml::Reader::from_reader(document_xml);
    let mut builder = SectionBuilder::default();
    let mut paragraphs: Vec<DocxParagraph> = Vec::new();
    let mut tables: Vec<DocxTable> = Vec::new();
    let mut runs = 0usize;
    let mut in_text = false;
    let mut skipped_depth = 0usize;

    loop {
        let event = reader.read_event().map_err(|error| {
            ParseError::Corrupt(format!("word/document.xml is not valid XML ({error})"))
        })?;
        if skipped_depth > 0 {
            match event {
                Event::Start(_) => skipped_depth += 1,
                Event::End(_) => skipped_depth -= 1,
                Event::Eof => break,
                _ => {}
            }
            continue;
        }
        match event {
            Event::Start(element) => match element.local_name().as_ref() {
                b"Fallback" | b"pPrChange" | b"rPrChange" | b"del" | b"moveFrom" => {
                    skipped_depth = 1;
                }
                b"p" => paragraphs.push(DocxParagraph::default()),
                b"r" => runs += 1,
                b"t" => in_text = true,
                b"tbl" => tables.push(DocxTable::default()),
                b"tr" => {
                    if let Some(table) = tables.last_mut() {
                        table.cells.clear();
                    }
                }
                b"tc" => {
                    if let Some(table) = tables.last_mut() {
                        table.cell.clear();
                    }
                }
                other => docx_marker(other, &element, &mut paragraphs, runs, heading_styles),
            },
            Event::Empty(element) => docx_marker(
                element.local_name().as_ref(),
                &element,
                &mut paragraphs,
                runs,
                heading_styles,
            ),
            Event::End(element) => match element.local_name().as_ref() {
                b"t" => in_text = false,
                b"r" => runs = runs.saturating_sub(1),
                b"p" => {
                    if let Some(paragraph) = paragraphs.pop() {
                        let text = paragraph.text.trim();
                        if let Some(table) = tables.last_mut() {
                            append_with_space(&mut table.cell, text);
                        } else if paragraph.heading {
                            builder.heading(text);
                        } else {
                            builder.block(text);
                        }
                    }
                }
                b"tc" => {
                    if let Some(table) = tables.last_mut() {
                        let cell = std::mem::take(&mut table.cell);
                        table.cells.push(cell.trim().to_owned());
                    }
                }
                b"tr" => {
                    if let Some(table) = tables.last_mut() {
                        let cells = std::mem::take(&mut table.cells);
                        if cells.iter().any(|cell| !cell.is_empty()) {
                            table.rows.push(cells.join(" | "));
                        }
                    }
                }
                b"tbl" => {
                    if let Some(table) = tables.pop() {
                        match tables.last_mut() {
                            // A table inside a cell becomes part of that cell.
                            Some(outer) => {
                                append_with_space(&mut outer.cell, &table.rows.join(" / "))
                            }
                            None => builder.block(&table.rows.join("\n")),
                        }
                    }
                }
                _ => {}
            },
            Event::Text(text) if in_text => {
                if let (Some(paragraph), Ok(text)) = (paragraphs.last_mut(), text.xml10_content()) {
                    paragraph.text.push_str(&text);
                }
            }
            Event::CData(text) if in_text => {
                if let (Some(paragraph), Ok(text)) = (paragraphs.last_mut(), text.decode()) {
                    paragraph.text.push_str(&text);
                }
            }
            Event::GeneralRef(reference) if in_text => {
                if let Some(paragraph) = paragraphs.last_mut() {
                    push_xml_reference(&mut paragraph.text, &reference);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(builder.finish())
}

/// Empty-or-start elements that mark up a paragraph: style, outline level, tabs and breaks.
fn docx_marker(
    local_name: &[u8],
    element: &BytesStart<'_>,
    paragraphs: &mut [DocxParagraph],
    runs: usize,
    heading_styles: &HashSet<String>,
) {
    let Some(paragraph) = paragraphs.last_mut() else {
        return;
    };
    match local_name {
        b"pStyle" => {
            if let Some(style) = attribute(element, b"val") {
                paragraph.heading =
                    heading_styles.contains(&style) || is_heading_style_name(&style);
            }
        }
        // Levels 0–8 are outline (heading) levels; 9 is body text.
        b"outlineLvl" if attribute(element, b"val").is_some_and(|level| level.trim() != "9") => {
            paragraph.heading = true;
        }
        // `tab` also defines tab stops in paragraph properties; only a run's tab is text.
        b"tab" | b"ptab" if runs > 0 => paragraph.text.push('\t'),
        b"br" | b"cr" if runs > 0 => paragraph.text.push('\n'),
        b"noBreakHyphen" if runs > 0 => paragraph.text.push('-'),
        _ => {}
    }
}

fn push_xml_reference(text: &mut String, reference: &BytesRef<'_>) {
    if reference.is_char_ref() {
        if let Ok(Some(character)) = reference.resolve_char_ref() {
            text.push(character);
        }
    } else if let Ok(name) = reference.decode()
        && let Some(resolved) = quick_xml::escape::resolve_predefined_entity(&name)
    {
        text.push_str(resolved);
    }
}

fn append_with_space(target: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if !target.is_empty() {
        target.push(' ');
    }
    target.push_str(text);
}

// --- HTML ------------------------------------------------------------------------------------

fn parse_html(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let decoded = decode_text(bytes, true);
    let source = strip_control_characters(&decoded.text);
    if html_nesting_exceeds(&source, MAX_HTML_NESTING) {
        return Err(ParseError::Unsupported(format!(
            "the HTML is nested more than {MAX_HTML_NESTING} elements deep"
        )));
    }
    let config = html2text::config::with_decorator(SectionMarkingDecorator)
        .no_table_borders()
        .allow_width_overflow();
    let html_error =
        |error: html2text::Error| ParseError::Corrupt(format!("the HTML cannot be read ({error})"));
    let dom = config.parse_html(source.as_bytes()).map_err(html_error)?;
    remove_boilerplate(&dom.document);
    let tree = config.dom_to_render_tree(&dom).map_err(html_error)?;
    let rendered = config
        .render_to_string(tree, HTML_RENDER_WIDTH)
        .map_err(html_error)?;

    let mut builder = SectionBuilder::default();
    let mut paragraph = String::new();
    let mut heading = String::new();
    for line in rendered.lines() {
        if let Some(heading_line) = line.strip_prefix(HEADING_MARKER) {
            builder.block(&std::mem::take(&mut paragraph));
            append_with_space(&mut heading, heading_line.trim());
            continue;
        }
        if !heading.is_empty() {
            builder.heading(&std::mem::take(&mut heading));
        }
        if line.trim().is_empty() {
            builder.block(&std::mem::take(&mut paragraph));
        } else {
            if !paragraph.is_empty() {
                paragraph.push('\n');
            }
            paragraph.push_str(line.trim_end());
        }
    }
    builder.block(&paragraph);
    if !heading.is_empty() {
        builder.heading(&heading);
    }
    Ok(ParsedDocument {
        sections: builder.finish(),
        metadata: decoded.metadata(),
    })
}

/// A cheap upper estimate of element nesting: opening tags minus closing tags, ignoring
/// void elements, self-closing tags, comments and elements whose end tag is optional.
fn html_nesting_exceeds(source: &str, limit: usize) -> bool {
    const NOT_NESTING: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead",
        "tbody", "tfoot", "colgroup", "rt", "rp", "html", "head", "body",
    ];
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut position = 0;
    while let Some(offset) = bytes[position..].iter().position(|&byte| byte == b'<') {
        let start = position + offset + 1;
        let closing = bytes.get(start) == Some(&b'/');
        let name_start = if closing { start + 1 } else { start };
        let name_end = bytes[name_start..]
            .iter()
            .position(|byte| !byte.is_ascii_alphanumeric())
            .map_or(bytes.len(), |length| name_start + length);
        position = name_end.max(start);
        if name_end == name_start {
            continue; // "<!--", "<?xml", a lone "<" in text
        }
        let name = source[name_start..name_end].to_ascii_lowercase();
        if NOT_NESTING.contains(&name.as_str()) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
            continue;
        }
        let tag_end = bytes[position..]
            .iter()
            .position(|&byte| byte == b'>')
            .map_or(bytes.len(), |length| position + length);
        if tag_end > 0 && bytes.get(tag_end - 1) == Some(&b'/') {
            continue;
        }
        depth += 1;
        if depth > limit {
            return true;
        }
    }
    false
}

/// Drops what is not content before rendering: scripts, styles, navigation, hidden parts.
/// Iterative, because hostile documents can nest deeper than the stack.
fn remove_boilerplate(document: &html2text::Handle) {
    let mut pending = vec![document.clone()];
    while let Some(node) = pending.pop() {
        node.children
            .borrow_mut()
            .retain(|child| !is_boilerplate(child));
        pending.extend(node.children.borrow().iter().cloned());
    }
}

fn is_boilerplate(node: &html2text::Handle) -> bool {
    let html2text::Element { name, attrs, .. } = &node.data else {
        return false;
    };
    let tag: &str = &name.local;
    if matches!(
        tag,
        "script"
            | "style"
            | "noscript"
            | "template"
            | "nav"
            | "iframe"
            | "object"
            | "embed"
            | "svg"
            | "canvas"
            | "select"
            | "head"
    ) {
        return true;
    }
    attrs.borrow().iter().any(|attribute| {
        let value: &str = &attribute.value;
        match &*attribute.name.local {
            "hidden" => true,
            "aria-hidden" => value.eq_ignore_ascii_case("true"),
            "role" => value.eq_ignore_ascii_case("navigation"),
            // DocBook's previous/next bars, common in manuals.
            "class" => value
                .split_ascii_whitespace()
                .any(|class| class == "navheader" || class == "navfooter"),
            _ => false,
        }
    })
}

/// Plain text without markup, except that h1–h3 lines start with `HEADING_MARKER`.
#[derive(Clone, Copy, Debug)]
struct SectionMarkingDecorator;

impl html2text::render::TextDecorator for SectionMarkingDecorator {
    type Annotation = ();

    fn decorate_link_start(&mut self, _url: &str) -> (String, Self::Annotation) {
        (String::new(), ())
    }
    fn decorate_link_end(&mut self) -> String {
        String::new()
    }
    fn decorate_em_start(&self) -> (String, Self::Annotation) {
        (String::new(), ())
    }
    fn decorate_em_end(&self) -> String {
        String::new()
    }
    fn decorate_strong_start(&self) -> (String, Self::Annotation) {
        (String::new(), ())
    }
    fn decorate_strong_end(&self) -> String {
        String::new()
    }
    fn decorate_strikeout_start(&self) -> (String, Self::Annotation) {
        (String::new(), ())
    }
    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }
    fn decorate_code_start(&self) -> (String, Self::Annotation) {
        (String::new(), ())
    }
    fn decorate_code_end(&self) -> String {
        String::new()
    }
    fn decorate_preformat_first(&self) -> Self::Annotation {}
    fn decorate_preformat_cont(&self) -> Self::Annotation {}
    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, Self::Annotation) {
        (title.to_owned(), ())
    }
    fn header_prefix(&self, level: usize) -> String {
        if level <= 3 {
            HEADING_MARKER.to_string()
        } else {
            String::new()
        }
    }
    fn quote_prefix(&self) -> String {
        String::new()
    }
    fn unordered_item_prefix(&self) -> String {
        "- ".to_owned()
    }
    fn ordered_item_prefix(&self, index: i64) -> String {
        format!("{index}. ")
    }
    fn make_subblock_decorator(&self) -> Self {
        *self
    }
    fn decorate_superscript_start(&self) -> (String, Self::Annotation) {
        (String::new(), ())
    }
    fn decorate_superscript_end(&self) -> String {
        String::new()
    }
    fn finalise(&mut self, _urls: Vec<String>) -> Vec<html2text::render::TaggedLine<()>> {
        Vec::new()
    }
}

// --- Markdown --------------------------------------------------------------------------------

fn parse_markdown(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    use pulldown_cmark::{Event as Markdown, Options, Parser, Tag, TagEnd};

    let decoded = decode_text(bytes, false);
    let source = normalise_line_endings(&decoded.text);
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;

    let mut builder = SectionBuilder::default();
    let mut block = String::new();
    let mut heading: Option<String> = None;
    let mut list_depth = 0usize;
    let mut in_code = false;
    let mut cells: Vec<String> = Vec::new();
    let mut in_cell = false;
    // Raw HTML blocks (`<div>Welcome…</div>`) are collected whole and read as HTML.
    let mut html_block: Option<String> = None;

    for event in Parser::new_ext(&source, options) {
        // Inline text goes to the heading, the table cell or the block being built.
        let target = match (&mut heading, in_cell) {
            (Some(heading), _) => heading,
            (None, true) => cells.last_mut().unwrap_or(&mut block),
            (None, false) => &mut block,
        };
        match event {
            Markdown::Start(Tag::Heading { .. }) => {
                builder.block(&std::mem::take(&mut block));
                heading = Some(String::new());
            }
            Markdown::End(TagEnd::Heading(_)) => {
                if let Some(text) = heading.take() {
                    builder.heading(&text);
                }
            }
            Markdown::Start(Tag::CodeBlock(_)) | Markdown::Start(Tag::MetadataBlock(_)) => {
                if list_depth == 0 {
                    builder.block(&std::mem::take(&mut block));
                } else {
                    ensure_line_break(&mut block);
                }
                in_code = true;
            }
            Markdown::End(TagEnd::CodeBlock) | Markdown::End(TagEnd::MetadataBlock(_)) => {
                in_code = false;
                if list_depth == 0 {
                    builder.block(&std::mem::take(&mut block));
                }
            }
            Markdown::Start(Tag::List(_)) => {
                if list_depth == 0 {
                    builder.block(&std::mem::take(&mut block));
                }
                list_depth += 1;
            }
            Markdown::End(TagEnd::List(_)) => {
                list_depth = list_depth.saturating_sub(1);
                if list_depth == 0 {
                    builder.block(&std::mem::take(&mut block));
                }
            }
            Markdown::Start(Tag::Item) => {
                ensure_line_break(&mut block);
                block.push_str(&"  ".repeat(list_depth.saturating_sub(1)));
                block.push_str("- ");
            }
            Markdown::End(TagEnd::Paragraph) | Markdown::End(TagEnd::Item) => {
                if list_depth == 0 {
                    builder.block(&std::mem::take(&mut block));
                } else {
                    ensure_line_break(&mut block);
                }
            }
            Markdown::Start(Tag::Table(_)) => builder.block(&std::mem::take(&mut block)),
            Markdown::End(TagEnd::Table) => builder.block(&std::mem::take(&mut block)),
            Markdown::Start(Tag::TableCell) => {
                cells.push(String::new());
                in_cell = true;
            }
            Markdown::End(TagEnd::TableCell) => in_cell = false,
            Markdown::End(TagEnd::TableHead) | Markdown::End(TagEnd::TableRow) => {
                ensure_line_break(&mut block);
                block.push_str(
                    &std::mem::take(&mut cells)
                        .iter()
                        .map(|cell| cell.trim())
                        .collect::<Vec<_>>()
                        .join(" | "),
                );
            }
            Markdown::End(TagEnd::BlockQuote(_)) | Markdown::End(TagEnd::FootnoteDefinition) => {
                if list_depth == 0 {
                    builder.block(&std::mem::take(&mut block));
                }
            }
            Markdown::Text(text) if in_code => block.push_str(&text),
            Markdown::Text(text)
            | Markdown::Code(text)
            | Markdown::InlineMath(text)
            | Markdown::DisplayMath(text) => target.push_str(&text),
            Markdown::SoftBreak => target.push(' '),
            Markdown::HardBreak => target.push('\n'),
            Markdown::TaskListMarker(done) => target.push_str(if done { "[x] " } else { "[ ] " }),
            Markdown::FootnoteReference(label) => {
                target.push_str(&format!("[{label}]"));
            }
            Markdown::Rule => builder.block(&std::mem::take(&mut block)),
            Markdown::Start(Tag::HtmlBlock) => {
                if list_depth == 0 {
                    builder.block(&std::mem::take(&mut block));
                }
                html_block = Some(String::new());
            }
            Markdown::End(TagEnd::HtmlBlock) => {
                if let Some(html) = html_block.take()
                    && let Ok(parsed) = parse_html(html.as_bytes())
                {
                    for section in parsed.sections {
                        builder.block(&section.text);
                    }
                }
            }
            Markdown::Html(html) => {
                if let Some(buffer) = html_block.as_mut() {
                    buffer.push_str(&html);
                }
            }
            // Inline tags are markup; the text between them comes as text.
            Markdown::InlineHtml(_) => {}
            Markdown::Start(_) | Markdown::End(_) => {}
        }
    }
    builder.block(&block);
    if let Some(text) = heading {
        builder.heading(&text);
    }
    Ok(ParsedDocument {
        sections: builder.finish(),
        metadata: decoded.metadata(),
    })
}

fn ensure_line_break(text: &mut String) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
}

// --- Plain text and CSV ----------------------------------------------------------------------

fn parse_text(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let decoded = decode_text(bytes, false);
    Ok(ParsedDocument {
        sections: single_section(tidy(&decoded.text)),
        metadata: decoded.metadata(),
    })
}

fn parse_csv(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let decoded = decode_text(bytes, false);
    let source = normalise_line_endings(&decoded.text);
    let delimiter = detect_delimiter(&source);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(source.as_bytes());
    let corrupt =
        |error: csv::Error| ParseError::Corrupt(format!("the CSV cannot be read ({error})"));
    let headers: Vec<String> = reader
        .headers()
        .map_err(corrupt)?
        .iter()
        .enumerate()
        .map(|(index, header)| match single_line(header) {
            header if header.is_empty() => format!("column {}", index + 1),
            header => header,
        })
        .collect();

    let mut sections = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut rows = 0usize;
    for record in reader.records() {
        let record = record.map_err(corrupt)?;
        let fields: Vec<String> = record
            .iter()
            .enumerate()
            .filter_map(|(index, value)| {
                let value = single_line(value);
                if value.is_empty() {
                    return None;
                }
                let header = headers
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| format!("column {}", index + 1));
                Some(format!("{header}: {value}"))
            })
            .collect();
        if fields.is_empty() {
            continue;
        }
        rows += 1;
        lines.push(fields.join("; "));
        if lines.len() == CSV_ROWS_PER_SECTION {
            sections.extend(single_section(std::mem::take(&mut lines).join("\n")));
        }
    }
    if !lines.is_empty() {
        sections.extend(single_section(lines.join("\n")));
    }
    let mut metadata = decoded.metadata();
    metadata.insert("rows".into(), json!(rows));
    metadata.insert("columns".into(), json!(headers.len()));
    let delimiter_name = match delimiter {
        b'\t' => "tab".to_owned(),
        other => char::from(other).to_string(),
    };
    metadata.insert("delimiter".into(), json!(delimiter_name));
    Ok(ParsedDocument { sections, metadata })
}

/// The most frequent of `,` `;` and tab in the first line, outside quotes; `,` if none.
fn detect_delimiter(text: &str) -> u8 {
    let first_line = text.lines().next().unwrap_or_default();
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for character in first_line.chars() {
        match character {
            '"' => quoted = !quoted,
            ',' if !quoted => counts[0] += 1,
            ';' if !quoted => counts[1] += 1,
            '\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b',', b';', b'\t'];
    let mut best = 0;
    for index in 1..candidates.len() {
        if counts[index] > counts[best] {
            best = index;
        }
    }
    candidates[best]
}

fn single_line(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

// --- Character sets --------------------------------------------------------------------------

struct DecodedText {
    text: String,
    encoding: &'static Encoding,
}

impl DecodedText {
    fn metadata(&self) -> Map<String, Value> {
        let mut metadata = Map::new();
        metadata.insert(
            "encoding".into(),
            json!(self.encoding.name().to_ascii_lowercase()),
        );
        metadata
    }
}

/// A byte-order mark wins, then UTF-8 if the bytes are valid, then (HTML only) the
/// charset the page declares, then chardetng's guess.
fn decode_text(bytes: &[u8], html: bool) -> DecodedText {
    if let Some((encoding, bom_length)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_length..]);
        return DecodedText {
            text: text.into_owned(),
            encoding,
        };
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return DecodedText {
            text: text.to_owned(),
            encoding: UTF_8,
        };
    }
    let declared = if html {
        declared_html_charset(bytes)
    } else {
        None
    };
    let encoding = declared.unwrap_or_else(|| {
        let mut detector = chardetng::EncodingDetector::new();
        detector.feed(bytes, true);
        detector.guess(None, true)
    });
    let (text, _) = encoding.decode_without_bom_handling(bytes);
    DecodedText {
        text: text.into_owned(),
        encoding,
    }
}

/// `<meta charset=...>` or `content="...; charset=..."` within the first 1024 bytes.
fn declared_html_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let start = head.find("charset=")? + "charset=".len();
    let label: String = head[start..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|character| character.is_ascii_alphanumeric() || "-_:.".contains(*character))
        .collect();
    let encoding = Encoding::for_label(label.as_bytes())?;
    // A page that was not valid UTF-8 cannot be UTF-16 either (HTML's rule).
    Some(encoding.output_encoding())
}

// --- Text hygiene ----------------------------------------------------------------------------

fn normalise_line_endings(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Control characters other than tab and newline removed (and carriage returns made newlines).
fn strip_control_characters(text: &str) -> String {
    normalise_line_endings(text)
        .chars()
        .filter(|character| !character.is_control() || matches!(character, '\n' | '\t'))
        .collect()
}

/// Newlines normalised, control characters and byte-order marks dropped, trailing spaces
/// trimmed, at most one blank line in a row, no blank lines at either end.
fn tidy(text: &str) -> String {
    let text = strip_control_characters(text);
    let mut tidied = String::with_capacity(text.len());
    let mut blank_lines = 0usize;
    for line in text.lines() {
        let line = line.trim_end().trim_start_matches('\u{feff}');
        if line.trim().is_empty() {
            blank_lines += 1;
            continue;
        }
        if !tidied.is_empty() {
            tidied.push_str(if blank_lines > 0 { "\n\n" } else { "\n" });
        }
        blank_lines = 0;
        tidied.push_str(line);
    }
    tidied
}

/// Groups blocks of text into sections, starting a new one at each heading. Consecutive
/// headings with nothing between them share a section (named after the last one), so no
/// section is only a title.
#[derive(Default)]
struct SectionBuilder {
    sections: Vec<Section>,
    heading: Option<String>,
    blocks: Vec<String>,
    has_body: bool,
}

impl SectionBuilder {
    fn heading(&mut self, text: &str) {
        let text = single_line(text);
        if text.is_empty() {
            return;
        }
        if self.has_body {
            self.flush();
        }
        self.blocks.push(text.clone());
        self.heading = Some(text);
    }

    fn block(&mut self, text: &str) {
        let text = tidy(text);
        if !text.is_empty() {
            self.blocks.push(text);
            self.has_body = true;
        }
    }

    fn flush(&mut self) {
        if !self.blocks.is_empty() {
            self.sections.push(Section {
                text: std::mem::take(&mut self.blocks).join("\n\n"),
                page: None,
                heading: self.heading.clone(),
            });
        }
        self.has_body = false;
    }

    fn finish(mut self) -> Vec<Section> {
        self.flush();
        self.sections
    }
}
