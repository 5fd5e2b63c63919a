"""Plain-text conference notes with a table of contents (e.g. a blog post on ICLR 2020 papers).

Layout: a few intro paragraphs, then a table of contents whose lines start with a space (topic
names and some paper titles, flattened), then the body, where topic names and paper titles are
bare lines and the notes follow, list items again starting with a space.

The table of contents does not list every paper, so the body decides:

* a line that is a TOC entry and is directly followed by a heading-like line is a *topic*;
* the line right after a topic, any other TOC entry, and any line that looks like a paper title
  (short, no sentence punctuation, no formula or URL; "Name: Subtitle" only when the subtitle is
  in Title Case) starts a *paper*;
* every other line is a note of the current paper.

Records: one per paper (kind "paper", section = its topic, text = all its notes, list items as
"- item"), plus one "Introduction" record (kind "document") holding the intro and the table of
contents. Every body line lands in exactly one record; nothing is dropped or repeated. Venue and
year are fixed to ICLR 2020 (the post never states the year); it does not resolve the papers'
authors, which the notes do not give.
"""

from __future__ import annotations

import re

from rag.models import Paper
from rag.parsers.common import Draft, finish, fold

VENUE, YEAR = "ICLR", 2020
_MIN_TOC = 5
_MAX_HEADING = 150
_BAD_END = ".:;,!?"


def detect(text: str) -> bool:
    parts = _split(text.split("\n"))
    if parts is None:
        return False
    header, toc, body = parts
    bare = {fold(line) for line in body if line and not line[0].isspace()}
    found = sum(1 for entry in toc if entry in bare)
    return found >= 0.8 * len(toc) and "ICLR" in " ".join(header)


def parse(text: str, source: str) -> list[Paper]:
    lines = text.split("\n")
    parts = _split(lines)
    if parts is None:
        return []
    header, toc, body = parts
    drafts = [_intro(header, toc)]
    drafts.extend(_papers(body, set(toc)))
    for d in drafts:
        d.venue, d.year = VENUE, YEAR
    return finish(drafts, source)


def _split(lines: list[str]) -> tuple[list[str], list[str], list[str]] | None:
    """(intro lines, TOC entries, body lines), or None when there is no table of contents."""
    i = 0
    while i < len(lines) and (not lines[i].strip() or not lines[i][0].isspace()):
        i += 1
    start = i
    while i < len(lines) and lines[i][:1].isspace() and lines[i].strip():
        i += 1
    toc = [fold(x) for x in lines[start:i]]
    if len(toc) < _MIN_TOC or start == 0 or any(len(x) > _MAX_HEADING for x in toc):
        return None
    return lines[:start], toc, lines[i:]


def _intro(header: list[str], toc: list[str]) -> Draft:
    text = "\n\n".join(x.strip() for x in header if x.strip())
    text += "\n\nContents:\n" + "\n".join(f"- {entry}" for entry in toc)
    return Draft(title="Introduction", text=text, kind="document", section="Introduction")


def _papers(body: list[str], toc: set[str]) -> list[Draft]:
    rows = [line for line in body if line.strip()]
    drafts: list[Draft] = []
    topic: str | None = None
    after_topic = False
    notes: list[str] = []
    for i, line in enumerate(rows):
        nxt = rows[i + 1] if i + 1 < len(rows) else ""
        if fold(line) in toc and _heading_like(nxt) and not line[0].isspace():
            topic, after_topic = fold(line), True
            continue
        if after_topic or (not line[0].isspace() and (fold(line) in toc or _title_like(line))):
            _close(drafts, notes)
            drafts.append(Draft(title=fold(line), section=topic))
            after_topic, notes = False, []
            continue
        notes.append(f"- {line.strip()}" if line[0].isspace() else line.strip())
    _close(drafts, notes)
    return drafts


def _close(drafts: list[Draft], notes: list[str]) -> None:
    """Give the open paper its notes (notes before any paper would be lost, so they need one)."""
    if not notes:
        return
    if not drafts:
        drafts.append(Draft(title="Notes", kind="document"))
    drafts[-1].text = "\n".join(notes)


def _heading_like(line: str) -> bool:
    """Loose test for the line after a topic: one short phrase, not a sentence or a formula."""
    s = line.strip()
    if not s or line[0].isspace() or len(s) > _MAX_HEADING or "$" in s or "://" in s:
        return False
    return s[-1] not in _BAD_END.replace("?", "") and not re.search(r"[.!?]\s", s)


def _title_like(line: str) -> bool:
    """Strict test for a paper title in the middle of a topic's notes."""
    s = line.strip()
    if len(s) < 8 or not _heading_like(line) or s[-1] in _BAD_END:
        return False
    if ": " in s:
        return _title_case(s.split(": ", 1)[1])
    return True


def _title_case(words: str) -> bool:
    long_words = [w for w in words.split() if len(w) > 3]
    caps = sum(1 for w in long_words if w[0].isupper())
    return bool(long_words) and caps >= 0.6 * len(long_words)
