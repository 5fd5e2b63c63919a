"""Generic Markdown: split by headings when the file is a collection of papers, else one record.

The *split level* is the highest heading level, or the next one down when the top level is a
single document title. The file is a *collection* when it has at least three sections at that
level and at least half of them carry entry metadata (an "Authors:", "Abstract:", "TL;DR:",
"URL:" ... label, or a link). Then each section is a record: title = heading (markdown and a
leading "[12]" / "12." number removed), authors / url / tldr / venue+year from labelled lines,
section = the enclosing heading, text = the section body. Text before the first section is a
record of kind "document" when it has any prose. Otherwise the whole file is one record of kind
"document" titled by its first heading.

Headings inside fenced code blocks are ignored; Setext headings (underlined with === or ---) are
not recognised. It does not render Markdown: bodies keep their markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.models import Paper
from rag.parsers import text as plain_text
from rag.parsers.common import Draft, finish, plain, split_authors, venue_name

_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LABEL = re.compile(
    r"^\W*(authors?|abstract|tl;?dr|url|link|paper|pdf|arxiv|venue|conference)\W*:\W*(.*)$",
    re.IGNORECASE,
)
_URL = re.compile(r"https?://[^\s)\]>*]+")
_ENUMERATOR = re.compile(r"^(?:\[\d+\]|\d+[.)])\s+")
_VENUE_YEAR = re.compile(r"([A-Za-z]+)\s*'?(\d{4})")
_MIN_SECTIONS = 3


@dataclass
class _Heading:
    line: int
    level: int
    text: str
    raw: str


def detect(text: str) -> bool:
    return bool(_headings(text.split("\n")))


def parse(text: str, source: str) -> list[Paper]:
    lines = text.split("\n")
    heads = _headings(lines)
    if not heads:
        return plain_text.parse(text, source)
    level = _split_level(heads)
    sections = [h for h in heads if h.level == level]
    bodies = [_body(lines, heads, h) for h in sections]
    if len(sections) >= _MIN_SECTIONS and sum(map(_has_metadata, bodies)) * 2 >= len(bodies):
        return finish(_collection(lines, heads, sections, bodies), source)
    return finish([_whole(lines, heads[0])], source)


def _headings(lines: list[str]) -> list[_Heading]:
    heads, fenced = [], False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := _ATX.match(line)):
            heads.append(_Heading(i, len(m.group(1)), plain(m.group(2)), line))
    return heads


def _split_level(heads: list[_Heading]) -> int:
    top = min(h.level for h in heads)
    tops = [h for h in heads if h.level == top]
    deeper = [h.level for h in heads if h.level > top]
    if len(tops) == 1 and tops[0] is heads[0] and deeper:
        return min(deeper)
    return top


def _body(lines: list[str], heads: list[_Heading], head: _Heading) -> list[str]:
    """Lines under `head` up to the next heading of the same or a higher level."""
    end = next((h.line for h in heads if h.line > head.line and h.level <= head.level),
               len(lines))
    return lines[head.line + 1:end]


def _has_metadata(body: list[str]) -> bool:
    return any(_LABEL.match(x) or _URL.search(x) for x in body)


def _collection(lines: list[str], heads: list[_Heading], sections: list[_Heading],
                bodies: list[list[str]]) -> list[Draft]:
    drafts = []
    preamble = _clean(lines[:sections[0].line])
    if preamble:
        title = heads[0].text if heads[0].line < sections[0].line else "Introduction"
        drafts.append(Draft(title=title, text=preamble, kind="document"))
    for head, body in zip(sections, bodies, strict=True):
        draft = Draft(title=_ENUMERATOR.sub("", head.text), text=_clean(body),
                      section=_parent(heads, head))
        _apply_labels(draft, [head.raw, *body])
        drafts.append(draft)
    return drafts


def _parent(heads: list[_Heading], head: _Heading) -> str | None:
    """The closest heading above `head` with a higher level, unless it is the document title."""
    above = [h for h in heads if h.line < head.line and h.level < head.level]
    if not above or (above[-1] is heads[0] and sum(h.level == heads[0].level for h in heads) == 1):
        return None
    return above[-1].text


def _apply_labels(draft: Draft, body: list[str]) -> None:
    for line in body:
        m = _LABEL.match(line)
        if not m:
            continue
        name, value = m.group(1).lower(), m.group(2)
        if name.startswith("author") and not draft.authors:
            draft.authors = split_authors(value)
        elif name.startswith("tl") and value.strip():
            draft.tldr = plain(value)
        elif name in ("venue", "conference") and (vy := _VENUE_YEAR.search(plain(value))):
            draft.venue, draft.year = venue_name(vy.group(1)), int(vy.group(2))
    if draft.url is None and (url := _URL.search("\n".join(body))):
        draft.url = url.group(0)


def _whole(lines: list[str], head: _Heading) -> Draft:
    body = lines[:head.line] + lines[head.line + 1:]
    draft = Draft(title=head.text, text=_clean(body), kind="document")
    _apply_labels(draft, body[:40])
    draft.url = None  # a link somewhere in a document does not make it the document's address
    return draft


def _clean(lines: list[str]) -> str:
    """Body text with horizontal rules dropped and runs of blank lines collapsed."""
    kept = [x.rstrip() for x in lines if not re.fullmatch(r"\s*([-*_])\1{2,}\s*", x)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()

