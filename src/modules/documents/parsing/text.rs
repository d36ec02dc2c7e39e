//! Plain text and CSV (rows as `header: value; ...` lines, in sections of rows).

use serde_json::json;

use super::{
    ParseError, ParsedDocument, decode_text, normalise_line_endings, single_line, single_section,
    tidy,
};

/// Rows of a CSV file per section: big enough for context, small enough to cite.
const CSV_ROWS_PER_SECTION: usize = 50;

pub(super) fn parse_text(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let decoded = decode_text(bytes, false);
    Ok(ParsedDocument {
        sections: single_section(tidy(&decoded.text)),
        metadata: decoded.metadata(),
    })
}

pub(super) fn parse_csv(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
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
