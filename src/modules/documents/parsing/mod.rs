//! Turns an uploaded file into text: `sniff` decides the format from the first bytes and the
//! file name (they must agree, `sniff.rs`), `parse` extracts sections of text per format — one
//! file per format beside this one — within the [`ParseLimits`]. Pure and synchronous (the
//! server runs it in a limited child process, `sandbox.rs`); hostile input yields a
//! `ParseError`, never a panic or a crash.

mod docx;
mod html;
mod markdown;
mod pdf;
mod sniff;
mod text;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use encoding_rs::{Encoding, UTF_8};
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::core::config::DocumentSettings;

use docx::parse_docx;
use html::parse_html;
use markdown::parse_markdown;
use pdf::parse_pdf;
use text::{parse_csv, parse_text};

pub use sniff::{SNIFF_LENGTH, sniff};

/// A format the platform reads (stored as text; an unknown stored value is an error).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, EnumIter, DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum DocumentFormat {
    #[sea_orm(string_value = "pdf")]
    Pdf,
    #[sea_orm(string_value = "docx")]
    Docx,
    #[sea_orm(string_value = "html")]
    Html,
    #[sea_orm(string_value = "markdown")]
    Markdown,
    #[sea_orm(string_value = "text")]
    Text,
    #[sea_orm(string_value = "csv")]
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
    /// Past one of the [`ParseLimits`]: what it holds and the limit.
    #[error("the file is too large to read: {0}")]
    TooLarge(String),
}

/// How far a file may expand while it is read; past a limit the document fails with
/// [`ParseError::TooLarge`] (settings `documents.docx_max_uncompressed_bytes` and
/// `documents.pdf_max_pages`; the upload's own size is checked before it is stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Bytes a DOCX's parts may decompress to, together. Counted while they decompress, so an
    /// archive whose declared sizes lie (a zip bomb) stops at the limit all the same.
    pub docx_max_uncompressed_bytes: u64,
    /// Pages of a PDF; each page's text is extracted on its own, so this bounds the work.
    pub pdf_max_pages: usize,
}

impl From<&DocumentSettings> for ParseLimits {
    fn from(settings: &DocumentSettings) -> Self {
        ParseLimits {
            docx_max_uncompressed_bytes: settings.docx_max_uncompressed_bytes,
            pdf_max_pages: settings.pdf_max_pages,
        }
    }
}

impl Default for ParseLimits {
    /// The settings' defaults (config/default.toml; `tests/unit/config.rs` checks they agree),
    /// for parsing without settings: the tests, the benches and the fuzz targets.
    fn default() -> Self {
        ParseLimits {
            docx_max_uncompressed_bytes: 200 * 1024 * 1024,
            pdf_max_pages: 2000,
        }
    }
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
    #[cfg(test)]
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
// Parsing

/// Extracts the text of a file whose format `sniff` decided.
pub fn parse(
    format: DocumentFormat,
    bytes: &[u8],
    limits: ParseLimits,
) -> Result<ParsedDocument, ParseError> {
    // Every parser is written not to panic; this is the net under the libraries.
    let parsed = catch_panic(|| match format {
        DocumentFormat::Pdf => parse_pdf(bytes, limits.pdf_max_pages),
        DocumentFormat::Docx => parse_docx(bytes, limits.docx_max_uncompressed_bytes),
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn single_section(text: String) -> Vec<Section> {
    vec![Section {
        text,
        page: None,
        heading: None,
    }]
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

fn append_with_space(target: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if !target.is_empty() {
        target.push(' ');
    }
    target.push_str(text);
}

fn single_line(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}
