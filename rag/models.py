"""The typed values passed between pipeline stages: Paper -> Chunk -> Hit -> Answer.

Plain frozen dataclasses with no behaviour beyond formatting; no I/O happens here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def stable_id(*parts: str, length: int = 16) -> str:
    """A short content hash, stable across runs and machines."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:length]


NOT_EVIDENCE = frozenset({"references", "acknowledgements"})


@dataclass(frozen=True)
class Section:
    """A part of a paper's text, from character `start` to the next section's start.

    `name` is the heading as a reader cites it ("3.2 Experiments", "Abstract"). `kind` is one of
    front (title block before the first heading), abstract, body, acknowledgements, references,
    appendix. References and acknowledgements are kept and searchable but are not evidence for
    an answer (see `Chunk.is_evidence`).
    """

    start: int
    name: str
    kind: str = "body"


@dataclass(frozen=True)
class Paper:
    """One paper (or one topic section of a blog post) with the metadata a reader cites.

    `text` is the body a reader can check: abstract, notes, or the whole document. `page_starts`
    (PDFs only) holds the character offset in `text` where each page begins, page 1 first.

    PDFs also carry a parse report: `pages` (page count), `sections` (the headings found, in
    order, with where each starts in `text`) and `warnings` (e.g. "no authors found on the
    first page", "little text", "garbled text"). `section` is a different thing: the topic
    section of a blog post that a record belongs to.
    """

    id: str
    title: str
    source: str
    text: str
    authors: tuple[str, ...] = ()
    venue: str | None = None
    year: int | None = None
    url: str | None = None
    tldr: str | None = None
    section: str | None = None
    kind: str = "paper"
    page_starts: tuple[int, ...] = ()
    pages: int | None = None
    sections: tuple[Section, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def venue_year(self) -> str:
        return " ".join(str(x) for x in (self.venue, self.year) if x)

    def page_at(self, offset: int) -> int | None:
        """1-based page holding character `offset`, or None when pages are unknown."""
        if not self.page_starts:
            return None
        page = 1
        for i, start in enumerate(self.page_starts):
            if start <= offset:
                page = i + 1
        return page

    def to_dict(self, with_text: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "authors": list(self.authors),
            "venue": self.venue,
            "year": self.year,
            "url": self.url,
            "tldr": self.tldr,
            "section": self.section,
            "kind": self.kind,
            "source": self.source,
        }
        if self.pages is not None or self.sections or self.warnings:
            d["pages"] = self.pages
            d["sections"] = [s.name for s in self.sections]
            d["warnings"] = list(self.warnings)
        if with_text:
            d["text"] = self.text
        return d


@dataclass(frozen=True)
class Chunk:
    """A passage of one paper, sized for the embedding model, with its citation attached."""

    id: str
    paper: Paper
    index: int
    text: str
    page: int | None = None
    section: str | None = None  # the heading of the part of the paper it is from ("3.2 Results")
    section_kind: str = "body"  # Section.kind: front, abstract, body, acknowledgements, ...

    @property
    def is_evidence(self) -> bool:
        """False for references and acknowledgements: stored and searchable, but an answer
        should not cite them as support for a claim."""
        return self.section_kind not in NOT_EVIDENCE

    @property
    def embed_text(self) -> str:
        """What is embedded and searched: the title first, so every chunk knows its paper, then
        the section heading when there is one."""
        head = f"{self.paper.title}\n" + (f"{self.section}\n" if self.section else "")
        return head + self.text

    @property
    def where(self) -> str:
        """"p. 4, §3.2 Experiments": page and section, as far as they are known."""
        parts = [f"p. {self.page}"] if self.page is not None else []
        if self.section:
            numbered = self.section[:1].isdigit() or re.match(r"^[A-Z](\.\d+)*\s", self.section)
            parts.append(f"§{self.section}" if numbered else self.section)
        return ", ".join(parts)

    @property
    def citation(self) -> str:
        where = f"{self.paper.source}"
        if self.where:
            where += f", {self.where}"
        vy = self.paper.venue_year
        return f"{self.paper.title}" + (f" ({vy})" if vy else "") + f" — {where}"


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the ranks that produced it."""

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    lexical_rank: int | None = None

    @property
    def paper(self) -> Paper:
        return self.chunk.paper


@dataclass
class SentenceCheck:
    """One answer sentence and whether its cited passages support it."""

    text: str
    citations: list[int]
    verified: bool
    reason: str = ""


@dataclass
class Answer:
    """What the chain returns: the text, the numbered sources it cites, and how it got there."""

    question: str
    text: str
    sources: list[Hit]
    abstained: bool = False
    citations: list[int] = field(default_factory=list)
    sentences: list[SentenceCheck] = field(default_factory=list)
    backend: str = "extractive"
    standalone_question: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def group_by_paper(chunks: Iterable[Chunk]) -> dict[str, list[Chunk]]:
    """Paper id -> its chunks, in reading order (chunk index)."""
    out: dict[str, list[Chunk]] = {}
    for c in sorted(chunks, key=lambda c: c.index):
        out.setdefault(c.paper.id, []).append(c)
    return out
