"""Title and authors of a paper read from the layout of its first page.

Input: the page's text runs (`Span`: baseline position, effective font size, boldness, text) in
content-stream order, as pypdf's text visitor reports them. Rotated runs are left out by the
caller.

* Title: the largest text in the top half of the page that is clearly bigger than the body text
  and reads like a title (two or more words; a lone logo word or a paper number such as
  "IMECE2023-XXXX" is skipped in favour of the next size down). When the metadata title matches
  one of these candidates (a smaller title under a big journal banner), that one wins. Its
  continuation lines (same size, close below or above) and smaller runs on the same lines and in
  the same column (in-line math, a word in another font) are joined in reading order; raised
  footnote marks (*, †, a), 1) are dropped. When no run is bigger than the body, the first bold
  multi-word line in the top third is used instead.
* Authors: the runs after the title and before the abstract / keywords / introduction, in the
  largest font of that stretch (only its bold runs when names are bold and affiliations are not),
  grouped into lines and split on commas, "and", "&", "·" and wide gaps. A line stops at the
  first piece naming an institution (the rest is its address); pieces that do not look like
  personal names are dropped; ALL-CAPS names are title-cased.

It does not read metadata (see `pdf.py`) and does not look past page 1.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from rag.parsers.common import fold, split_authors

MARKS = "*∗⋆†‡§¶#♯♭•"
_MARK_RUN = re.compile(rf"^[\s\d,()?{re.escape(MARKS)}a-z]{{0,6}}$")
_STOP = re.compile(
    r"^\s*(?:\d+\.?\s*|I\.\s*)?(abstract|a\s?b\s?s\s?t\s?r\s?a\s?c\s?t|summary|keywords|key\s?words"
    r"|index\s+terms|ccs\s+concepts|introduction|contents|nomenclature|highlights"
    r"|zusammenfassung|inhalt|r[ée]sum[ée]|resumen|resumo|sommario|indice|índice|sumário"
    r"|graphical\s+abstract|a\s?r\s?t\s?i\s?c\s?l\s?e\s+i\s?n\s?f\s?o)\b",
    re.IGNORECASE,
)
_INSTITUTION = re.compile(
    r"@|https?:|www\.|\b(univ|universit|institut|department|dept|laborator|lab\b|school|college"
    r"|faculty|center|centre|inc\b|ltd|corp|company|foundation|research|group|hospital|academy|society"
    r"|street|road|avenue|email|e-mail|received|accepted|published|journal|proceedings)",
    re.IGNORECASE,
)
_PARTICLES = {"van", "de", "der", "von", "di", "da", "del", "le", "la", "du", "den", "bin", "y",
              "dos", "das", "ten", "ter"}
_ARTICLES = {"The", "A", "An"}
_LEADING_WORD = re.compile(r"^(?:and\s+|&\s+|(?:[a-z]+\s+)*by\s+)", re.IGNORECASE)
_SIZE_TIERS = 4
_LINE_GAP = 1.8  # title lines are at most this many font sizes apart


@dataclass
class Span:
    """One text run on the page: baseline position, effective font size, boldness, text."""

    x: float
    y: float
    size: float
    text: str
    bold: bool = False
    end: float | None = None  # right edge when the library reports it; else estimated


@dataclass
class Char:
    """One glyph as a PDF library reports it: text, left/right edge, baseline, size, weight."""

    text: str
    x0: float
    x1: float
    y: float
    size: float
    bold: bool = False


def runs(chars: list[Char]) -> list[Span]:
    """Glyphs (in content-stream order) grouped into runs of one size, weight and baseline.

    A run also ends at a wide horizontal gap (more than 1.2 font sizes, the gap between names
    set apart in an author line) or when the next glyph jumps back to the left (a new line).
    Spacing accents printed over a letter (LaTeX's "O\\u{g}uz" is a "g" with a "˘" on top) are
    folded into that letter.
    """
    chars = _combine_accents(chars)
    spans: list[Span] = []
    cur: list[Char] = []

    def flush() -> None:
        text = "".join(c.text for c in cur)
        if text.strip():
            inked = [c for c in cur if c.text.strip()]
            spans.append(Span(inked[0].x0, inked[0].y, inked[0].size, text,
                              bold=inked[0].bold, end=max(c.x1 for c in inked)))
        cur.clear()

    for ch in chars:
        if ch.text in "\r\n":
            flush()
            continue
        inked = [c for c in cur if c.text.strip()]
        if inked and ch.text.strip():
            last = inked[-1]
            ref = max(last.size, ch.size)
            if (abs(ch.size - last.size) > 0.05 * ref or ch.bold != last.bold
                    or abs(ch.y - last.y) > 0.3 * ref or ch.x0 > last.x1 + 1.2 * ref
                    or ch.x0 < last.x0 - 0.5 * ref):
                flush()
        cur.append(ch)
    flush()
    return spans


def _combine_accents(chars: list[Char]) -> list[Char]:
    """A spacing accent (Unicode Sk: ˘ ´ ¨ ...) over a nearby letter becomes a combining mark."""
    out = list(chars)
    drop = set()
    for i, c in enumerate(chars):
        if len(c.text) != 1 or unicodedata.category(c.text) != "Sk":
            continue
        mark = unicodedata.normalize("NFKD", c.text).strip()
        if len(mark) != 1 or not unicodedata.combining(mark):
            continue
        mid = (c.x0 + c.x1) / 2
        for j in range(max(0, i - 4), min(len(chars), i + 5)):
            t = out[j]
            if j != i and t.text.isalpha() and t.x0 - 0.5 <= mid <= t.x1 + 0.5 \
                    and abs(t.y - c.y) <= t.size:
                out[j] = Char(unicodedata.normalize("NFC", t.text + mark), t.x0, t.x1, t.y,
                              t.size, t.bold)
                drop.add(i)
                break
    return [c for i, c in enumerate(out) if i not in drop]


def front_matter(spans: list[Span], top: float, height: float,
                 hint: str = "") -> tuple[str, tuple[str, ...]]:
    """(title, authors) read from page-1 runs; ('', ()) when the layout shows no title.

    `hint` (the metadata title, if any) only picks among the page's own candidates, e.g. the
    title rather than a bigger journal banner; it is never returned itself.
    """
    if not spans:
        return "", ()
    candidates = _titles_by_size(spans, top, height)
    found = next((c for c in candidates if hint and _similar(c[0], hint)), None)
    found = found or (candidates[0] if candidates else _title_by_weight(spans, top, height))
    if not found:
        return "", ()
    title, last, size = found
    # names are smaller than a title found by size; a bold title may share their size
    limit = 0.98 * size if candidates and found in candidates else 1.02 * size
    return title, _authors(spans[last + 1:], limit)


def _similar(a: str, b: str) -> bool:
    wa, wb = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    return bool(wa and wb) and len(wa & wb) >= 0.7 * max(len(wa), len(wb))


def body_size(spans: list[Span]) -> float:
    """The font size carrying most characters on the page."""
    weights: Counter[float] = Counter()
    for s in spans:
        weights[round(s.size, 1)] += len(s.text.strip())
    return weights.most_common(1)[0][0]


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def _titles_by_size(spans: list[Span], top: float, height: float) -> list[tuple[str, int, float]]:
    """Title candidates, largest font first: (text, index of its last run, font size)."""
    body = body_size(spans)
    big = [s for s in spans if s.y >= top - height / 2 and letters(s.text) >= 2
           and s.size >= body * 1.15]
    found = []
    for size in sorted({round(s.size, 1) for s in big}, reverse=True)[:_SIZE_TIERS]:
        anchor = next(s for s in big if round(s.size, 1) == size)
        title, last = _assemble(spans, anchor, anchor.size)
        if _title_like(title):
            found.append((title, last, anchor.size))
    return found


def _title_by_weight(spans: list[Span], top: float, height: float) -> tuple[str, int, float] | None:
    """The first bold line in the top third that reads like a title (not a section heading)."""
    for s in spans:
        if s.bold and s.y >= top - height / 3 and not _STOP.match(s.text):
            title, last = _assemble(spans, s, s.size, bold_only=True)
            if _title_like(title):
                return title, last, s.size
    return None


def _title_like(title: str) -> bool:
    words = [w for w in title.split() if letters(w) >= 2]
    return len(words) >= 2 and len(title) <= 400


def _assemble(spans: list[Span], anchor: Span, size: float,
              bold_only: bool = False) -> tuple[str, int]:
    """The title text around `anchor` and the stream index of its last run."""
    ys = _title_lines([s for s in spans if s.bold or not bold_only], anchor, size)
    members = [(i, s) for i, s in enumerate(spans)
               if (y := _line_of(s, ys, size)) is not None and s.size >= 0.6 * size
               and not (s.y > y + 0.15 * size and _MARK_RUN.match(s.text.strip()))]
    members.sort(key=lambda m: (-(_line_of(m[1], ys, size) or 0), m[1].x))
    members = _same_column(members, anchor, size)
    text, line = "", None
    for _, s in members:
        here = _line_of(s, ys, size)
        piece = s.text.replace("\n", " ")
        if line is not None and here != line:
            text = _next_line(text, piece)
        text, line = text + piece, here
    last = max((i for i, _ in members), default=spans.index(anchor))
    return _clean_title(text), last


def _same_column(members: list[tuple[int, Span]], anchor: Span,
                 size: float) -> list[tuple[int, Span]]:
    """Drop runs that sit on a title line but far to the side (the other column's text)."""
    def end(s: Span) -> float:  # rough right edge: capitals are wider than small letters
        if s.end is not None:
            return s.end
        return s.x + s.size * sum(0.7 if ch.isupper() else 0.5 for ch in s.text)

    ordered = sorted((m for m in members if m[1].y == anchor.y), key=lambda m: m[1].x)
    lo, hi = anchor.x, end(anchor)
    for _, s in ordered:  # grow the anchor's run left and right while the runs touch
        if s.x <= hi + 4 * size and end(s) >= lo - 4 * size:
            lo, hi = min(lo, s.x), max(hi, end(s))
    return [m for m in members if m[1].x <= hi + 4 * size and end(m[1]) >= lo - 4 * size]


def _next_line(text: str, piece: str) -> str:
    """End of one title line before the next: rejoin a hyphenated word, else add a space."""
    text = text.rstrip()
    if re.search(r"[a-z]-$", text) and piece.lstrip()[:1].islower():
        return text[:-1]
    return text + " "


def _title_lines(spans: list[Span], anchor: Span, size: float) -> list[float]:
    """Baselines of the title: the anchor's line plus lines in the same font size (within 8%)
    stacked close to it."""
    ys = [anchor.y]
    big = [s for s in spans if abs(s.size - size) <= 0.08 * size and letters(s.text) >= 1]
    grew = True
    while grew:
        grew = False
        for s in big:
            new_line = all(abs(s.y - y) > 0.5 * size for y in ys)
            near = min(ys) - _LINE_GAP * size <= s.y <= max(ys) + _LINE_GAP * size
            if new_line and near:
                ys.append(s.y)
                grew = True
    return ys


def _line_of(s: Span, ys: list[float], size: float) -> float | None:
    return next((y for y in ys if abs(s.y - y) <= 0.5 * size), None)


def _clean_title(title: str) -> str:
    return fold(title).strip(MARKS + " ,")


def _authors(spans: list[Span], limit: float) -> tuple[str, ...]:
    """Names in the runs after the title, up to the abstract or a run of `limit` size or more."""
    region: list[Span] = []
    for s in spans:
        if _STOP.match(s.text) or s.size >= limit or len(region) >= 160:
            break
        region.append(s)
    named = [s for s in region if letters(s.text) >= 2]
    if not named:
        return ()
    size = _name_size(named)
    chosen = [s for s in region if s.size >= 0.95 * size]
    bold = [s for s in chosen if s.bold and letters(s.text) >= 2]
    if bold and len(bold) < len([s for s in chosen if letters(s.text) >= 2]):
        chosen = [s for s in chosen if s.bold]  # names in bold, affiliations in the same size
    keep = {id(s) for s in chosen}
    names: list[str] = []
    for line in _rejoin_wrapped(_lines(region, keep)):
        names.extend(_names_in(line))
    return tuple(dict.fromkeys(names))[:40]


def _name_size(named: list[Span]) -> float:
    """The font size of the names: the largest size that carries a name-like run.

    Usually the largest text under the title; a few big-lettered affiliation marks or a
    one-word logo do not count, since names have two or more words.
    """
    for size in sorted({round(s.size, 1) for s in named}, reverse=True):
        runs_here = [s for s in named if round(s.size, 1) == size]
        if any(len(_strip_marks(r.text).replace(",", " ").split()) >= 2 for r in runs_here):
            return size
    return max(s.size for s in named)


def _names_in(line: str) -> list[str]:
    """Personal names on one line; after an institution, its address is skipped up to the
    next 'and' ("A, Univ. X, City and B" gives A and B)."""
    names = []
    text = _strip_marks(re.sub(r"\([^()]*\)", "", line))
    for clause in re.split(r"\s+(?:and|&)\s+|\s+·\s+", text):
        for piece in split_authors(clause):
            if _INSTITUTION.search(piece):
                break
            name = _tidy(piece)
            if _name_like(name):
                names.append(name)
    return names


def _lines(region: list[Span], keep: set[int]) -> list[str]:
    """The kept runs grouped into lines. What separates two names becomes a mark ("†"): a
    wide horizontal gap, or a run left out between them (a raised or smaller affiliation mark
    such as "α" or "1")."""
    lines: list[str] = []
    prev: Span | None = None
    skipped = False
    for s in region:
        if id(s) not in keep:
            skipped = skipped or prev is not None
            continue
        if prev is None or abs(s.y - prev.y) > 0.5 * s.size:
            if skipped and lines:  # the previous line ended in a mark
                lines[-1] += " †"
            lines.append(s.text)
        elif skipped or s.x > _end(prev) + 1.2 * s.size:
            lines[-1] += " † " + s.text
        else:
            lines[-1] += s.text
        prev, skipped = s, False
    return [fold(line) for line in lines]


def _rejoin_wrapped(lines: list[str]) -> list[str]:
    """A name broken across two lines of a comma-separated author list ("..., Benjamin Charles
    Germain" / "Lee4, Jacob ...") is joined again: the line separates its names with commas,
    its other names carry marks, its last one has none, and the next line opens with one or two
    words closed by a mark or comma."""
    out: list[str] = []
    for line in lines:
        if out and _wrapped(out[-1], line):
            out[-1] = out[-1] + " " + line
        else:
            out.append(line)
    return out


def _wrapped(prev: str, line: str) -> bool:
    pieces = [p.strip() for p in prev.split(",") if p.strip()]
    if len(pieces) < 2 or not re.search(r"[^\W\d_]$", prev.strip()):
        return False
    if not all(re.search(rf"[{re.escape(MARKS)}\d][^\w]*$", p) or _is_mark_text(p)
               for p in pieces[:-1]):
        return False
    head = re.match(rf"^([^\W\d_][^\s,{re.escape(MARKS)}\d]*(?:\s[^\W\d_][^\s,"
                    rf"{re.escape(MARKS)}\d]*)?)\s*[,{re.escape(MARKS)}\d]", line)
    return head is not None and len(pieces[-1].split()) + len(head.group(1).split()) <= 5


def _is_mark_text(piece: str) -> bool:
    return bool(piece) and all(not ch.isalpha() or ch in MARKS for ch in piece)


def _end(s: Span) -> float:
    """Right edge of a run: as reported, or estimated (capitals are wider than small letters)."""
    if s.end is not None:
        return s.end
    return s.x + 0.6 * s.size * len(s.text)


def _strip_marks(line: str) -> str:
    line = "".join("," if _is_symbol(ch) else ch for ch in line.replace("\n", ", "))
    line = re.sub(rf"[{re.escape(MARKS)}\d]+", ",", line)
    return re.sub(r"\s*,[\s,]*", ", ", line)


def _is_symbol(ch: str) -> bool:
    """Affiliation marks of any kind: ∗ † ‡ ♠ ♢ □ ⋄ and other symbols (not letters, not '.-')."""
    return ch in MARKS or unicodedata.category(ch) in {"So", "Sm", "Sk", "Co"} or ch in "†‡"


def _tidy(name: str) -> str:
    name = _LEADING_WORD.sub("", fold(name))
    name = re.sub(r"\b([A-Z])\.(?=[A-Z][a-z])", r"\1. ", name)  # "B.Benciolini"
    if name.isupper() and letters(name) > 3:
        name = name.title()
    return name


def _name_like(name: str) -> bool:
    words = name.split()
    if not 2 <= len(words) <= 6 or len(name) > 60 or re.search(r"[\d:;!?@/]", name):
        return False
    if not words[0][0].isupper() or not words[-1][0].isupper() or words[0] in _ARTICLES:
        return False
    return all(w[0].isupper() or w.lower() in _PARTICLES for w in words)
