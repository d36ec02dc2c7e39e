#!/usr/bin/env python3
"""Check the retrieval-evaluation question set (eval/questions.json).

Usage: python3 eval/check_questions.py FIXTURES_DIR [--questions PATH] [--extractor auto|pdftotext|pypdf]

Extracts the text of every document named in questions.json from FIXTURES_DIR:
  * PDF: `pdftotext -enc UTF-8` (poppler-utils) when it is on PATH, otherwise pypdf
    (looked up on sys.path and in /tmp/eval-scratch/py, where it may be pip-installed with
    `pip install --target /tmp/eval-scratch/py pypdf`);
  * HTML: the text nodes of the page (Python's html.parser), without <head>, <script>, <style>.
Both are normalised the same way as the snippets are meant to be matched: ligatures
(U+FB00..U+FB06) unfolded, soft hyphens dropped, no-break spaces made spaces, and every run of
whitespace collapsed to one space.

Verifies the file's structure (ids unique, known documents, at least 10 questions per document,
each evidence snippet already whitespace-normalised and 4-12 words long) and that every snippet
occurs exactly once in its document's normalised text. Prints a summary; exits 1 on any failure.
Python 3.11 standard library only (plus pypdf if pdftotext is missing).
"""

import argparse
import html.parser
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

MIN_QUESTIONS_PER_DOCUMENT = 10
MIN_WORDS, MAX_WORDS = 4, 12
UNFOLD = {
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
    "\ufb05": "st", "\ufb06": "st", "\u00ad": "", "\u00a0": " ",
}


def normalise(text: str) -> str:
    for character, replacement in UNFOLD.items():
        text = text.replace(character, replacement)
    return " ".join(text.split())


class _TextOfHtml(html.parser.HTMLParser):
    SKIPPED = {"head", "script", "style", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIPPED:
            self.skipping += 1
        self.parts.append(" ")  # tags separate words (cells, list items, <br>)

    def handle_endtag(self, tag):
        if tag in self.SKIPPED and self.skipping:
            self.skipping -= 1
        self.parts.append(" ")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def html_text(path: Path) -> str:
    parser = _TextOfHtml()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return "".join(parser.parts)


def pdf_text(path: Path, extractor: str) -> str:
    if extractor in ("auto", "pdftotext") and shutil.which("pdftotext"):
        result = subprocess.run(
            ["pdftotext", "-enc", "UTF-8", str(path), "-"],
            capture_output=True, text=True, check=True,
        )
        return result.stdout
    if extractor == "pdftotext":
        sys.exit("pdftotext is not installed (apt-get install -y poppler-utils)")
    try:
        import pypdf  # noqa: PLC0415
    except ImportError:
        sys.path.insert(0, "/tmp/eval-scratch/py")
        try:
            import pypdf  # noqa: PLC0415
        except ImportError:
            sys.exit("no PDF extractor: install poppler-utils (pdftotext) or pypdf")
    reader = pypdf.PdfReader(str(path))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def document_text(path: Path, extractor: str) -> str:
    if path.suffix.lower() == ".pdf":
        return normalise(pdf_text(path, extractor))
    if path.suffix.lower() in (".html", ".htm"):
        return normalise(html_text(path))
    return normalise(path.read_text(encoding="utf-8", errors="replace"))


def main() -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("fixtures", type=Path, help="directory holding the documents")
    arguments.add_argument(
        "--questions", type=Path, default=Path(__file__).resolve().with_name("questions.json"),
    )
    arguments.add_argument("--extractor", choices=["auto", "pdftotext", "pypdf"], default="auto")
    options = arguments.parse_args()

    data = json.loads(options.questions.read_text(encoding="utf-8"))
    failures: list[str] = []
    for key in ("about", "documents", "questions"):
        if key not in data:
            failures.append(f"missing top-level key {key!r}")
    if failures:
        print("\n".join(failures))
        return 1

    texts: dict[str, str] = {}
    for name, file_name in data["documents"].items():
        path = options.fixtures / file_name
        if not path.is_file():
            failures.append(f"document {name}: {path} not found")
            continue
        texts[name] = document_text(path, options.extractor)

    ids = Counter(question.get("id") for question in data["questions"])
    failures += [f"duplicate id {id_!r}" for id_, count in ids.items() if count > 1]

    per_document: Counter[str] = Counter()
    snippets_checked = 0
    for question in data["questions"]:
        qid = question.get("id", "?")
        for key in ("id", "document", "question", "evidence", "note"):
            if not question.get(key):
                failures.append(f"{qid}: missing or empty {key!r}")
        document = question.get("document")
        if document not in data["documents"]:
            failures.append(f"{qid}: unknown document {document!r}")
            continue
        per_document[document] += 1
        if document not in texts:
            continue
        for snippet in question.get("evidence") or []:
            snippets_checked += 1
            words = len(snippet.split())
            if snippet != " ".join(snippet.split()):
                failures.append(f"{qid}: snippet not whitespace-normalised: {snippet!r}")
            if not MIN_WORDS <= words <= MAX_WORDS:
                failures.append(f"{qid}: snippet has {words} words: {snippet!r}")
            count = texts[document].count(normalise(snippet))
            if count != 1:
                failures.append(f"{qid}: snippet occurs {count} times in {document}: {snippet!r}")

    print(f"questions file: {options.questions}")
    print(f"fixtures: {options.fixtures}")
    for name in data["documents"]:
        status = "ok" if per_document[name] >= MIN_QUESTIONS_PER_DOCUMENT else "TOO FEW"
        print(f"  {name:<14} {per_document[name]:>3} questions  "
              f"({len(texts.get(name, '')):>7} normalised characters)  {status}")
        if per_document[name] < MIN_QUESTIONS_PER_DOCUMENT:
            failures.append(f"{name}: only {per_document[name]} questions")
    print(f"total: {sum(per_document.values())} questions, {snippets_checked} snippets checked")
    if failures:
        print(f"FAILED: {len(failures)} problem(s)")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("OK: every snippet occurs exactly once in its document's normalised text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
