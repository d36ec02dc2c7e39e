#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input (`make fuzz`; not part of `make test` nor of CI): the
# document parsers (pdf, docx, html, csv, markdown), the LLM client's reader of a streamed
# answer (sse) and a Telegram update from the webhook's body to the handler (telegram). The
# targets are in fuzz/ (a cargo workspace of its own); each runs FUZZ_SECONDS.
#
#   FUZZ_SECONDS=60           time per target
#   FUZZ_TARGETS="pdf sse"    only these targets (default: all of them)
#   FUZZ_TIMEOUT=10           seconds one input may take before it counts as a hang
#   FUZZ_SANITIZER=none       or `address` (below)
#
# Stable Rust only. cargo-fuzz asks for a sanitizer with `-Zsanitizer`, a nightly flag, so by
# default the targets are built with `--sanitizer none`: libFuzzer's coverage instrumentation
# stays, and in safe Rust the bounds and overflow checks (on in these builds) catch most of
# what AddressSanitizer would. FUZZ_SANITIZER=address builds them with AddressSanitizer all
# the same: RUSTC_BOOTSTRAP=1 lets stable rustc take the flag, and the stable toolchain ships
# the runtime. That is a build of its own (fuzz/target/address, half an hour on 2 cores) and
# runs several times slower; it is for the unsafe code in the libraries.
#
# fuzz/corpus/<target> is seeded from tests/fixtures and small samples written here (files
# `seed-*`, rewritten each run), and keeps what the fuzzer adds; fuzz/dictionaries/<target>.dict
# gives libFuzzer the format's tokens (the SSE one found the byte-order-mark panic). Crashes
# and hangs land in fuzz/artifacts/<target>, logs in fuzz/logs. Exits non-zero when any target
# found one.
set -euo pipefail
cd "$(dirname "$0")/.."

note() { printf 'fuzz: %s\n' "$*" >&2; }

ALL_TARGETS=(pdf docx html csv markdown sse telegram)
read -r -a TARGETS <<<"${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
TIMEOUT=${FUZZ_TIMEOUT:-10}
CARGO_FUZZ_VERSION=0.13.2
SANITIZER=${FUZZ_SANITIZER:-none}
TOOLS="$PWD/.tools/cargo-fuzz"
export PATH="$TOOLS/bin:$PATH"
export RUSTC_BOOTSTRAP=1
# Each sanitizer builds everything differently: its own target directory, so that switching
# does not rebuild the other.
BUILD=(--sanitizer "$SANITIZER")
[[ $SANITIZER == none ]] || BUILD+=(--target-dir "fuzz/target/$SANITIZER")

# --- tools ------------------------------------------------------------------------------------

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    note "installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/cargo-fuzz (about a minute)"
    cargo install --quiet --locked --root "$TOOLS" cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
# libfuzzer-sys compiles libFuzzer itself, which is C++.
if ! command -v c++ >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        note "installing g++ (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
    else
        note "no C++ compiler (c++) found: libFuzzer needs one"
        exit 1
    fi
fi
command -v python3 >/dev/null 2>&1 || { note "python3 is needed to write the seeds"; exit 1; }

# --- seeds ------------------------------------------------------------------------------------

for target in "${ALL_TARGETS[@]}"; do mkdir -p "fuzz/corpus/$target"; done
for fixture in tests/fixtures/*.pdf; do cp "$fixture" "fuzz/corpus/pdf/seed-$(basename "$fixture")"; done
for fixture in tests/fixtures/*.html; do cp "$fixture" "fuzz/corpus/html/seed-$(basename "$fixture")"; done
python3 - <<'PYTHON'
import io, json, zipfile, zlib
from pathlib import Path

corpus = Path("fuzz/corpus")

def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    (corpus / target / f"seed-{name}").write_bytes(data)

# PDF: small documents with correct cross-reference tables (the real ones are large): pages of
# text, a compressed content stream, a drawing (form XObject) that draws text, a font whose
# codes map to ligatures and one with a ToUnicode map, a nested page tree.
def pdf(objects):
    out, offsets = b"%PDF-1.5\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        body = body.encode("latin-1") if isinstance(body, str) else body
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010} 00000 n \n" for offset in offsets).encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n"
            "%%EOF\n").encode()
    return out

def stream(content, compress=False, extra=""):
    content = content.encode("latin-1") if isinstance(content, str) else content
    if compress:
        content, extra = zlib.compress(content), extra + " /Filter /FlateDecode"
    return f"<< /Length {len(content)}{extra} >>\nstream\n".encode() + content + b"\nendstream"

FONT = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
def page(contents, resources="/Font << /F1 3 0 R >>", parent=2):
    return (f"<< /Type /Page /Parent {parent} 0 R /Contents {contents} 0 R "
            f"/Resources << {resources} >> /MediaBox [0 0 595 842] >>")

text = lambda words: f"BT /F1 18 Tf 72 760 Td ({words}) Tj 0 -24 Td (Second   line) Tj ET"
seed("pdf", "two-pages.pdf", pdf([
    "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R 7 0 R] /Count 2 >>",
    FONT, stream(text("Alpha page one")), page(4), stream(text("Beta page two")), page(6)]))
seed("pdf", "compressed-and-drawing.pdf", pdf([
    "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [5 0 R] /Count 1 >>", FONT,
    stream(text("Compressed text") + " /X1 Do", compress=True),
    page(4, "/Font << /F1 3 0 R >> /XObject << /X1 6 0 R >>"),
    stream("BT /F1 12 Tf 10 10 Td (Inside a drawing) Tj ET", compress=True,
           extra=" /Type /XObject /Subtype /Form /BBox [0 0 300 100] "
                 "/Resources << /Font << /F1 3 0 R >> >>")]))
cmap = ("/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Fuzz def "
        "1 begincodespacerange <00> <FF> endcodespacerange 2 beginbfchar <41> <00E9> "
        "<42> <4E16> endbfchar endcmap CMapName currentdict /CMap defineresource pop end end")
seed("pdf", "fonts-and-page-tree.pdf", pdf([
    "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 2 >>",
    "<< /Type /Pages /Parent 2 0 R /Kids [6 0 R 8 0 R] /Count 2 >>",
    "<< /Type /Font /Subtype /Type1 /BaseFont /Times-Roman /Encoding << /Type /Encoding "
    "/BaseEncoding /WinAnsiEncoding /Differences [1 /fi /fl] >> >>",
    stream("BT /F1 14 Tf 72 760 Td (\\001nd the \\002ow) Tj ET"),
    page(5, "/Font << /F1 4 0 R >>", parent=3),
    stream("BT /F1 14 Tf 72 760 Td (AB) Tj ET"),
    page(7, "/Font << /F1 9 0 R >>", parent=3),
    "<< /Type /Font /Subtype /Type1 /BaseFont /Courier /ToUnicode 10 0 R >>",
    stream(cmap)]))

# DOCX: a title, a heading by a localised style, tabs and breaks, a deletion, a nested table.
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
def docx(document, styles=None):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml",
                         '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                         'package/2006/content-types"><Default Extension="xml" '
                         'ContentType="application/xml"/></Types>')
        archive.writestr("word/document.xml", document)
        if styles:
            archive.writestr("word/styles.xml", styles)
    return buffer.getvalue()

cell = lambda text: f"<w:tc><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:tc>"
body = (
    '<w:p><w:pPr><w:pStyle w:val="Title"/></w:pPr><w:r><w:t>Handbook</w:t></w:r></w:p>'
    '<w:p><w:r><w:t xml:space="preserve">Welcome to </w:t></w:r><w:r><w:t>Acme &amp; Co.</w:t></w:r></w:p>'
    '<w:p><w:pPr><w:pStyle w:val="berschrift1"/></w:pPr><w:r><w:t>Holidays</w:t></w:r></w:p>'
    '<w:p><w:r><w:t>Name</w:t><w:tab/><w:t>Days</w:t><w:br/><w:t>Line</w:t></w:r>'
    '<w:del w:id="1"><w:r><w:delText>gone</w:delText></w:r></w:del></w:p>'
    f'<w:tbl><w:tr>{cell("Region")}{cell("Days")}</w:tr><w:tr>{cell("Europe")}'
    f'<w:tc><w:tbl><w:tr>{cell("25")}{cell("30")}</w:tr></w:tbl></w:tc></w:tr></w:tbl>'
    '<w:p><w:pPr><w:outlineLvl w:val="1"/></w:pPr><w:r><w:t>Contact &#169;</w:t></w:r></w:p>'
)
document = f'<?xml version="1.0"?><w:document xmlns:w="{W}"><w:body>{body}</w:body></w:document>'
styles = (f'<?xml version="1.0"?><w:styles xmlns:w="{W}"><w:style w:styleId="berschrift1">'
          '<w:name w:val="heading 1"/></w:style></w:styles>')
seed("docx", "handbook.docx", docx(document, styles))
seed("docx", "plain.docx", docx(f'<w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>Hi</w:t>'
                                '</w:r></w:p></w:body></w:document>'))

seed("html", "small.html",
     '<!DOCTYPE html><html><head><meta charset="utf-8"><title>T</title><style>p{}</style>'
     '<script>alert(1)</script></head><body><nav><a href="/">Home</a></nav><h1>Title</h1>'
     '<p>Some <b>bold</b> text &amp; more.</p><h2>Part</h2><ul><li>one</li><li>two</li></ul>'
     '<table><tr><th>a</th><td>1</td></tr></table><pre>code</pre></body></html>')
seed("html", "latin1.html",
     b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
     b'</head><body><p>Caf\xe9 cr\xe8me</p></body></html>')

seed("csv", "comma.csv", "name,days,note\nAda,25,\"quoted, with comma\"\nBob,30,\"two\nlines\"\n")
seed("csv", "semicolon.csv", "Region;Days off\nEurope;25\nAsia;20\n")
seed("csv", "tabs.csv", "a\tb\n1\t2\n")
seed("csv", "windows-1252.csv", b"Stadt;Stra\xdfe\nK\xf6ln;Hauptstra\xdfe\n")
seed("csv", "utf16.csv", "\ufeffname,city\nZo\u00eb,Z\u00fcrich\n".encode("utf-16-le"))

seed("markdown", "guide.md",
     "# Guide\n\nIntro *text* with a [link](http://x).\n\n## Lists\n\n- one\n  - nested\n"
     "1. first\n\n> quote\n> > deeper\n\n```rust\nfn main() {}\n```\n\n| a | b |\n|---|---|\n"
     "| 1 | 2 |\n\n<div><p>raw <b>html</b></p><script>x()</script></div>\n\nSetext\n===\n")
seed("markdown", "empty-heading.md", "#\n\n---\n\n   \n")

# SSE: the first byte is where the network cuts the body (0: whole), then the body.
def sse(cut, events):
    return bytes([cut]) + "".join(f"data: {event}\n\n" for event in events).encode()

chunk = lambda **fields: json.dumps({"id": "c1", "object": "chat.completion.chunk", **fields})
answer = [
    chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
    chunk(choices=[{"index": 0, "delta": {"content": "Hel"}}]),
    chunk(choices=[{"index": 0, "delta": {"content": "lo \u00e9\u4e16"}}]),
    chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    chunk(choices=[], usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}),
    "[DONE]",
]
seed("sse", "answer", sse(0, answer))
seed("sse", "answer-in-pieces", sse(5, answer))
seed("sse", "error-mid-answer", sse(0, answer[:2] + [json.dumps({"error": {"message": "overloaded"}})]))
seed("sse", "crlf-comments", b"\x07: keep-alive\r\n\r\nevent: message\r\nid: 1\r\n"
     + f"data: {answer[1]}\r\n\r\ndata: [DONE]\r\n\r\n".encode())
seed("sse", "cut", sse(3, answer[:3]))

# Telegram: updates as the Bot API sends them (tests/integration/fake_telegram.rs).
user = {"id": 42, "is_bot": False, "first_name": "Ada", "last_name": "L", "username": "ada",
        "language_code": "en"}
private = {"id": 42, "type": "private", "first_name": "Ada", "username": "ada"}
group = {"id": -1001234, "type": "supergroup", "title": "Team"}
bot = {"id": 777000111, "is_bot": True, "first_name": "Acme", "username": "acme_help_bot"}
def message(update_id, chat, **fields):
    return {"update_id": update_id, "message": {"message_id": update_id, "from": user,
            "chat": chat, "date": 1700000000, **fields}}
updates = {
    "text": message(1, private, text="How many days off do I get?"),
    "start": message(2, private, text="/start",
                     entities=[{"type": "bot_command", "offset": 0, "length": 6}]),
    "group-mention": message(3, group, text="@acme_help_bot what is the policy? \ud83d\ude00",
                             entities=[{"type": "mention", "offset": 0, "length": 14}]),
    "group-reply": message(4, group, text="and Asia?", reply_to_message={
        "message_id": 3, "from": bot, "chat": group, "date": 1700000000, "text": "25 days"}),
    "edited": {"update_id": 5, "edited_message": {"message_id": 1, "from": user, "chat": private,
               "date": 1700000000, "edit_date": 1700000060, "text": "How many days?"}},
    "callback-query": {"update_id": 6, "callback_query": {"id": "4200000006", "from": user,
        "message": {"message_id": 1, "from": bot, "chat": private, "date": 1700000000,
                    "text": "Choose:", "reply_markup": {"inline_keyboard": [[
                        {"text": "Yes", "callback_data": "yes"}]]}},
        "chat_instance": "-42", "data": "yes"}},
    "photo": message(7, private, photo=[
        {"file_id": "AgACAgIAAxkBAAIB7x0", "file_unique_id": "AQAD7x0", "file_size": 1312,
         "width": 90, "height": 67},
        {"file_id": "AgACAgIAAxkBAAIB7x1", "file_unique_id": "AQAD7x1", "file_size": 61877,
         "width": 800, "height": 600}], caption="our office"),
}
for name, update in updates.items():
    seed("telegram", f"{name}.json", json.dumps(update))
# Escapes as Telegram writes them (non-ASCII as \uXXXX, a typed NUL as \u0000).
seed("telegram", "escaped.json", json.dumps(message(8, private, text="Z\u00fcrich \x00 \ud83d\ude00"),
                                            ensure_ascii=True))
PYTHON

# --- build and run ------------------------------------------------------------------------------

note "building the targets (the first build compiles the platform with coverage instrumentation: long)"
cargo fuzz build "${BUILD[@]}"

mkdir -p fuzz/logs
# The real PDFs and HTML pages are a few hundred KB: whole, a run takes a tenth of a second or
# more. Those two targets spend half their time on inputs at full size (every page read) and
# half with inputs cut to 64 KB (thousands of runs a second; libFuzzer cuts them in memory).
passes_of() {
    case $1 in
        pdf | html) echo "full 65536" ;;
        *) echo "full" ;;
    esac
}

failed=()
summary=()
for target in "${TARGETS[@]}"; do
    read -r -a passes <<<"$(passes_of "$target")"
    seconds=$((SECONDS_PER_TARGET / ${#passes[@]}))
    ((seconds > 0)) || seconds=1 # (libFuzzer reads 0 as no limit)
    executions=0
    speeds=()
    status=0
    log="fuzz/logs/$target.log"
    : >"$log"
    for pass in "${passes[@]}"; do
        note "$target: $seconds s$([[ $pass == full ]] || echo ", inputs up to $pass bytes")"
        options=()
        [[ $pass == full ]] || options+=(-max_len="$pass")
        [[ -f fuzz/dictionaries/$target.dict ]] && options+=(-dict="fuzz/dictionaries/$target.dict")
        cargo fuzz run "${BUILD[@]}" "$target" "fuzz/corpus/$target" -- \
            -max_total_time="$seconds" -timeout="$TIMEOUT" -rss_limit_mb=2048 \
            -print_final_stats=1 "${options[@]}" >>"$log" 2>&1 || status=$?
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        executions=$((executions + ${runs:-0}))
        speeds+=("$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)")
        [[ $status -eq 0 ]] || break
    done
    units=$(find "fuzz/corpus/$target" -type f | wc -l)
    if [[ $status -eq 0 ]]; then
        outcome="no crash or hang"
    else
        found=$(grep -m1 -E 'deadly signal|ERROR: libFuzzer|panicked at' "$log" || echo "exit $status")
        outcome="FOUND: $found (see $log, fuzz/artifacts/$target)"
        failed+=("$target")
    fi
    summary+=("$(printf '%-9s %4s s %10s runs  %-13s %6s in corpus  %s' "$target" \
        "$SECONDS_PER_TARGET" "$executions" "$(IFS=/; echo "${speeds[*]}")/s" "$units" "$outcome")")
done

printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    note "crashes or hangs in: ${failed[*]}"
    exit 1
fi
