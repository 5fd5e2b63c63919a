"""Hybrid retrieval: dense (Chroma) + BM25, fused by weighted reciprocal rank, collapsed to papers.

Understands the question's metadata: a venue/year ("ICLR 2021"), an author named in the library,
or a paper named by title or by its distinctive name (e.g. "DeBERTa") narrows or boosts the
results. For a question about one paper it returns that paper's best passages; otherwise one
passage per paper, so the top five are five different papers. Exposed to LangChain as a
`BaseRetriever` in `rag.langchain_adapters`. This module does not build prompts or answers.

The library follows the store: at most once per `CHECK_EVERY_S` a search compares the store's
change signal (`ChunkStore.signal`, ~3 ms) with the one the library was loaded at; on a change a
background thread re-opens the store and derives a new library from the old one, reading only
the papers that changed (`Library.changed`), while the old one keeps answering, then swaps them.
So papers another process (`rag index`) adds or removes are answered, or no longer answered,
within a few seconds, without a restart. This process's own uploads need neither the re-open nor
a listing of the store: `Retriever.reload` follows the change its indexer reports
(`rag.indexing.Written`). The library keeps no chunk text; a search fetches its passages' texts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rag import cues
from rag.embeddings import Embedder, get_embedder
from rag.library import Library
from rag.models import Chunk, Hit, Paper
from rag.query import QueryIntent, analyse
from rag.settings import Settings
from rag.store import ChunkStore

if TYPE_CHECKING:
    from rag.indexing import Written

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # how often a process asks the store whether another process changed it
# Up to this many chunks (a few papers), a filtered dense search scores them exactly from their
# stored vectors (`ChunkStore.nearest_among`); above, Chroma filters (its cost grows with the
# collection, that of an exact scoring with the chunks: 60 us each).
EXACT_AMONG_MAX = 1000
# A passage is what a reader checks a citation against at a glance: the best chunk (at most 200
# MiniLM word pieces, about 150 words) and its neighbours, up to a long paragraph of about 220
# words. Longer, and the sentence that answers is lost in it (and an LLM prompt of five sources
# outgrows a small model's window); shorter, and a sentence continued in the next chunk is cut.
PASSAGE_WORDS = 220
DOCUMENT_PENALTY = 0.5  # an introduction naming every paper ranks below the papers themselves
# References and acknowledgements are searchable (a reader may look a citation up) but are never
# evidence; their chunks rank below the paper's own text.
NOT_EVIDENCE_PENALTY = 0.3


@dataclass(frozen=True)
class Filters:
    """Hard constraints on the papers searched. Empty fields mean 'any'."""

    venue: str | None = None
    year: int | None = None
    author: str | None = None
    source: str | None = None

    def accepts(self, paper: Paper) -> bool:
        if self.venue and (paper.venue or "").lower() != self.venue.lower():
            return False
        if self.year and paper.year != self.year:
            return False
        if self.source and paper.source != self.source:
            return False
        return not (self.author and not _has_author(paper, self.author))

    def is_empty(self) -> bool:
        return not (self.venue or self.year or self.author or self.source)


def _has_author(paper: Paper, name: str) -> bool:
    needle = name.lower()
    return any(needle in a.lower() for a in paper.authors)


class Retriever:
    """Question in, ranked passages out. Thread-safe; reloads when the store changes, whoever
    changed it (see the module docstring)."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None,
                 store: ChunkStore | None = None, check_every_s: float = CHECK_EVERY_S) -> None:
        self.settings = settings
        self.embedder = embedder or get_embedder(settings.embedding_model,
                                                 settings.embedding_batch_size,
                                                 backend=settings.embedding_backend)
        self.store = store or ChunkStore(settings)
        self.check_every_s = check_every_s
        self._library: Library | None = None
        self._lock = threading.Lock()
        self._signal: tuple[int, str] | None = None  # the store's signal the library reflects
        self._checked = 0.0
        self._refreshing = threading.Lock()  # one check or background reload at a time

    @property
    def default_filters(self) -> Filters:
        """Filters from the settings (RAG_FILTER_*), used when a call gives none."""
        s = self.settings
        return Filters(s.filter_venue, s.filter_year, s.filter_author, s.filter_source)

    @property
    def library(self) -> Library:
        """The current library; never waits for a reload once one is loaded."""
        if self._library is None:
            with self._lock:  # a warm-up and a first request must not both load it
                if self._library is None:
                    self._signal = self._read_signal(self.store)
                    self._library = Library.load(self.store, self.settings, self._signal)
                    self._checked = time.monotonic()
        else:
            self.refresh_if_changed()
        return self._library

    def reload(self, written: Written | None = None) -> Library:
        """Re-read the store now (after this process indexed new files). `written`: what this
        process's own run changed (`IndexReport.written`). When the library reflected the store
        as that run found it, no other process wrote in between: this store's client holds
        the run's writes already, so the library follows that change alone, neither re-opening
        the store (an embedded one re-reads its whole vector index) nor listing it."""
        with self._refreshing:  # after a background reload under way, not beside it
            if not self._follow(written):
                self._load_new(reopen_only_if_free=False)
        assert self._library is not None
        return self._library

    def _follow(self, written: Written | None) -> bool:
        """Take in this process's own change `written`; False when another change came first
        (or the library is not loaded): reload then."""
        lib = self._library
        if written is None or lib is None or written.before != self._signal:
            return False
        if written.added or written.removed:
            ids = (lib.chunks.keys() - written.removed) | written.added
            lib = lib.changed(self.store, self.settings, ids=ids, signal=written.after)
        self._install(lib, written.after, self.store)
        return True

    def refresh_if_changed(self, wait: bool = False) -> bool:
        """Start a background reload if the store changed since the library was loaded (checked
        at most once per `check_every_s`); True when one was started. `wait`: check now and
        finish the reload before returning."""
        if not wait and time.monotonic() - self._checked < self.check_every_s:
            return False
        if not self._refreshing.acquire(blocking=wait):
            return False  # another thread is checking or reloading
        self._checked = time.monotonic()
        try:
            signal = self._read_signal(self.store)
        except Exception as exc:  # the store is briefly unreachable: keep serving, retry later
            log.warning("could not check the store for changes: %s", exc)
            self._refreshing.release()
            return False
        if signal == self._signal:
            self._refreshing.release()
            return False
        if wait:
            self._reload_changed()
        else:
            threading.Thread(target=self._reload_changed, name="rag-library-reload",
                             daemon=True).start()
        return True

    @staticmethod
    def _read_signal(store: ChunkStore) -> tuple[int, str] | None:
        return store.signal()

    def _reload_changed(self) -> None:
        """Runs holding `_refreshing` (released here): load the new library and swap it in."""
        try:
            self._load_new(reopen_only_if_free=True)
        except Exception as exc:  # the old library keeps serving; the next check retries
            log.warning("could not reload the library: %s", exc)
        finally:
            self._refreshing.release()

    def _load_new(self, reopen_only_if_free: bool) -> None:
        """Re-open the store (an embedded one only while no writer is active: its vector index
        is read from disk then) and load a library from it; then swap both in at once."""
        from rag.store import no_writer

        with no_writer(self.settings) as free:
            if not free and reopen_only_if_free:
                return  # an indexer is writing; the next check retries
            store = self.store.reopened() if free else self.store
            if store is not self.store:
                store.warm()
            signal = self._read_signal(store)
        # what changed, read at the cost of the change (the first load reads the store whole)
        previous = self._library
        library = (previous.changed(store, self.settings, signal=signal)
                   if previous is not None else Library.load(store, self.settings, signal))
        self._install(library, signal, store)

    def _install(self, library: Library, signal: tuple[int, str] | None, store: ChunkStore
                 ) -> None:
        """Swap in a library, the store signal it reflects and the store it was read from, at
        once; a replaced store closes once searches under way on it are done."""
        with self._lock:
            old, self.store = self.store, store
            self._library, self._signal = library, signal
        self._checked = time.monotonic()
        if old is not store:
            old.close()
        log.info("library loaded: %d papers, %d chunks", len(library.papers), len(library.chunks))

    def search(self, question: str, k: int | None = None, filters: Filters | None = None,
               intent: QueryIntent | None = None) -> list[Hit]:
        k = k or self.settings.top_k
        lib = self.library
        intent = intent or analyse(question, lib)
        question = cues.without_library_words(question) or question
        filters = _merge(filters or Filters(), self.default_filters, intent)
        allowed = self._allowed(lib, filters)
        vector = self.embedder.embed([question])[0]
        fused = self._fuse(question, vector, lib, allowed)
        if intent.paper_ids:
            for pid in intent.paper_ids:
                for c in lib.by_paper.get(pid, []):
                    if allowed is None or pid in allowed:
                        fused[c.id] = fused.get(c.id, 0.0) + 1.0
        for pid in intent.author_paper_ids:
            for c in lib.by_paper.get(pid, []):
                if c.id in fused:
                    fused[c.id] += 0.5
        if intent.single_paper:
            # One paper asked about: rank ALL its chunks (a 40-page paper has 100+, most of them
            # outside the library-wide candidates), dense and BM25 within that paper.
            pid = intent.paper_ids[0]
            if allowed is None or pid in allowed:
                for cid, score in self._fuse(question, vector, lib, {pid}).items():
                    fused[cid] = max(fused.get(cid, 0.0), 1.0) + score
        for cid in fused:
            if not lib.chunks[cid].is_evidence:
                fused[cid] *= NOT_EVIDENCE_PENALTY
            # An introduction or table of contents names every paper, so it matches every
            # question a little; rank it below the records that actually discuss the topic.
            if lib.chunks[cid].paper.kind == "document" and lib.sources_with_papers.get(
                    lib.chunks[cid].paper.source):
                fused[cid] *= DOCUMENT_PENALTY
        if intent.kind == "authors" and fused:
            # A paper names its authors on its first page: the opening chunk of the paper asked
            # about (or of the best match) answers "who wrote it", not its best-matching passage.
            top = max(fused, key=lambda cid: fused[cid])
            pid = intent.paper_ids[0] if intent.single_paper else lib.chunks[top].paper.id
            for c in lib.by_paper.get(pid, [])[:1]:
                fused[c.id] = fused[top] + 1.0
        ranked = sorted(fused.items(), key=lambda kv: -kv[1])
        if intent.single_paper:
            return self._passages_of_one(lib, ranked, k)
        return self._one_per_paper(lib, ranked, k)

    # --- stages --------------------------------------------------------------------------------
    def _allowed(self, lib: Library, filters: Filters) -> set[str] | None:
        if filters.is_empty():
            return None
        allowed = {pid for pid, p in lib.papers.items() if filters.accepts(p)}
        return allowed

    def _fuse(self, question: str, vector: Sequence[float], lib: Library,
              allowed: set[str] | None) -> dict[str, float]:
        n = self.settings.candidates
        rrf = self.settings.rrf_k
        scores: dict[str, float] = defaultdict(float)
        store = lib.store or self.store  # the store this library was read from
        if allowed is None:
            found = store.nearest(vector, n)
        elif not allowed:
            return {}
        else:
            among = [c.id for pid in sorted(allowed) for c in lib.by_paper.get(pid, [])]
            found = (store.nearest_among(vector, among, n) if len(among) <= EXACT_AMONG_MAX
                     else store.nearest(vector, n, {"paper_id": {"$in": sorted(allowed)}}))
        # subtle: an embedded store's HNSW index can hold ids another process has deleted since
        # this one loaded it; the library is what is stored, so only its ids count.
        dense = [cid for cid, _sim in found if cid in lib.chunks]
        for rank, cid in enumerate(dense):
            scores[cid] += self.settings.dense_weight / (rrf + rank + 1)
        lexical = lib.lexical.search(question, n * (4 if allowed is not None else 1))
        rank = 0
        for cid, _score in lexical:
            chunk = lib.chunks.get(cid)
            if chunk is None or (allowed is not None and chunk.paper.id not in allowed):
                continue
            scores[cid] += self.settings.lexical_weight / (rrf + rank + 1)
            rank += 1
            if rank >= n:
                break
        return scores

    def _one_per_paper(self, lib: Library, ranked: Sequence[tuple[str, float]], k: int) -> list[Hit]:
        best: dict[str, list[tuple[str, float]]] = defaultdict(list)
        order: list[str] = []
        for cid, score in ranked:
            pid = lib.chunks[cid].paper.id
            if pid not in best:
                order.append(pid)
            best[pid].append((cid, score))
        picks = [(pid, best[pid][0]) for pid in order[:k]]
        # the texts of the best chunks and their likely neighbours, in one request
        texts = _Texts(lib, [c.id for pid, (cid, _) in picks
                             for c in _around(lib, lib.chunks[cid], _NEIGHBOURS)])
        hits = [self._passage(lib, pid, cid, score, texts) for pid, (cid, score) in picks]
        return [h for h in hits if h is not None]

    def _passages_of_one(self, lib: Library, ranked: Sequence[tuple[str, float]], k: int) -> list[Hit]:
        """For a question about one paper: its best passages first, then other papers."""
        top_pid = lib.chunks[ranked[0][0]].paper.id if ranked else None
        own = [(cid, s) for cid, s in ranked if lib.chunks[cid].paper.id == top_pid][:k]
        scores = dict(own)
        hits = [Hit(chunk=c, score=scores[c.id])
                for c in lib.hydrate([lib.chunks[cid] for cid, _ in own])]
        if len(hits) < k:
            others = [(cid, s) for cid, s in ranked if lib.chunks[cid].paper.id != top_pid]
            hits.extend(self._one_per_paper(lib, others, k - len(hits)))
        return hits

    def _passage(self, lib: Library, pid: str, cid: str, score: float, texts: _Texts
                 ) -> Hit | None:
        """The paper's best chunk, widened with neighbouring chunks (of the same section, and
        evidence only) while the whole stays within PASSAGE_WORDS; None when the store no
        longer holds it."""
        best = lib.chunks[cid]
        lo = hi = best.index
        text = texts.get(best)
        if text is None:
            return None
        pos = {c.index: c for c in lib.by_paper[pid]}
        while True:
            grown = False
            for idx, before in ((hi + 1, False), (lo - 1, True)):
                c = pos.get(idx)
                if c is None or c.section != best.section or not c.is_evidence:
                    continue
                more = texts.get(c)
                if more is None:
                    continue
                cand = _join_overlapping(more, text) if before else _join_overlapping(text, more)
                if len(cand.split()) <= PASSAGE_WORDS:
                    text, grown = cand, True
                    lo, hi = (idx, hi) if before else (lo, idx)
            if not grown:
                break
        chunk = replace(best, text=text)  # keeps the page, section and section kind
        return Hit(chunk=chunk, score=score)


# Chunks either side of a best chunk whose texts are fetched with it: a passage of PASSAGE_WORDS
# rarely takes more than one a side (chunks run to about 150 words); more are fetched on demand.
_NEIGHBOURS = 2


def _around(lib: Library, chunk: Chunk, n: int) -> list[Chunk]:
    """The chunk and up to `n` chunks of its paper either side of it, in reading order."""
    pos = {c.index: c for c in lib.by_paper.get(chunk.paper.id, [])}
    return [pos[i] for i in range(chunk.index - n, chunk.index + n + 1) if i in pos]


class _Texts:
    """Chunk texts for one search, fetched from the store: those named at first in one request,
    any other (a passage that keeps growing) with the chunks around it."""

    def __init__(self, lib: Library, ids: Iterable[str]) -> None:
        assert lib.store is not None
        self.lib, self.store = lib, lib.store
        self.texts = self.store.texts(ids)
        self.asked = set(self.texts)

    def get(self, chunk: Chunk) -> str | None:
        if chunk.id not in self.asked:
            around = [c.id for c in _around(self.lib, chunk, 2 * _NEIGHBOURS)]
            self.texts.update(self.store.texts(around))
            self.asked.update(around)
        return self.texts.get(chunk.id)


def _merge(filters: Filters, defaults: Filters, intent: QueryIntent) -> Filters:
    """Field by field: explicit filters win, then the settings, then what the question names."""
    return Filters(
        venue=filters.venue or defaults.venue or intent.venue,
        year=filters.year or defaults.year or intent.year,
        author=filters.author or defaults.author,
        source=filters.source or defaults.source,
    )


def _join_overlapping(left: str, right: str) -> str:
    """Append `right` to `left`, dropping the longest prefix of `right` that ends `left`
    (consecutive chunks overlap by a few sentences)."""
    if not left:
        return right
    for size in range(min(len(left), len(right)), 0, -1):
        if left.endswith(right[:size]):
            return left + right[size:]
    return left + "\n" + right
