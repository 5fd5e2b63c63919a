"""Files -> papers: read a file, refuse what cannot be read, and pick the parser by content.

`parse_file` checks the file (exists, is a file, not empty, not over `max_bytes`, not binary,
UTF-8 text or a readable PDF with a text layer) and raises `DocumentError` naming the file and
saying how to fix it. The parser is chosen by sniffing the content, never by the file name
(people rename files): PDFs by their `%PDF` magic (or a .pdf suffix), text by asking each format's
`detect(text)` in order -- the five known layouts, then generic Markdown (headings), then plain
text. Each format module exposes `detect(text) -> bool` and `parse(text, source) -> list[Paper]`;
the PDF module exposes `parse_pdf(data, source)` instead, since it needs bytes.

This package does not chunk, embed or index anything.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from types import ModuleType

from rag.errors import DocumentError
from rag.models import Paper
from rag.parsers import (
    iclr2019_search,
    iclr2020_notes,
    iclr2021_list,
    markdown,
    neurips2019_blog,
    neurips2020_list,
    pdf,
    text,
)

__all__ = ["FORMATS", "PARSER_VERSION", "SUPPORTED_SUFFIXES", "ParseLimits", "detect_format",
           "parse_file", "parse_text"]

from rag.parsers.sandbox import ParseLimits, parse_pdf_bounded
from rag.parsers.version import PARSER_VERSION

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".text", ".pdf")
# Most specific first: the first format whose detect() accepts the text parses it.
FORMATS: tuple[ModuleType, ...] = (
    iclr2021_list, iclr2019_search, iclr2020_notes, neurips2019_blog, neurips2020_list,
    markdown, text,
)
_SNIFF = 8192
_MAX_CONTROL_SHARE = 0.01


def parse_file(path: Path, *, max_bytes: int | None = None,
               limits: ParseLimits | None = None) -> list[Paper]:
    """The papers in one file; raises DocumentError (with the file's path) when it is unusable.

    With `limits`, a PDF is read in a child process under those bounds (`rag.parsers.sandbox`;
    the indexer always passes them); without, in this process (for files the caller trusts)."""
    path = Path(path)
    data = _read(path, max_bytes)
    if pdf.MAGIC in data[:1024] or path.suffix.lower() == ".pdf":
        if limits is not None:
            return parse_pdf_bounded(data, path.name, str(path), limits)
        return _parse_pdf(path, data)
    papers = parse_text(_decode(path, data), path.name)
    if not papers:
        raise DocumentError(str(path), "no text could be parsed from it")
    return papers


def detect_format(content: str) -> ModuleType:
    """The format module that will parse `content` (plain text accepts anything non-blank)."""
    return next(fmt for fmt in FORMATS if fmt.detect(content))


def parse_text(content: str, source: str) -> list[Paper]:
    """Papers from already-decoded text; `source` is the file name recorded on each paper."""
    content = content.replace("\r\n", "\n").replace("\r", "\n")
    if not content.strip():
        return []
    result: list[Paper] = detect_format(content).parse(content, source)
    return result


def _read(path: Path, max_bytes: int | None) -> bytes:
    if not path.exists():
        raise DocumentError(str(path), "no such file")
    if not path.is_file():
        raise DocumentError(str(path), "is a directory or special file, not a document")
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise DocumentError(str(path), f"is {_human(size)}, over the {_human(max_bytes)} "
                                "limit; raise RAG_MAX_FILE_MB to index it")
        data = path.read_bytes()
    except PermissionError as exc:
        raise DocumentError(str(path), "cannot be read: permission denied") from exc
    except OSError as exc:
        raise DocumentError(str(path), f"cannot be read: {exc.strerror or exc}") from exc
    if not data:
        raise DocumentError(str(path), "is empty (0 bytes)")
    return data


def _decode(path: Path, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentError(str(path), "is UTF-16 text; re-save it as UTF-8")
    if b"\x00" in data:
        raise DocumentError(str(path), "is a binary file (it contains NUL bytes), not text or "
                            f"PDF; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.start + 1].hex()
        raise DocumentError(str(path), f"is not UTF-8 text (byte 0x{bad} at offset {exc.start}); "
                            "re-save it as UTF-8") from exc
    if not content.strip():
        raise DocumentError(str(path), "contains only white space")
    if _control_share(content[:_SNIFF]) > _MAX_CONTROL_SHARE:
        raise DocumentError(str(path), "looks binary (many control characters), not text")
    return content


def _control_share(sample: str) -> float:
    control = sum(1 for ch in sample
                  if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f\v")
    return control / max(len(sample), 1)


def _parse_pdf(path: Path, data: bytes) -> list[Paper]:
    try:
        return pdf.parse_pdf(data, path.name)
    except pdf.PdfError as exc:
        raise DocumentError(str(path), str(exc)) from exc


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"
