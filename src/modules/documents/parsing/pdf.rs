//! PDF: the text layer page by page, after checking the structure that could make extraction
//! explode (nested drawings, deep page trees).

use std::collections::{BTreeMap, HashMap, HashSet};

use pdf_extract::{Dictionary, Document, Object, ObjectId, Stream};
use serde_json::{Map, json};

use super::{ParseError, ParsedDocument, Section, catch_panic, find, tidy};

/// Limits on nested PDF drawings (form XObjects), see `check_pdf_structure`.
const MAX_PDF_FORM_DEPTH: usize = 32;
const MAX_PDF_FORM_EXPANSIONS: usize = 100_000;
const MAX_PDF_PAGE_TREE_DEPTH: usize = 256;

pub(super) fn parse_pdf(bytes: &[u8], max_pages: usize) -> Result<ParsedDocument, ParseError> {
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
    // Before anything is extracted: each page costs its own pass through the content.
    if pages.len() > max_pages {
        return Err(ParseError::TooLarge(format!(
            "the PDF has {} pages, more than the {max_pages} allowed",
            pages.len()
        )));
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
