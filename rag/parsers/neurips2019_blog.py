"""A plain-text blog post that comments on conference talks (e.g. V. Zoonekynd's NeurIPS 2019).

The export has no markup. Blocks are separated by blank lines and are of four kinds:

* reference: two lines, a talk/paper title and an author line ("S. Bai et al.", "A. Gaier and
  D. Ha", "(M. Fazlyab et al.)");
* paragraph: prose or a formula;
* heading: a one-line topic name ("Shared weights", "Infinitely deep neural nets");
* link: a one-line talk title without authors, written between paragraphs.

Headings and links look alike; a one-line block is taken as a link when it follows a paragraph
and does not lead into one, or follows a link and leads into a paragraph. The section of a record
is the last heading before it (the export lost a few headings, e.g. the one over "Fairness", whose
records have no section).

Structure decision: the questions people ask name the talks ("Deep equilibrium models"), so there
is one record per *talk* -- a reference or a link (title = talk title, authors from the author
line if any, section = the heading). Its text is everything between the previous talk and this
one (headings and the paragraphs that explain it: the blog explains first, then cites), then the
talk's own lines. A talk that shares its explanation with the one before gets its heading as
context instead of a copy of that paragraph, so no paragraph appears twice. Topic-level records
are not emitted: they would repeat the same paragraphs.

The intro (blog name, date, opening paragraphs up to the last double blank line before the first
heading) is one record of kind "document". The blog footer ("posted at:") is dropped; nothing
else is. Venue and year come from the post title ("NeurIPS 2019"). It does not tell talks from
papers (all are kind "paper") and does not expand "et al.".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.models import Paper
from rag.parsers.common import Draft, finish, fold, split_authors

_DATE_TITLE = re.compile(r"^\w{3}, \d{1,2} \w{3} \d{4}:\s*(.+)$")
_VENUE_YEAR = re.compile(r"\b(NeurIPS|NIPS|ICML|ICLR|CVPR|AAAI|KDD|ACL|EMNLP)\D{0,3}(\d{4})\b")
_AUTHOR_LINE = re.compile(r"^\(?(?:[A-Z]\.(?:[A-Z]\.)*\s?-?)+\s*\S")
_FOOTER = re.compile(r"^posted at:", re.IGNORECASE)
_FORMULA = re.compile(r"[=←→∇∼≽∫|\[\]^]")
_SENTENCE_START = re.compile(r"^(We|I|It|They|You|One|There|This is)\b")
_MAX_SHORT = 120


@dataclass
class _Block:
    lines: list[str]
    gap: int  # blank lines before the block
    kind: str = "text"  # text | ref | short | heading | link

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def detect(text: str) -> bool:
    head = text[:2000].split("\n")
    return (any(_DATE_TITLE.match(x.strip()) for x in head[:6]) and bool(
        re.search(r"^posted at:", text, re.MULTILINE | re.IGNORECASE)
    )) or "Zoonekynd" in text[:200]


def parse(text: str, source: str) -> list[Paper]:
    blocks = _classify(_blocks(text))
    venue, year = _venue_year(blocks)
    start = _intro_end(blocks)
    drafts = [_intro(blocks[:start])] if start else []
    drafts.extend(_talks(blocks[start:]))
    for d in drafts:
        d.venue, d.year = venue, year
    return finish(drafts, source)


def _blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    gap, current = 0, []
    for line in text.split("\n"):
        if line.strip():
            current.append(line.rstrip())
            continue
        if current:
            blocks.append(_Block(current, gap))
            current, gap = [], 0
        gap += 1
    if current:
        blocks.append(_Block(current, gap))
    return [b for b in blocks if not _FOOTER.match(b.lines[0].strip())]


def _classify(blocks: list[_Block]) -> list[_Block]:
    for b in blocks:
        if len(b.lines) == 2 and _is_author_line(b.lines[1]):
            b.kind = "ref"
        elif len(b.lines) == 1 and _is_short(b.lines[0]):
            b.kind = "short"
    for i, b in enumerate(blocks):
        if b.kind == "short":
            prev = blocks[i - 1].kind if i else "start"
            nxt = blocks[i + 1].kind if i + 1 < len(blocks) else "end"
            link = (prev == "text" and nxt != "text") or (prev == "link" and nxt == "text")
            b.kind = "link" if link else "heading"
    return blocks


def _is_author_line(line: str) -> bool:
    s = line.strip()
    return len(s) <= 80 and len(s.split()) <= 12 and bool(_AUTHOR_LINE.match(s))


def _is_short(line: str) -> bool:
    s = line.strip()
    return (len(s) <= _MAX_SHORT and s[-1] not in ".:;!?" and not _FORMULA.search(s)
            and not _SENTENCE_START.match(s))


def _venue_year(blocks: list[_Block]) -> tuple[str | None, int | None]:
    for b in blocks[:4]:
        m = _DATE_TITLE.match(b.lines[0].strip())
        vy = _VENUE_YEAR.search(m.group(1)) if m else None
        if vy:
            name = "NeurIPS" if vy.group(1) == "NIPS" else vy.group(1)
            return name, int(vy.group(2))
    return None, None


def _intro_end(blocks: list[_Block]) -> int:
    """Index of the first block after the intro: the last double blank before the first heading."""
    first = next((i for i, b in enumerate(blocks) if i > 1 and b.kind != "text"), len(blocks))
    breaks = [i for i in range(2, first + 1) if i < len(blocks) and blocks[i].gap >= 2]
    return breaks[-1] if breaks else first


def _intro(blocks: list[_Block]) -> Draft:
    text = "\n\n".join(b.text for b in blocks)
    return Draft(title="Introduction", text=text, kind="document", section="Introduction")


def _talks(blocks: list[_Block]) -> list[Draft]:
    drafts: list[Draft] = []
    section: str | None = None
    pending: list[_Block] = []
    for b in blocks:
        if b.kind == "heading":
            section = fold(b.text)
        if b.kind not in ("ref", "link"):
            pending.append(b)
            continue
        drafts.append(_talk(b, pending, section))
        pending = []
    if pending and drafts:  # trailing prose after the last talk stays with it
        drafts[-1].text += "\n\n" + "\n\n".join(p.text for p in pending)
    elif pending:
        drafts.append(Draft(title=section or "Notes", text="\n\n".join(p.text for p in pending),
                            kind="document", section=section))
    return drafts


def _talk(talk: _Block, pending: list[_Block], section: str | None) -> Draft:
    parts = [p.text for p in pending]
    if section and not any(p.kind == "heading" for p in pending):
        parts.insert(0, section)  # context for a talk that shares the paragraph above it
    parts.append(talk.text)
    authors = _authors(talk.lines[1]) if talk.kind == "ref" else ()
    return Draft(title=fold(talk.lines[0]), text="\n\n".join(parts), authors=authors,
                 section=section)


def _authors(line: str) -> tuple[str, ...]:
    """'(A. Jacot et al. (2018))' -> ('A. Jacot',); 'A. Gaier and D. Ha' -> both names."""
    line = line.strip()
    if line.startswith("(") and line.endswith(")"):
        line = line[1:-1]
    line = re.sub(r"\s*\bet al\b\.?", "", line)
    return split_authors(line)
