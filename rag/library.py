"""The library: an in-memory view of the store, every chunk grouped by paper, plus the BM25 index.

`Library.load` reads the store once, or, when a snapshot of an earlier library was saved
(`rag.snapshot`), reads that back and only the papers that differ from it; `Library.changed`
follows a change of the store at the cost of the change (it reads the ids, then only the papers
the change touched, and shares everything else with the library before it). `rag.retrieval.Retriever` decides when to load or change the library (when
the store changes) and searches it, and `rag.query` reads its metadata to understand a question.
This module does not search, rank or watch the store for changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rag import snapshot
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
    # What a snapshot saved of the reader and the name index, at the snapshot's fingerprint
    # (one use each: whoever builds them first takes them out; see `take_derived`)
    derived: dict[str, Any] = field(default_factory=dict)
    # The store's change signal (`ChunkStore.signal`) read before this library was: saved with
    # a snapshot, it tells a start that the store has not changed since, without listing it
    signal: tuple[int, str] | None = None

    @classmethod
    def load(cls, store: ChunkStore, settings: Settings,
             signal: tuple[int, str] | None = None) -> Library:
        """The store's library. A saved snapshot (`rag.snapshot`) stands in for reading every
        chunk: only the papers that changed since it was written are read. `signal`: the
        store's change signal, read before this call; when the snapshot was saved at the same
        one, the store has not changed since and is not even listed (250k ids: 2 s)."""
        saved = snapshot.load(settings, store.name) if settings.snapshot else None
        if saved is not None:
            restored = cls._from_snapshot(saved, store, settings, signal)
            if restored is not None:
                return restored
        ids = store.ids()
        chunks = {c.id: c for c in store.chunks()}
        lexical = refresh_lexical(store, settings, list(chunks.values()), ids=ids)
        by_paper = group_by_paper(chunks.values())
        papers = {pid: cs[0].paper for pid, cs in by_paper.items()}
        return cls(chunks, by_paper, papers, lexical, lexical.fingerprint,
                   sources_with_papers=_with_papers(papers.values()), store=store,
                   signal=signal)

    @classmethod
    def _from_snapshot(cls, saved: snapshot.Snapshot, store: ChunkStore, settings: Settings,
                       signal: tuple[int, str] | None) -> Library | None:
        """The library from a snapshot, brought up to the store's ids by reading the papers
        that differ; None when more than half of it differs (reading it whole is as cheap)."""
        if signal is not None and saved.signal == signal:  # unchanged since it was saved
            ids, fingerprint = set(saved.chunks), saved.fingerprint
        else:
            ids = store.ids()
            fingerprint = fingerprint_of(ids)
        chunks, by_paper, papers = saved.chunks, saved.by_paper, saved.papers
        changes: tuple[Change, ...] = ()
        if saved.fingerprint != fingerprint:
            if len(ids ^ chunks.keys()) > max(len(ids), len(chunks)) / 2:
                return None
            touched, added, removed = _difference(chunks, by_paper, store, ids)
            chunks, by_paper, papers = _apply(chunks, by_paper, papers, touched, added, removed)
            changes = (Change(saved.fingerprint, fingerprint, added, removed),)
        lexical = refresh_lexical(store, settings, list(chunks.values()), ids=ids,
                                  fingerprint=fingerprint)
        derived = {"fingerprint": saved.fingerprint, "reader": saved.reader, "names": saved.names}
        return cls(chunks, by_paper, papers, lexical, fingerprint,
                   sources_with_papers=_with_papers(papers.values()), store=store,
                   changes=changes, derived=derived, signal=signal)

    def snapshot(self) -> snapshot.Snapshot:
        """This library as a snapshot (without what is derived from it: the caller adds that)."""
        return snapshot.Snapshot(self.fingerprint, self.chunks, self.by_paper, self.papers,
                                 signal=self.signal)

    def changed(self, store: ChunkStore, settings: Settings, ids: set[str] | None = None,
                signal: tuple[int, str] | None = None) -> Library:
        """The library after `store` changed, reading only the papers the change touched (every
        chunk of them, so metadata a re-parse changed is current too). `ids`: the store's ids
        now, when the caller knows them (else they are listed); `signal`: the store's change
        signal, read before. A change too large for the BM25 delta
        (`rag.lexical.REBUILD_SHARE`), or one that kept every id, loads the library whole."""
        ids = store.ids() if ids is None else ids
        if ids == self.chunks.keys():
            return Library.load(store, settings, signal)
        touched, added, removed = _difference(self.chunks, self.by_paper, store, ids)
        fingerprint = fingerprint_of(ids)
        lexical = self.lexical.changed(added, {c.id for c in removed}, fingerprint)
        if lexical is None:
            return Library.load(store, settings, signal)
        chunks, by_paper, papers = _apply(self.chunks, self.by_paper, self.papers, touched,
                                          added, removed)
        return Library(chunks, by_paper, papers, lexical, fingerprint,
                       sources_with_papers=_with_papers(papers.values()), store=store,
                       changes=(*self.changes[1 - KEPT_CHANGES:],
                                Change(self.fingerprint, fingerprint, added, removed)),
                       derived=self.derived, signal=signal)

    def changes_since(self, fingerprint: str | None) -> list[Change] | None:
        """The changes from the library `fingerprint` to this one; None when they are not known
        (it is older than the kept changes, or this one was loaded whole)."""
        if fingerprint == self.fingerprint:
            return []
        for i, change in enumerate(self.changes):
            if change.base == fingerprint:
                return list(self.changes[i:])
        return None

    def take_derived(self, name: str) -> tuple[Any, str] | None:
        """What the snapshot saved under `name` ("reader", "names") and the fingerprint it
        reflects; None when there is none or it was taken (it is changed in place by its user,
        so it can be taken once)."""
        value = self.derived.pop(name, None)
        return None if value is None else (value, self.derived["fingerprint"])


def _difference(chunks: dict[str, Chunk], by_paper: dict[str, list[Chunk]], store: ChunkStore,
                ids: set[str]) -> tuple[set[str], list[Chunk], list[Chunk]]:
    """The papers whose chunks differ between `chunks` and the store's `ids`, their chunks now
    (read from the store) and before."""
    touched = ({c.paper.id for c in store.chunks_by_ids(ids - chunks.keys())}
               | {chunks[cid].paper.id for cid in chunks.keys() - ids})
    added = store.chunks({"paper_id": {"$in": sorted(touched)}}) if touched else []
    removed = [c for pid in touched for c in by_paper.get(pid, [])]
    return touched, added, removed


def _apply(chunks: dict[str, Chunk], by_paper: dict[str, list[Chunk]], papers: dict[str, Paper],
           touched: set[str], added: list[Chunk], removed: list[Chunk]
           ) -> tuple[dict[str, Chunk], dict[str, list[Chunk]], dict[str, Paper]]:
    """New dicts after a change (the old ones may still be serving)."""
    chunks = dict(chunks)
    for c in removed:
        del chunks[c.id]
    chunks.update((c.id, c) for c in added)
    by_paper, papers = dict(by_paper), dict(papers)
    for pid in touched:
        by_paper.pop(pid, None)
        papers.pop(pid, None)
    for pid, cs in group_by_paper(added).items():
        by_paper[pid], papers[pid] = cs, cs[0].paper
    return chunks, by_paper, papers


def _with_papers(papers: Iterable[Paper]) -> dict[str, bool]:
    return {p.source: True for p in papers if p.kind != "document"}
