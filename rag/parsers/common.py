"""Helpers shared by the format parsers: the draft record, id assignment and text clean-up.

A parser builds `Draft`s (mutable, no id yet) and hands them to `finish`, which strips markdown
from titles, guarantees a non-empty text, and gives every record its stable id. Nothing here
knows about a particular format or reads files.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from rag.models import Paper, Section, stable_id

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_SPACE = re.compile(r"\s+")
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl",
                            "ﬅ": "ft", "ﬆ": "st"})
# Alphabetic presentation forms (ligatures) and mathematical alphanumeric symbols
_COMPAT = re.compile("[\ufb00-\ufb4f\U0001d400-\U0001d7ff]+")
_AFFILIATION = re.compile(r"\s*\((?:[^()]|\([^()]*\))*\)")
_VENUES = {"iclr": "ICLR", "neurips": "NeurIPS", "nips": "NeurIPS", "icml": "ICML",
           "aaai": "AAAI", "cvpr": "CVPR", "acl": "ACL", "emnlp": "EMNLP"}


@dataclass
class Draft:
    """A record before it gets its id; parsers fill what the document states."""

    title: str
    text: str = ""
    authors: tuple[str, ...] = ()
    url: str | None = None
    tldr: str | None = None
    section: str | None = None
    kind: str = "paper"
    venue: str | None = None
    year: int | None = None
    page_starts: tuple[int, ...] = ()
    pages: int | None = None
    sections: tuple[Section, ...] = ()
    warnings: tuple[str, ...] = ()
    lines: list[str] = field(default_factory=list)  # scratch space while a parser collects text


def fold(text: str) -> str:
    """Runs of white space become one space; ends trimmed."""
    return _SPACE.sub(" ", text).strip()


def plain(text: str) -> str:
    """Markdown inline markup removed: links keep their text, emphasis and heading marks go."""
    text = _HEADING.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    return fold(text.replace("\\", ""))


def unligature(text: str) -> str:
    """Typographic ligatures (ﬁ, ﬂ, ...) spelled out, so words match what people type."""
    return fold_compat(text.translate(_LIGATURES))


def fold_compat(text: str) -> str:
    """Ligatures (ﬁ), math letters (𝑎, 𝐁) and other presentation forms NFKC-folded to plain
    letters; the rest of the text (superscripts, symbols, dashes) is left as printed."""
    return _COMPAT.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), text)


def strip_affiliation(name: str) -> str:
    """'Aitor Lewkowycz (Google)' -> 'Aitor Lewkowycz'; nested or unclosed parentheses handled."""
    return fold(re.sub(r"\s*\([^()]*$", "", _AFFILIATION.sub("", name)))


def split_authors(line: str) -> tuple[str, ...]:
    """An author line split into names, affiliations in parentheses removed.

    Names are separated by ' · ' when the line uses it, else by ',', ';' and 'and' / '&'.
    """
    line = strip_affiliation(plain(line))
    parts = line.split(" · ") if " · " in line else re.split(r"[,;]|\s+(?:and|&)\s+", line)
    return tuple(name for p in parts if (name := fold(p).strip(" .")))


def venue_name(raw: str) -> str:
    """'iclr' -> 'ICLR', 'neurips' -> 'NeurIPS'; unknown names are upper-cased."""
    return _VENUES.get(raw.strip().lower(), raw.strip().upper())


def finish(drafts: Iterable[Draft], source: str) -> list[Paper]:
    """Papers with stable ids; the ordinal tells apart records that share a title in one file.

    A draft with no body gets its title (and authors) as text, so no record is ever empty.
    """
    seen: Counter[str] = Counter()
    papers = []
    for d in drafts:
        title = plain(d.title) or "Untitled"
        text = d.text.strip() or _fallback_text(title, d.authors)
        ordinal = seen[title]
        seen[title] += 1
        papers.append(Paper(
            id=stable_id(source, title, str(ordinal)), title=title, source=source, text=text,
            authors=d.authors, venue=d.venue, year=d.year, url=d.url, tldr=d.tldr,
            section=d.section, kind=d.kind, page_starts=d.page_starts, pages=d.pages,
            sections=d.sections, warnings=d.warnings,
        ))
    return papers


def _fallback_text(title: str, authors: tuple[str, ...]) -> str:
    return title + (f"\nAuthors: {', '.join(authors)}" if authors else "")
