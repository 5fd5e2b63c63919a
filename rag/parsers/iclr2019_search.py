"""Saved result pages of the "Search ICLR 2019" site (full-text search over submissions).

The page opens with a site blurb and a '### "query" has N results' line, then one entry per
result::

    ##### Title
    **tl;dr** one-line summary          (or: No tl;dr =[ (Show abstract))
    (Show abstract)
    *
    abstract lines ...
    *

One record per result: title, `tldr`, and a text of "TL;DR: ..." (when there is one) followed by
the abstract. Venue and year come from the page header ("Search ICLR 2019"). The site blurb before
the results is not a paper and is dropped. Submissions are anonymous, so there are no authors.
"""

from __future__ import annotations

import re

from rag.models import Paper
from rag.parsers.common import Draft, finish, fold, plain

_ENTRY = re.compile(r"^#####\s+(.+)$", re.MULTILINE)
_HEADER = re.compile(r"^#\s*Search\s+([A-Za-z]+)\s*(\d{4})", re.MULTILINE)
_RESULTS = re.compile(r"has\s+(\d+)\s+results?")
_TLDR = re.compile(r"^\*\*tl;dr\*\*\s*(.*)$", re.IGNORECASE)
_NO_TLDR = re.compile(r"^No tl;dr\b", re.IGNORECASE)


def detect(text: str) -> bool:
    return bool(_ENTRY.search(text)) and "(Show abstract)" in text


def expected_count(text: str) -> int | None:
    """The result count the page announces, for checking the parse."""
    m = _RESULTS.search(text)
    return int(m.group(1)) if m else None


def parse(text: str, source: str) -> list[Paper]:
    header = _HEADER.search(text)
    venue = header.group(1).upper() if header else None
    year = int(header.group(2)) if header else None
    matches = list(_ENTRY.finditer(text))
    drafts = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        draft = _entry(m.group(1), text[m.end():end])
        draft.venue, draft.year = venue, year
        drafts.append(draft)
    return finish(drafts, source)


def _entry(title: str, body: str) -> Draft:
    tldr: str | None = None
    abstract: list[str] = []
    in_abstract = False
    for raw in body.split("\n"):
        line = raw.strip()
        if line == "*":
            in_abstract = not in_abstract
        elif in_abstract:
            abstract.append(line)
        elif tl := _TLDR.match(line):
            tldr = fold(tl.group(1)) or None
        elif line and not _NO_TLDR.match(line) and line != "(Show abstract)":
            abstract.append(line)  # stray text outside the block is kept, never lost
    text = fold(" ".join(abstract))
    parts = [f"TL;DR: {tldr}" if tldr else "", text]
    return Draft(title=plain(title), tldr=tldr, text="\n\n".join(p for p in parts if p))
