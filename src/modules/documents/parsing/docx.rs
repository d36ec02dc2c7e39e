//! DOCX: paragraphs, headings (by style) and tables from `word/document.xml`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{Cursor, Read};

use quick_xml::events::{BytesRef, BytesStart, Event};
use serde_json::Map;

use super::{ParseError, ParsedDocument, Section, SectionBuilder, append_with_space};

pub(super) fn parse_docx(
    bytes: &[u8],
    max_uncompressed: u64,
) -> Result<ParsedDocument, ParseError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_error)?;
    let mut budget = Decompression::new(max_uncompressed);
    let document_xml = budget
        .read(&mut archive, "word/document.xml")?
        .ok_or_else(|| {
            ParseError::Corrupt("it has no word/document.xml, so it is not a Word document".into())
        })?;
    // Styles are optional; without them only style ids (not names) identify headings. A
    // broken styles part is ignored, one past the limit is not: that is a bomb, not a style.
    let heading_styles = match budget.read(&mut archive, "word/styles.xml") {
        Ok(Some(styles_xml)) => heading_style_ids(&styles_xml),
        Err(error @ ParseError::TooLarge(_)) => return Err(error),
        _ => HashSet::new(),
    };
    let sections = docx_sections(&document_xml, &heading_styles)?;
    Ok(ParsedDocument {
        sections,
        metadata: Map::new(),
    })
}

/// The bytes the parts read so far decompressed to, against the limit for all of them.
///
/// Against zip bombs only what decompression actually produces counts: a part is read through
/// `Read::take` with what is left of the limit, so a member that declares a small size and
/// inflates to gigabytes stops at the limit. A compression-ratio test would add no protection
/// (what a part costs is what it decompresses to, and that is bounded) and would refuse honest,
/// highly repetitive XML. Nor does the number of entries call for a limit: only two parts are
/// ever opened, by name, and the central directory is bounded by the upload's size (700 000
/// entries, a 58 MB archive, take 1.4 s and 131 MB to list).
struct Decompression {
    limit: u64,
    used: u64,
}

impl Decompression {
    fn new(limit: u64) -> Self {
        Decompression { limit, used: 0 }
    }

    /// The part named `name`, decompressed (`None`: the archive has no such part).
    fn read(
        &mut self,
        archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
        name: &str,
    ) -> Result<Option<Vec<u8>>, ParseError> {
        let part = match archive.by_name(name) {
            Ok(part) => part,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(error) => return Err(zip_error(error)),
        };
        let left = self.limit.saturating_sub(self.used);
        // An honest declared size refuses at once; a dishonest one is caught while reading.
        if part.size() > left {
            return Err(self.exceeded());
        }
        let mut content = Vec::new();
        part.take(left.saturating_add(1))
            .read_to_end(&mut content)
            .map_err(|error| {
                ParseError::Corrupt(format!("{name} cannot be decompressed ({error})"))
            })?;
        let read = content.len() as u64;
        if read > left {
            return Err(self.exceeded());
        }
        self.used += read;
        Ok(Some(content))
    }

    fn exceeded(&self) -> ParseError {
        ParseError::TooLarge(format!(
            "the Word document decompresses to more than {}",
            describe_bytes(self.limit)
        ))
    }
}

/// `200 MB`, `1.5 MB` or `4096 bytes` (MB of 2^20 bytes, as the settings' defaults are).
fn describe_bytes(bytes: u64) -> String {
    const MEGABYTE: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MEGABYTE) && bytes > 0 {
        format!("{} MB", bytes / MEGABYTE)
    } else if bytes >= MEGABYTE {
        format!("{:.1} MB", bytes as f64 / MEGABYTE as f64)
    } else {
        format!("{bytes} bytes")
    }
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
                                append_with_space(&mut outer.cell, &table.rows.join(" / "));
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
