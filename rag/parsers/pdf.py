"""PDF papers: title and authors from page 1's layout, the text of every page (with page
offsets), its sections, and a parse report.

Library: PDFium through pypdfium2 (BSD/Apache), chosen by measurement on the eight real papers
of shared/pdfs/real/ (110 pages). Title and full-author-list accuracy use the same layout rules
(`pdf_layout.py`) fed from each library's page-1 glyphs or text runs; times on 2 busy cores:

    library                      text only s/page   page-1 layout s   titles   author lists
    pypdfium2 5.15 (this)             0.008             0.1            8/8        8/8
    pdfplumber 0.11 (pdfminer)        0.40-0.50         0.6-0.9        8/8        7/8
    pypdf 7.1 (text visitor)          0.11              0.2-0.3        8/8        6/8

The whole parse here (text, sections, page-1 layout) takes about 0.035 s per page. pdfplumber
sees the same glyphs (its miss: an affiliation line taken for a name) but is 50 times slower;
pypdf reports text runs, not glyphs, so a spacing accent cannot be put back on its letter and a
name wrapped next to a mark is lost. PDFium also opens AES-encrypted files that need no
password without extra packages, tolerates broken cross-reference tables, and marks line-end
hyphens (U+FFFE) so broken words can be joined safely.
PyMuPDF (AGPL) is not an option.

Text: PDFium's text of each page in its reading order, lines set at an angle to the page's
text (the arXiv side stamp: its identifier becomes the paper's URL) left out, running headers,
footers and page numbers (lines that repeat at the top or bottom of many pages, lone numbers
there) removed, words hyphenated across line ends joined again, ligatures and math letters
folded by NFKC (ﬁ -> fi, 𝑎 -> a). Pages are separated by a blank line and `page_starts` records where each begins, so chunks can cite pages.

Sections: headings are lines in a bigger or bold font (or, when the font is unknown, lines
whose numbering continues the previous heading's) that read "3.2 Experiments", "A Details", or
name a standard part (Abstract, References, Acknowledgements, Appendix). Each gets a kind --
front, abstract, body, acknowledgements, references, appendix -- see `rag.models.Section`.

Title and authors: page 1's glyphs with size, weight and baseline (`pdf_layout.py`); metadata
/Title and /Author only when the page gives nothing, and a metadata title only when it looks
real (not "untitled", not a file name like "paper.dvi"). It does not do OCR: a PDF whose pages
have no text layer is rejected, as are password-protected and corrupt files.

Report: pages, section names and warnings (no authors, little text, garbled text, no
sections) are stored on the paper.
"""

from __future__ import annotations

import ctypes
import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from rag.models import Paper, Section
from rag.parsers.common import Draft, finish, fold, fold_compat, split_authors
from rag.parsers.pdf_layout import Char, front_matter, letters, runs
from rag.textquality import looks_garbled

MAGIC = b"%PDF"
_BAD_META_TITLE = re.compile(r"^(untitled|title|microsoft word\b.*|.*\.(dvi|tex|pdf|docx?|ps))$",
                             re.IGNORECASE)
_BOLD = re.compile(r"bold|black|heavy|demi|semib|cmbx|-b\b|bd\b|\.B\b", re.IGNORECASE)
_PAGE_NUMBER = re.compile(r"^\s*(?:page\s+)?(?:\d{1,4}|[ivxlc]{1,6})(?:\s*(?:of|/)\s*\d{1,4})?\s*$",
                          re.IGNORECASE)
_EDGE_LINES = 3  # running headers and footers sit in the first / last lines of a page
_NAMED = [
    ("abstract", re.compile(r"^abstract$")),
    ("references", re.compile(r"^(references?|bibliography|literature cited|works cited)$")),
    ("acknowledgements", re.compile(r"^acknowledge?ments?$|^funding$")),
    ("appendix", re.compile(r"^(appendix|appendices|supplementary material)\b")),
]
_NUMBERED = re.compile(r"^(?P<num>(?:\d{1,2}|[A-Z])(?:\.\d{1,2}){0,3})\.?\s+(?P<name>\S.{0,100})$")
_RUN_IN_ABSTRACT = re.compile(r"^(abstract)\s*[.:—–-]\s+(?=\S)", re.IGNORECASE)
_MINOR = {"OF", "IN", "ON", "TO", "BY", "AN", "AS", "AT", "OR", "FOR", "AND", "THE", "WITH"}
_SOFT_HYPHEN = re.compile("(?<=[a-z])\ufffe(?=[a-z])")
# A whole line set at this share of the body size or less is small print (footnotes at 8 or 9
# points under 10-point body text, captions, table cells); superscripts alone do not make it so.
SMALL_PRINT = 0.9
_LITTLE_TEXT = 200  # characters per page below which a PDF is probably a scan with stray text


class PdfError(ValueError):
    """The PDF cannot be used; the message says why (the caller adds the file name)."""


@dataclass
class _Line:
    text: str
    size: float = 0.0  # of its first letter (a heading's size)
    bold: bool = False
    largest: float = 0.0  # the largest of a few letters across it (0: unknown)


def parse_pdf(data: bytes, source: str) -> list[Paper]:
    """One paper for the whole PDF; raises PdfError when the file cannot give any text."""
    doc = _open(data)
    try:
        pages = [_page_lines(doc, i) for i in range(len(doc))]
        chars, (top, height) = _first_page_chars(doc)
        meta = _metadata(doc)
        unmapped = _unicode_map_errors(doc)
        url = _arxiv_url(doc)
    finally:
        doc.close()
    pages = _strip_running_lines(pages)
    text, starts, sections = _assemble(pages)
    if not text.strip():
        raise PdfError("has no extractable text; it may be a scanned image (run OCR on it first)")
    spans = runs(chars)
    title, authors = front_matter(spans, top, height, _meta_title(meta))
    title = fold_compat(title) or _meta_title(meta) or _first_line(text) or source
    authors = tuple(fold_compat(a) for a in authors)
    warnings = []
    if not authors:
        authors = _meta_authors(meta)
        warnings.append("no authors found on the first page" + (
            "; taken from the file's metadata" if authors else ""))
    warnings.extend(_text_warnings(text, len(pages), unmapped))
    if not any(s.kind != "front" for s in sections):
        warnings.append("no section headings found")
    draft = Draft(title=title, text=text, authors=authors, url=url, page_starts=tuple(starts),
                  pages=len(pages), sections=tuple(sections), warnings=tuple(warnings))
    return finish([draft], source)


# --- reading the file ---------------------------------------------------------------------------


def _open(data: bytes) -> Any:
    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise PdfError("is encrypted; save an unprotected copy and index that") from exc
        raise PdfError(f"is not a readable PDF (corrupt or truncated: {exc})") from exc
    if len(doc) == 0:
        doc.close()
        raise PdfError("has no pages")
    return doc


def _page_lines(doc: Any, index: int) -> list[_Line]:
    """The page's lines in reading order, each with the font size and weight of its first
    letter; lines at an angle to most of the page's text are left out."""
    try:
        page = doc[index]
        tp = page.get_textpage()
    except Exception:  # one damaged page should not lose the rest of the paper
        return []
    try:
        raw = tp.get_text_range()
        count = tp.count_chars()
        lines: list[tuple[str, int]] = []
        pos = 0
        for piece in re.split(r"(\r\n|\n|\r)", raw):
            if piece and piece not in "\r\n":
                lines.append((piece, pos))
            pos += len(piece)
        if len(raw) != count:  # glyph indices do not line up with the text: no font facts
            return [_Line(t) for t, _ in lines]
        facts = [_glyph_facts(tp, start + _first_ink(t)) for t, start in lines]
        angles = Counter(round(f[2], 1) for f, (t, _) in zip(facts, lines, strict=True)
                         for _ in range(len(t)))
        main = angles.most_common(1)[0][0] if angles else 0.0
        return [_Line(t, size, bold, _largest(tp, start, t))
                for (t, start), (size, bold, angle) in zip(lines, facts, strict=True)
                if _angle_gap(angle, main) < 0.2]
    finally:
        tp.close()
        page.close()


def _largest(tp: Any, start: int, text: str, samples: int = 5) -> float:
    """The largest font size among a few letters spread over the line: a body line that opens
    with a superscript mark is still body text."""
    inked = [i for i, ch in enumerate(text) if ch.isalnum()]
    if not inked:
        return 0.0
    step = max(1, len(inked) // samples)
    return max(_size(tp, start + i) for i in inked[::step][:samples + 1])


def _first_ink(text: str) -> int:
    return next((i for i, ch in enumerate(text) if ch.isalnum()), 0)


def _angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % (2 * math.pi)
    return min(d, 2 * math.pi - d)


def _glyph_facts(tp: Any, k: int) -> tuple[float, bool, float]:
    """(font size, bold, angle in radians) of glyph `k`."""
    size = _size(tp, k)
    angle = float(pdfium_c.FPDFText_GetCharAngle(tp.raw, k))
    return size, _is_bold(tp, k), max(angle, 0.0)


def _size(tp: Any, k: int) -> float:
    """The glyph's size as printed: the font size scaled by its text matrix (a PDF may set
    size 1 and scale the matrix by 10)."""
    size = float(pdfium_c.FPDFText_GetFontSize(tp.raw, k))
    m = pdfium_c.FS_MATRIX()
    if pdfium_c.FPDFText_GetMatrix(tp.raw, k, ctypes.byref(m)):
        scale = math.hypot(m.c, m.d)
        if scale > 0:
            size *= scale
    return size


def _is_bold(tp: Any, k: int) -> bool:
    if pdfium_c.FPDFText_GetFontWeight(tp.raw, k) >= 600:
        return True
    buf = ctypes.create_string_buffer(128)
    flags = ctypes.c_int()
    n = pdfium_c.FPDFText_GetFontInfo(tp.raw, k, buf, len(buf), ctypes.byref(flags))
    name = buf.raw[: max(n - 1, 0)].decode("utf-8", "replace")
    return bool(_BOLD.search(name)) or bool(flags.value & (1 << 18))  # FontDescriptor ForceBold


def _first_page_chars(doc: Any) -> tuple[list[Char], tuple[float, float]]:
    """Every glyph of page 1 with its box, baseline, size and weight (rotated ones left out),
    and the page's top and height."""
    page = doc[0]
    tp = page.get_textpage()
    try:
        bottom, top = page.get_mediabox()[1::2]
        out: list[Char] = []
        angles: list[float] = []
        x0, x1, y0, y1 = (ctypes.c_double() for _ in range(4))
        ox, oy = ctypes.c_double(), ctypes.c_double()
        for k in range(tp.count_chars()):
            code = pdfium_c.FPDFText_GetUnicode(tp.raw, k)
            ch = chr(code) if 0 < code < 0x110000 else ""
            if ch in "\r\n":
                out.append(Char("\n", 0, 0, 0, 0))
                angles.append(-1.0)
                continue
            pdfium_c.FPDFText_GetCharBox(tp.raw, k, x0, x1, y0, y1)
            pdfium_c.FPDFText_GetCharOrigin(tp.raw, k, ox, oy)
            size = _size(tp, k)
            out.append(Char(ch, x0.value, x1.value, oy.value, size, _is_bold(tp, k)))
            angles.append(max(float(pdfium_c.FPDFText_GetCharAngle(tp.raw, k)), 0.0))
        inked = Counter(round(a, 1) for a, c in zip(angles, out, strict=True)
                        if a >= 0 and c.text.strip())
        main = inked.most_common(1)[0][0] if inked else 0.0
        chars = [c for a, c in zip(angles, out, strict=True) if a < 0 or _angle_gap(a, main) < 0.2]
        return chars, (float(top), float(top - bottom))
    finally:
        tp.close()
        page.close()


def _unicode_map_errors(doc: Any) -> int:
    """Glyphs PDFium could not map to Unicode on the first pages (a sign of garbled text)."""
    errors = 0
    for i in range(min(len(doc), 3)):
        page = doc[i]
        tp = page.get_textpage()
        try:
            errors += sum(pdfium_c.FPDFText_HasUnicodeMapError(tp.raw, k) == 1
                          for k in range(tp.count_chars()))
        finally:
            tp.close()
            page.close()
    return errors


# --- cleaning the text --------------------------------------------------------------------------


def _edge_key(text: str) -> str:
    """A header or footer line with its page number (any digits) blanked out."""
    return re.sub(r"\d+", "#", fold(text).lower())


def _strip_running_lines(pages: list[list[_Line]]) -> list[list[_Line]]:
    """Without running headers and footers: lines in the first or last few lines of a page that
    recur (digits aside) on at least three pages and a third of them; also lone page numbers
    there."""
    seen: Counter[str] = Counter()
    for lines in pages:
        edge = lines[:_EDGE_LINES] + lines[-_EDGE_LINES:]
        seen.update({_edge_key(x.text) for x in edge})
    need = max(3, math.ceil(len(pages) / 3))
    running = {k for k, n in seen.items() if n >= need and k.strip("# ")}
    out = []
    for lines in pages:
        keep = []
        for i, line in enumerate(lines):
            at_edge = i < _EDGE_LINES or i >= len(lines) - _EDGE_LINES
            if at_edge and (_edge_key(line.text) in running or _PAGE_NUMBER.match(line.text)):
                continue
            keep.append(line)
        out.append(keep)
    return out


def _assemble(pages: list[list[_Line]]) -> tuple[str, list[int], list[Section]]:
    """The paper's text, where each page starts, and its sections (with their offsets)."""
    body = _body_size([x for lines in pages for x in lines])
    finder = _HeadingFinder(body)
    parts: list[str] = []
    starts: list[int] = []
    sections: list[Section] = []
    offset = 0
    last_heading: _Line | None = None
    for lines in pages:
        lines = _small_print_last(lines, body)
        if parts:
            parts.append("\n\n")
            offset += 2
        starts.append(offset)
        prev = ""
        for line in lines:
            # PDFium marks a hyphen that ended a line with U+FFFE, and often joins the lines
            text = _SOFT_HYPHEN.sub("", fold_compat(line.text.replace("\x02", "-"))).rstrip()
            if not text.strip():
                continue
            heading = finder.heading(line, text)
            if heading is None and sections and last_heading and _continues_heading(
                    last_heading, line, text, body):
                sections[-1] = replace(sections[-1], name=f"{sections[-1].name} {_display(text)}")
                last_heading = None
                parts.append(text + "\n")
                offset += len(text) + 1
                continue
            last_heading = line if heading else None
            if heading:
                if prev:  # a heading opens a paragraph
                    parts.append("\n")
                    offset += 1
                sections.append(Section(offset, heading[0], heading[1]))
                prev = ""
            elif _dehyphenate(prev, text):  # the previous line ended in a broken word
                parts[-1] = parts[-1][:-2]  # its hyphen and newline
                offset -= 2
            parts.append(text + "\n")
            offset += len(text) + 1
            prev = "" if heading else text
        if parts and parts[-1].endswith("\n"):
            parts[-1] = parts[-1][:-1]
            offset -= 1
    text = "".join(parts).replace("\ufffe", "-")
    if sections and sections[0].start > 0:
        sections.insert(0, Section(0, "Front matter", "front"))
    return text, starts, sections


def _small_print_last(lines: list[_Line], body: float) -> list[_Line]:
    """The page's lines with its small print (footnotes, captions, table cells: whole lines set
    clearly smaller than the body text) moved after the body text. A two-column page reads its
    left column's footnotes before the right column, which splits a sentence running across the
    columns around them ("... uses" [footnote 2] "twelve ... models")."""
    if body <= 0:
        return lines
    def small(x: _Line) -> bool:
        return 0 < x.largest <= SMALL_PRINT * body
    main = [x for x in lines if not small(x)]
    if len(main) == len(lines):
        return lines
    return main + [x for x in lines if small(x)]


def _continues_heading(head: _Line, line: _Line, text: str, body: float) -> bool:
    """`line` is the second line of a long heading: same font as the heading (bold or bigger
    than the body), short, not ending a sentence."""
    loud = line.bold or (body > 0 and line.size >= 1.08 * body)
    same = line.bold == head.bold and abs(line.size - head.size) <= 0.05 * max(head.size, 1)
    return loud and same and len(text) <= 70 and not text.rstrip().endswith(".")


def _dehyphenate(prev: str, text: str) -> bool:
    """`prev` ends in a word broken at the line end and `text` holds its rest ("docu-" +
    "ment"). A hyphen is kept before a capital or digit ("COVID-" + "19", "BERT-" + "Large")."""
    if not prev.endswith(("-", "\ufffe")) or len(prev) < 2:
        return False
    return prev[-2].isalpha() and prev[-2].islower() and text[:1].islower()


def _body_size(lines: list[_Line]) -> float:
    weights: Counter[float] = Counter()
    for x in lines:
        if x.size > 0:
            weights[round(x.size, 1)] += len(x.text)
    return weights.most_common(1)[0][0] if weights else 0.0


class _HeadingFinder:
    """Decides line by line whether a line is a section heading, keeping the numbering seen so
    far: a numbered heading must continue it (1 -> 1.1 -> 2), so numbered list items, table rows
    and wrapped sentences starting with a number are not taken for headings."""

    def __init__(self, body: float) -> None:
        self.body = body
        self.last: tuple[int, ...] = ()
        self.letters: tuple[int, ...] = ()
        self.kind = "body"
        self.seen_abstract = False

    def heading(self, line: _Line, text: str) -> tuple[str, str] | None:
        text = fold(text).rstrip("\ufffe")
        if not 2 <= len(text) <= 110:
            return None
        loud = self._loud(line)
        bare = re.sub(r"^(?:\d{1,2}|[A-Z]|[IVX]{1,4})\.?\s+", "", text).strip().rstrip(".:")
        named = self._named(bare) if (loud or self.body == 0 or bare.isupper()
                                      or bare.istitle()) else None
        if named == "abstract" and (self.last or self.seen_abstract):
            return None  # "Abstract" inside a figure or a later page
        if named:
            self.seen_abstract = self.seen_abstract or named == "abstract"
            self.kind = named if named != "abstract" else "body"
            return (_display(bare), named)
        if _RUN_IN_ABSTRACT.match(text) and (loud or self.body == 0) and not self.seen_abstract:
            self.seen_abstract = True
            self.kind = "body"
            return ("Abstract", "abstract")
        m = _NUMBERED.match(text)
        if not m or not _heading_words(m.group("name")):
            return None
        number = m.group("num")
        if number[0].isalpha():
            return self._lettered(number, m.group("name"), loud)
        parts = tuple(int(p) for p in number.split("."))
        if self.kind in {"references", "appendix"} or not (loud or self.body == 0):
            return None
        if not _continues(self.last, parts):
            return None
        self.last = parts
        self.kind = "body"
        return (f"{number} {_display(m.group('name'))}", "body")

    def _loud(self, line: _Line) -> bool:
        return line.bold or (self.body > 0 and line.size >= 1.08 * self.body)

    def _named(self, bare: str) -> str | None:
        low = bare.lower()
        if len(low.split()) > 5:
            return None
        return next((kind for kind, pattern in _NAMED if pattern.match(low)), None)

    def _lettered(self, number: str, name: str, loud: bool) -> tuple[str, str] | None:
        """Appendix headings "A Details", "B.2 More": only after the references or an appendix
        heading, in a heading font, lettered in order."""
        if not loud or self.kind not in {"references", "appendix"}:
            return None
        parts = (ord(number[0]) - ord("A") + 1, *(int(p) for p in number.split(".")[1:]))
        if not _continues(self.letters, parts):
            return None
        self.letters = parts
        self.kind = "appendix"
        return (f"{number} {_display(name)}", "appendix")


def _continues(prev: tuple[int, ...], cur: tuple[int, ...]) -> bool:
    """`cur` is the next heading number after `prev`: a sibling, a child or a parent's next."""
    if not prev:
        return cur[0] in (0, 1) and all(p == 1 for p in cur[1:])
    for depth in range(len(prev)):
        nxt = (*prev[:depth], prev[depth] + 1)
        if cur[: len(nxt)] == nxt and all(p == 1 for p in cur[len(nxt):]):
            return True
    return cur[: len(prev)] == prev and len(cur) > len(prev) and all(p == 1 for p in cur[len(prev):])


def _heading_words(name: str) -> bool:
    """Reads like a heading: starts with a capital, mostly letters, no sentence punctuation at
    the end, at most 14 words, no number columns (a table row)."""
    name = name.strip()
    words = name.split()
    if not name[:1].isupper() or not 1 <= len(words) <= 14 or name.endswith((",", ";", "=")):
        return False
    if name.endswith(".") and len(words) > 6:
        return False
    return sum(ch.isdigit() for ch in name) <= 2 and letters(name) >= 0.7 * len(name.replace(" ", ""))


def _display(text: str) -> str:
    """ALL-CAPS headings ("2 RELATED WORK") as title case; others as printed."""
    text = fold(text).rstrip(".:")
    if letters(text) > 3 and text.isupper():
        return " ".join(w.lower() if w in _MINOR else w if len(w) <= 2 else w.capitalize()
                        for w in text.split(" "))
    return text


def _text_warnings(text: str, pages: int, unmapped: int) -> list[str]:
    out = []
    per_page = len(text) / max(pages, 1)
    if per_page < _LITTLE_TEXT:
        out.append(f"little text: {int(per_page)} characters per page (scanned pages need OCR)")
    if unmapped > 50 or looks_garbled(text):
        out.append("garbled text: the PDF's fonts do not map many glyphs to letters")
    return out


# "arXiv:2103.15348v2 [cs.CV] 21 Jun 2021" (the side stamp arXiv puts on page 1), or an old-style
# identifier ("arXiv:cs/0112017v1").
_ARXIV_ID = re.compile(r"\barXiv:\s?(\d{4}\.\d{4,5}(?:v\d+)?|[a-z-]+(?:\.[A-Z]{2})?/\d{7}(?:v\d+)?)")


def _arxiv_url(doc: Any) -> str | None:
    """The paper's arXiv address, from the identifier stamped on page 1 (the stamp is left out
    of the text, which it would break in the middle; the address is what a reader wants of it)."""
    try:
        page = doc[0]
        tp = page.get_textpage()
        try:
            raw = tp.get_text_range()
        finally:
            tp.close()
            page.close()
    except Exception:  # a damaged first page: no address, the rest still reads
        return None
    m = _ARXIV_ID.search(raw)
    return f"https://arxiv.org/abs/{m.group(1)}" if m else None


# --- fallbacks --------------------------------------------------------------------------------


def _metadata(doc: Any) -> dict[str, str]:
    try:
        return {f"/{k}": str(v) for k, v in doc.get_metadata_dict().items() if v}
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

