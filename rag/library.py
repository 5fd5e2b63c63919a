"""The library: an in-memory view of the store, every chunk grouped by paper, plus the BM25 index.

`Library.load` reads the store once; `Library.changed` follows a change of the store at the cost
of the change (it reads the ids, then only the papers the change touched, and shares everything
else with the library before it). `rag.retrieval.Retriever` decides when to load or change the library (when
the store changes) and searches it, and `rag.query` reads its metadata to understand a question.
This module does not search, rank or watch the store for changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rag.lexical import LexicalIndex, refresh_lexical
from rag.models import Chunk, Paper, group_by_paper
from rag.settings import Settings
from rag.store import ChunkStore, fingerprint_of

KEPT_CHANGES = 8  # changes a library remembers, for readers that missed some of them


@dataclass(frozen=True)
class Change:
    """One change of the library: from the library with fingerprint `base` to `fingerprint`."""

    base: str
    fingerprint: str
    added: list[Chunk]
    removed: list[Chunk]


@dataclass
class Library:
    """An in-memory view of the store: every chunk, grouped by paper, plus the BM25 index.

    `changes` says how it came from earlier libraries (the last `KEPT_CHANGES` changes), so that
    what the answerer derives from the library (IDF, its vocabulary) can follow them instead of
    being rebuilt."""

    chunks: dict[str, Chunk]
    by_paper: dict[str, list[Chunk]]
    papers: dict[str, Paper]
    lexical: LexicalIndex
    fingerprint: str
    sources_with_papers: dict[str, bool] = field(default_factory=dict)
    store: ChunkStore | None = None  # the store it was read from, searched with it
    changes: tuple[Change, ...] = ()

    @classmethod
    def load(cls, store: ChunkStore, settings: Settings) -> Library:
        chunks = {c.id: c for c in store.chunks()}
        lexical = refresh_lexical(store, settings, list(chunks.values()))
        by_paper = group_by_paper(chunks.values())
        papers = {pid: cs[0].paper for pid, cs in by_paper.items()}
        return cls(chunks, by_paper, papers, lexical, lexical.fingerprint,
                   sources_with_papers=_with_papers(papers.values()), store=store)

    def changed(self, store: ChunkStore, settings: Settings) -> Library:
        """The library after `store` changed, reading only the papers the change touched (every
        chunk of them, so metadata a re-parse changed is current too). A change too large for
        the BM25 delta (`rag.lexical.REBUILD_SHARE`), or one that kept every id, loads the
        library whole."""
        ids = store.ids()
        new_ids = ids - self.chunks.keys()
        gone_ids = self.chunks.keys() - ids
        if not new_ids and not gone_ids:
            return Library.load(store, settings)
        touched = ({c.paper.id for c in store.chunks_by_ids(new_ids)}
                   | {self.chunks[cid].paper.id for cid in gone_ids})
        added = store.chunks({"paper_id": {"$in": sorted(touched)}})
        removed = [c for pid in touched for c in self.by_paper.get(pid, [])]
        fingerprint = fingerprint_of(ids)
        lexical = self.lexical.changed(added, {c.id for c in removed}, fingerprint)
        if lexical is None:
            return Library.load(store, settings)
        chunks = dict(self.chunks)
        for c in removed:
            del chunks[c.id]
        chunks.update((c.id, c) for c in added)
        by_paper, papers = dict(self.by_paper), dict(self.papers)
        for pid in touched:
            by_paper.pop(pid, None)
            papers.pop(pid, None)
        for pid, cs in group_by_paper(added).items():
            by_paper[pid], papers[pid] = cs, cs[0].paper
        return Library(chunks, by_paper, papers, lexical, fingerprint,
                       sources_with_papers=_with_papers(papers.values()), store=store,
                       changes=(*self.changes[1 - KEPT_CHANGES:],
                                Change(self.fingerprint, fingerprint, added, removed)))

    def changes_since(self, fingerprint: str | None) -> list[Change] | None:
        """The changes from the library `fingerprint` to this one; None when they are not known
        (it is older than the kept changes, or this one was loaded whole)."""
        if fingerprint == self.fingerprint:
            return []
        for i, change in enumerate(self.changes):
            if change.base == fingerprint:
                return list(self.changes[i:])
        return None


def _with_papers(papers: Iterable[Paper]) -> dict[str, bool]:
    return {p.source: True for p in papers if p.kind != "document"}
