"""Paper lists in the "paper digest" Markdown layout (e.g. the ICLR 2021 list).

Each entry looks like::

    ## [200] Title
    **Authors**: *A, B, C*
    **Conference**: *iclr 2021*
    **URL**: [https://...](https://...)
    **Abstract**:
    abstract text ...
    ----

One record per entry: title, authors, venue and year from the Conference line, url, and a text
made of an "Authors:" line followed by the abstract. Navigation links after the last entry are
dropped. It does not read anything outside the entries (no catalog, no other pages).
"""

from __future__ import annotations

import re

from rag.models import Paper
from rag.parsers.common import Draft, finish, fold, plain, split_authors, venue_name

_ENTRY = re.compile(r"^## \[\d+\]\s+(.+)$", re.MULTILINE)
_FIELD = re.compile(r"^\*\*(Authors|Conference|URL|Abstract)\*\*:\s*(.*)$")
_CONFERENCE = re.compile(r"([A-Za-z]+)\s*'?(\d{4})")
_URL = re.compile(r"https?://[^\s)\]]+")


def detect(text: str) -> bool:
    return bool(_ENTRY.search(text)) and "**Authors**:" in text and "**Abstract**:" in text


def parse(text: str, source: str) -> list[Paper]:
    matches = list(_ENTRY.finditer(text))
    drafts = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        drafts.append(_entry(m.group(1), text[m.end():end]))
    return finish(drafts, source)


def _entry(title: str, body: str) -> Draft:
    draft = Draft(title=plain(title))
    abstract: list[str] = []
    in_abstract = False
    for line in body.split("\n"):
        if line.strip() == "----":
            break  # end of entry; what follows the last one is page navigation
        field = _FIELD.match(line.strip())
        if field and not in_abstract:
            in_abstract = _apply_field(draft, field.group(1), field.group(2))
        elif in_abstract:
            abstract.append(line)
    body_text = fold(" ".join(abstract))
    header = f"Authors: {', '.join(draft.authors)}" if draft.authors else ""
    draft.text = "\n\n".join(x for x in (header, body_text) if x)
    return draft


def _apply_field(draft: Draft, name: str, value: str) -> bool:
    """Store one '**Name**: value' field; True when the abstract starts."""
    if name == "Authors":
        draft.authors = split_authors(value)
    elif name == "Conference":
        conf = _CONFERENCE.search(plain(value))
        if conf:
            draft.venue, draft.year = venue_name(conf.group(1)), int(conf.group(2))
    elif name == "URL":
        url = _URL.search(value)
        draft.url = url.group(0) if url else None
    return name == "Abstract"
