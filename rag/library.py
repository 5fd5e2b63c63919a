"""The library: an in-memory view of the store, every chunk grouped by paper, plus the BM25 index.

`Library.load` reads the store once; `rag.retrieval.Retriever` decides when to load a new one
(when the store changes) and searches it, and `rag.query` reads its metadata to understand a
question. This module does not search, rank or watch the store for changes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from rag.lexical import LexicalIndex, refresh_lexical
from rag.models import Chunk, Paper
from rag.settings import Settings
from rag.store import ChunkStore


@dataclass
class Library:
    """An in-memory view of the store: every chunk, grouped by paper, plus the BM25 index."""

    chunks: dict[str, Chunk]
    by_paper: dict[str, list[Chunk]]
    papers: dict[str, Paper]
    lexical: LexicalIndex
    fingerprint: str
    sources_with_papers: dict[str, bool] = field(default_factory=dict)
    store: ChunkStore | None = None  # the store it was read from, searched with it

    @classmethod
    def load(cls, store: ChunkStore, settings: Settings) -> Library:
        lexical = refresh_lexical(store, settings)
        chunks = {c.id: c for c in store.chunks()}
        by_paper: dict[str, list[Chunk]] = defaultdict(list)
        for c in chunks.values():
            by_paper[c.paper.id].append(c)
        for cs in by_paper.values():
            cs.sort(key=lambda c: c.index)
        papers = {pid: cs[0].paper for pid, cs in by_paper.items()}
        with_papers = {p.source: True for p in papers.values() if p.kind != "document"}
        return cls(chunks, dict(by_paper), papers, lexical, lexical.fingerprint,
                   sources_with_papers=with_papers, store=store)
