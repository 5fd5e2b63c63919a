"""The library: an in-memory view of the store, every chunk grouped by paper, plus the BM25 index.

`Library.load` reads the store once, or, when a snapshot of an earlier library was saved
(`rag.snapshot`), reads that back and only the papers that differ from it; `Library.changed`
follows a change of the store at the cost of the change (it reads the ids, then only the papers
the change touched, and shares everything else with the library before it).
`rag.retrieval.Retriever` decides when to load or change the library (when the store changes)
and searches it, and `rag.query` reads its metadata to understand a question. This module does
not search, rank or watch the store for changes.

The library holds what ranking needs (ids, papers, each chunk's place and section, the BM25
index), not the chunks' texts: those stay in the store, and `Library.hydrate` fetches them for
the passages a search returns (250k chunks hold 296 MB of text). What the reader and the name
index derived from a paper must be taken out of them when the paper leaves the library, though,
and by then its text has left the store: so each paper's text is also kept, compressed (zlib: a
third of its size in real papers), in `Library.archive`, and read back only for that and for
building them whole (`Library.paper_chunks`).
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
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

    chunks: dict[str, Chunk]  # without their texts (`hydrate`)
    by_paper: dict[str, list[Chunk]]  # the same chunks, in reading order
    papers: dict[str, Paper]
    lexical: LexicalIndex
    fingerprint: str
    archive: dict[str, bytes]  # paper id -> its chunks' texts, compressed (`paper_chunks`)
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
        full = store.chunks()
        lexical = refresh_lexical(store, settings, full, ids=ids)
        by_paper, archive = _kept(full)
        del full
        chunks = {c.id: c for cs in by_paper.values() for c in cs}
        papers = {pid: cs[0].paper for pid, cs in by_paper.items()}
        return cls(chunks, by_paper, papers, lexical, lexical.fingerprint, archive,
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
        archive = saved.archive
        changes: tuple[Change, ...] = ()
        if saved.fingerprint != fingerprint:
            if len(ids ^ chunks.keys()) > max(len(ids), len(chunks)) / 2:
                return None
            touched, added, removed = _difference(chunks, by_paper, archive, store, ids)
            chunks, by_paper, papers, archive = _apply(chunks, by_paper, papers, archive,
                                                       touched, added)
            changes = (Change(saved.fingerprint, fingerprint, added, removed),)
        # no chunks given (they hold no text): a saved BM25 index that lags the store reads the
        # chunks it lacks from the store
        lexical = refresh_lexical(store, settings, ids=ids, fingerprint=fingerprint)
        derived = {"fingerprint": saved.fingerprint, "reader": saved.reader, "names": saved.names}
        return cls(chunks, by_paper, papers, lexical, fingerprint, archive,
                   sources_with_papers=_with_papers(papers.values()), store=store,
                   changes=changes, derived=derived, signal=signal)

    def snapshot(self) -> snapshot.Snapshot:
        """This library as a snapshot (without what is derived from it: the caller adds that)."""
        return snapshot.Snapshot(self.fingerprint, self.chunks, self.by_paper, self.papers,
                                 signal=self.signal, archive=self.archive)

    def paper_chunks(self, pid: str) -> list[Chunk]:
        """The paper's chunks with their texts, in reading order, from the archive (for what
        is derived from whole papers; a search fetches its passages with `hydrate`)."""
        return _with_texts(self.by_paper.get(pid, []), self.archive.get(pid))

    def hydrate(self, chunks: Sequence[Chunk]) -> list[Chunk]:
        """These chunks with their texts, fetched from the store in one request; a chunk the
        store no longer holds (another process removed it meanwhile) is left out."""
        assert self.store is not None, "a library read from a store"
        texts = self.store.texts(c.id for c in chunks if not c.text)
        return [c if c.text else replace(c, text=texts[c.id]) for c in chunks
                if c.text or c.id in texts]

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
        touched, added, removed = _difference(self.chunks, self.by_paper, self.archive, store,
                                              ids)
        fingerprint = fingerprint_of(ids)
        lexical = self.lexical.changed(added, {c.id for c in removed}, fingerprint)
        if lexical is None:
            return Library.load(store, settings, signal)
        chunks, by_paper, papers, archive = _apply(self.chunks, self.by_paper, self.papers,
                                                   self.archive, touched, added)
        return Library(chunks, by_paper, papers, lexical, fingerprint, archive,
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


def _difference(chunks: dict[str, Chunk], by_paper: dict[str, list[Chunk]],
                archive: dict[str, bytes], store: ChunkStore, ids: set[str]
                ) -> tuple[set[str], list[Chunk], list[Chunk]]:
    """The papers whose chunks differ between `chunks` and the store's `ids`, their chunks now
    (read from the store) and before (with their texts, from the archive)."""
    touched = ({c.paper.id for c in store.chunks_by_ids(ids - chunks.keys())}
               | {chunks[cid].paper.id for cid in chunks.keys() - ids})
    added = store.chunks({"paper_id": {"$in": sorted(touched)}}) if touched else []
    removed = [c for pid in touched for c in _with_texts(by_paper.get(pid, []), archive.get(pid))]
    return touched, added, removed


def _apply(chunks: dict[str, Chunk], by_paper: dict[str, list[Chunk]], papers: dict[str, Paper],
           archive: dict[str, bytes], touched: set[str], added: list[Chunk]
           ) -> tuple[dict[str, Chunk], dict[str, list[Chunk]], dict[str, Paper],
                      dict[str, bytes]]:
    """New dicts after a change of the papers `touched` to their chunks `added` (the old dicts
    may still be serving)."""
    chunks, by_paper, papers, archive = dict(chunks), dict(by_paper), dict(papers), dict(archive)
    for pid in touched:
        for c in by_paper.pop(pid, []):
            del chunks[c.id]
        papers.pop(pid, None)
        archive.pop(pid, None)
    kept, packed = _kept(added)
    for pid, cs in kept.items():
        by_paper[pid], papers[pid], archive[pid] = cs, cs[0].paper, packed[pid]
        chunks.update((c.id, c) for c in cs)
    return chunks, by_paper, papers, archive


def _kept(full: Iterable[Chunk]) -> tuple[dict[str, list[Chunk]], dict[str, bytes]]:
    """What the library keeps of chunks read with their texts: the chunks without them, by
    paper in reading order, and each paper's texts compressed."""
    by_paper = group_by_paper(full)
    archive = {pid: _pack([c.text for c in cs]) for pid, cs in by_paper.items()}
    return {pid: [replace(c, text="") for c in cs] for pid, cs in by_paper.items()}, archive


def _pack(texts: list[str]) -> bytes:
    return zlib.compress(pickle.dumps(texts, protocol=pickle.HIGHEST_PROTOCOL))


def _unpack(blob: bytes) -> list[str]:
    texts: list[str] = pickle.loads(zlib.decompress(blob))
    return texts


def _with_texts(chunks: list[Chunk], blob: bytes | None) -> list[Chunk]:
    if blob is None:
        return chunks
    return [replace(c, text=t) for c, t in zip(chunks, _unpack(blob), strict=True)]


def _with_papers(papers: Iterable[Paper]) -> dict[str, bool]:
    return {p.source: True for p in papers if p.kind != "document"}
