//! Markdown: blocks, headings, lists, tables and code; raw HTML blocks read as HTML.

use super::html::parse_html;
use super::{ParseError, ParsedDocument, SectionBuilder, decode_text, normalise_line_endings};

pub(super) fn parse_markdown(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
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
