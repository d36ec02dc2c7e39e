//! HTML: the readable text without scripts, styles and page furniture, sections at headings.

use super::{
    ParseError, ParsedDocument, SectionBuilder, append_with_space, decode_text,
    strip_control_characters,
};

/// HTML is rendered this wide so that html2text never re-wraps a paragraph.
const HTML_RENDER_WIDTH: usize = 10_000;

/// html2text prefixes h1–h3 lines with this (control characters are stripped from the input
/// first, so it cannot be forged) to let us split sections at headings.
const HEADING_MARKER: char = '\u{1}';

/// html5ever's tree building is quadratic in nesting depth (20 000 nested `<div>`s take
/// seconds); real pages stay far below this.
const MAX_HTML_NESTING: usize = 2_000;

pub(super) fn parse_html(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
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
