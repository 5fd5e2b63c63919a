"""PDF papers: the text of every page (with page offsets), title and authors from page 1's layout.

Text: pypdf's plain extraction of each page, ligatures spelled out and words hyphenated across
line ends joined again; pages are separated by a blank line and `page_starts` records where each
begins, so chunks can cite pages.

Title and authors come from the first page's *layout* (`pdf_layout.py`: font size, weight and
position of every text run, read through pypdf's text visitor), because many PDFs have no or wrong
metadata. Rotated runs (the arXiv side stamp) are ignored. Titles and names are NFKC-normalised so
math letters such as "𝑎" read as "a".

Metadata /Title and /Author are used only when the page gives nothing, and a metadata title only
when it looks real (not "untitled", not a file name like "paper.dvi"). It does not do OCR: a PDF
whose pages have no text layer is rejected, as are encrypted and corrupt files. It reads neither
sections nor references.
"""

from __future__ import annotations

import io
import logging
import math
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pypdf import PdfReader

from rag.models import Paper
from rag.parsers.common import Draft, finish, fold, split_authors, unligature
from rag.parsers.pdf_layout import Span, front_matter, letters

MAGIC = b"%PDF"
_BAD_META_TITLE = re.compile(r"^(untitled|title|microsoft word\b.*|.*\.(dvi|tex|pdf|docx?|ps))$",
                             re.IGNORECASE)
_BOLD = re.compile(r"bold|black|heavy|demi|medi|semib|cmbx|-b\b|bd\b", re.IGNORECASE)
_HYPHEN = re.compile(r"(?<=[a-z])-\n(?=[a-z])")


class PdfError(ValueError):
    """The PDF cannot be used; the message says why (the caller adds the file name)."""


def parse_pdf(data: bytes, source: str) -> list[Paper]:
    """One paper for the whole PDF; raises PdfError when the file cannot give any text."""
    with _quiet_pypdf():
        reader = _open(data)
        spans: list[Span] = []
        texts = [_page_text(page, spans if i == 0 else None)
                 for i, page in enumerate(reader.pages)]
        meta = _metadata(reader)
        box = reader.pages[0].mediabox
    text, starts = _join_pages(texts)
    if not text.strip():
        raise PdfError("has no extractable text; it may be a scanned image (run OCR on it first)")
    title, authors = front_matter(spans, float(box.top), float(box.height), _meta_title(meta))
    title = _nfkc(title) or _meta_title(meta) or _first_line(text) or source
    authors = tuple(_nfkc(a) for a in authors) or _meta_authors(meta)
    draft = Draft(title=title, text=text, authors=authors, page_starts=tuple(starts))
    return finish([draft], source)


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """pypdf logs warnings about fonts and damaged objects that a user cannot act on."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfError("is encrypted; save an unprotected copy and index that")
        if not reader.pages:
            raise PdfError("has no pages")
        return reader
    except PdfError:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        raise PdfError(f"is not a readable PDF (corrupt or truncated: {exc})") from exc


def _page_text(page: Any, spans: list[Span] | None) -> str:
    """The page's text; when `spans` is given, also collect its runs with font sizes."""
    raw = ""
    if spans is not None:
        try:
            raw = page.extract_text(visitor_text=lambda *a: _visit(spans, *a))
        except Exception:  # an odd text matrix must not cost the page its text
            spans.clear()
            raw = ""
    if not raw:
        try:
            raw = page.extract_text()
        except Exception:  # one damaged page should not lose the rest of the paper
            return ""
    return _HYPHEN.sub("", unligature(raw or ""))


def _visit(spans: list[Span], text: str, cm: list[float], tm: list[float],
           font: Any, size: float) -> None:
    if not text or not text.strip() or not size:
        return
    a, b = tm[0] * cm[0] + tm[1] * cm[2], tm[0] * cm[1] + tm[1] * cm[3]
    c, d = tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3]
    if abs(b) > abs(a) or abs(c) > abs(d):
        return  # rotated text: margin stamps, table headers
    x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
    y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
    name = str(font.get("/BaseFont", "")) if font else ""
    spans.append(Span(x, y, abs(size) * math.hypot(c, d), unligature(text),
                      bold=bool(_BOLD.search(name))))


def _join_pages(texts: list[str]) -> tuple[str, list[int]]:
    parts, starts, offset = [], [], 0
    for t in texts:
        starts.append(offset)
        body = t.strip()
        parts.append(body)
        offset += len(body) + 2
    return "\n\n".join(parts), starts


# --- fallbacks --------------------------------------------------------------------------------


def _metadata(reader: PdfReader) -> dict[str, str]:
    try:
        meta = reader.metadata
        return {str(k): str(v) for k, v in (meta or {}).items() if v is not None}
    except Exception:
        return {}


def _meta_title(meta: dict[str, str]) -> str:
    title = fold(meta.get("/Title", ""))
    if letters(title) < 4 or _BAD_META_TITLE.match(title):
        return ""
    return title


def _meta_authors(meta: dict[str, str]) -> tuple[str, ...]:
    raw = meta.get("/Author", "")
    return tuple(n for n in split_authors(raw) if letters(n) >= 2)


def _first_line(text: str) -> str:
    line = next((fold(x) for x in text.split("\n") if fold(x)), "")
    return line if len(line) <= 150 else ""
