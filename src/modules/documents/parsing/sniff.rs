//! Sniffing: the format of an upload from its first bytes and its name, which must agree;
//! anything else is refused before it is stored.

use encoding_rs::{Encoding, UTF_8};

use super::{DocumentFormat, find};

/// How many leading bytes `sniff` wants to see.
pub const SNIFF_LENGTH: usize = 8 * 1024;

/// The extensions `sniff` accepts, for messages.
const SUPPORTED_EXTENSIONS: &str = ".pdf, .docx, .html, .htm, .md, .markdown, .txt, .text, .csv";

/// Why an upload is refused before it is stored (HTTP 415). The message is a whole sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    #[error("{reason}")]
    Unsupported { reason: String },
}

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
