"""BM25 over the same chunks as the vector store, persisted beside it and kept in step.

The index is stored under `<data_dir>/bm25/<collection>/` together with the chunk ids it was
built from. A change costs what changed, not the library: `LexicalIndex.changed` answers with the
saved (main) index minus the removed chunks (a weight mask) plus a small in-memory delta of the
added ones, scored with the main index's statistics (document frequencies, length), so a new
paper ranks as it would after a rebuild. When the delta outgrows `REBUILD_SHARE` of the library,
or at the next start if it changed too much, the index is rebuilt and saved whole. Exact terms,
numbers, acronyms and author names are where BM25 beats dense retrieval. This module does not
fuse rankings; see `rag.retrieval`.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.models import Chunk
from rag.settings import Settings
from rag.store import ChunkStore, fingerprint_of
from rag.text import STOP_WORDS, fold

_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b")
_TOKEN = re.compile(r"[a-z0-9]+(?:[.\-'][a-z0-9]+)*")
@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer  # PyStemmer: Snowball stemmers in C

    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """Stemmed, folded word tokens without stop words; hyphenated terms also give their parts."""
    words: list[str] = []
    for tok in _TOKEN.findall(_POSSESSIVE.sub("", fold(text))):
        words.append(tok)
        if "-" in tok or "." in tok:
            words.extend(p for p in re.split(r"[.\-']", tok) if p)
    kept = [w for w in words if w not in STOP_WORDS]
    return list(_stemmer().stemWords(kept))


def chunk_text(chunk: Chunk) -> str:
    """What BM25 sees: title, authors, venue and the passage, so names and venues match too."""
    p = chunk.paper
    return "\n".join(
        x for x in (p.title, ", ".join(p.authors), p.venue_year, p.section or "", chunk.text) if x
    )


K1, B = 1.2, 0.75
# Above this share of the library in added or removed chunks, a change rebuilds the index whole
# (a delta scored by the main index's statistics drifts from a rebuild as it grows).
REBUILD_SHARE = 0.2


@dataclass
class _Delta:
    """Chunks added since the main index was built: their term counts, scored in Python."""

    ids: list[str] = field(default_factory=list)
    terms: list[Counter[str]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    df: Counter[str] = field(default_factory=Counter)

    def plus(self, chunks: Sequence[Chunk]) -> _Delta:
        out = _Delta(list(self.ids), list(self.terms), list(self.lengths), Counter(self.df))
        for c in chunks:
            tokens = tokenize(chunk_text(c)) or ["_empty_"]
            counts = Counter(tokens)
            out.ids.append(c.id)
            out.terms.append(counts)
            out.lengths.append(len(tokens))
            out.df.update(counts.keys())
        return out

    def minus(self, removed: set[str]) -> _Delta:
        out = _Delta()
        for cid, counts, n in zip(self.ids, self.terms, self.lengths, strict=True):
            if cid not in removed:
                out.ids.append(cid)
                out.terms.append(counts)
                out.lengths.append(n)
                out.df.update(counts.keys())
        return out


class LexicalIndex:
    """A bm25s index over chunk ids (the main index), less removed chunks, plus a delta."""

    def __init__(self, ids: list[str], model: Any, fingerprint: str, avgdl: float = 1.0,
                 removed: frozenset[str] = frozenset(), delta: _Delta | None = None) -> None:
        self.ids = ids
        self.model = model
        self.fingerprint = fingerprint
        self.avgdl = avgdl
        self.removed = removed
        self.delta = delta or _Delta()
        self._mask: Any = None
        if removed and ids:
            self._mask = np.array([0.0 if i in removed else 1.0 for i in ids], dtype=np.float32)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], fingerprint: str) -> LexicalIndex:
        import bm25s

        model = bm25s.BM25(k1=K1, b=B)
        corpus = [tokenize(chunk_text(c)) or ["_empty_"] for c in chunks]
        if corpus:
            model.index(corpus, show_progress=False)
        avgdl = sum(map(len, corpus)) / len(corpus) if corpus else 1.0
        return cls([c.id for c in chunks], model, fingerprint, avgdl)

    def changed(self, added: Sequence[Chunk], removed: set[str], fingerprint: str
                ) -> LexicalIndex | None:
        """This index after a change, without re-reading the library; None when the change is
        too large for a delta (rebuild then). `self` is left as it was (it may be serving)."""
        main = set(self.ids)
        gone = self.removed | (removed & main)
        delta = self.delta.minus(removed).plus(added) if removed else self.delta.plus(added)
        if len(gone) + len(delta.ids) > REBUILD_SHARE * max(len(self.ids), 1):
            return None
        return LexicalIndex(self.ids, self.model, fingerprint, self.avgdl, frozenset(gone),
                            delta)

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) best first; only chunks sharing a term with the query."""
        terms = tokenize(query)
        found = self._search_main(terms, n) + self._search_delta(terms)
        found.sort(key=lambda x: -x[1])
        return found[:n]

    def _search_main(self, terms: list[str], n: int) -> list[tuple[str, float]]:
        if not self.ids:
            return []
        vocab = self.model.vocab_dict
        known = [t for t in terms if t in vocab]
        if not known:
            return []
        kw: dict[str, Any] = {} if self._mask is None else {"weight_mask": self._mask}
        docs, scores = self.model.retrieve([known], k=min(n, len(self.ids)), show_progress=False,
                                           **kw)
        return [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True)
                if s > 0]

    def _search_delta(self, terms: list[str]) -> list[tuple[str, float]]:
        """BM25 (bm25s' 'lucene' variant) of the delta's chunks, with document frequencies and
        length taken over main and delta together, as a rebuild would."""
        if not self.delta.ids:
            return []
        total = len(self.ids) - len(self.removed) + len(self.delta.ids)
        idf = {t: math.log(1 + (total - (df := self._df(t)) + 0.5) / (df + 0.5))
               for t in set(terms)}
        out: list[tuple[str, float]] = []
        for cid, counts, length in zip(self.delta.ids, self.delta.terms, self.delta.lengths,
                                       strict=True):
            norm = K1 * (1 - B + B * length / self.avgdl)
            score = sum(idf[t] * tf * (K1 + 1) / (tf + norm)
                        for t in idf if (tf := counts.get(t, 0)))
            if score > 0:
                out.append((cid, score))
        return out

    def _df(self, term: str) -> int:
        df = self.delta.df.get(term, 0)
        col = self.model.vocab_dict.get(term) if self.ids else None
        if col is not None:
            indptr = self.model.scores["indptr"]
            df += int(indptr[col + 1] - indptr[col])  # removed chunks still count: a bound
        return df

    # --- persistence ---------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Save the main index (call on a fresh build: a delta is not saved)."""
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.ids:
            self.model.save(str(tmp / "bm25"))
        (tmp / "meta.json").write_text(json.dumps(
            {"fingerprint": self.fingerprint, "ids": self.ids, "avgdl": self.avgdl}))
        # Swap in whole: a crash mid-save leaves the old index or none, never half of one.
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex | None:
        import bm25s

        try:
            meta = json.loads((directory / "meta.json").read_text())
            # Memory-mapped: the score matrix stays in the page cache, read where a query's
            # terms are, instead of in the process's own memory (33k chunks: 28 MB, retrieval
            # p50/p95 0.5/4.9 ms in memory against 0.7/3.5 ms mapped).
            model = (bm25s.BM25.load(str(directory / "bm25"), mmap=True) if meta["ids"]
                     else bm25s.BM25())
            return cls(list(meta["ids"]), model, str(meta["fingerprint"]), float(meta["avgdl"]))
        except (OSError, ValueError, KeyError):
            return None  # missing, damaged, or saved before avgdl was: rebuilt


def refresh_lexical(store: ChunkStore, settings: Settings,
                    chunks: Sequence[Chunk] | None = None, ids: set[str] | None = None,
                    fingerprint: str | None = None) -> LexicalIndex:
    """The BM25 index for `store`: the saved one when current; the saved one plus a delta when
    the store changed a little since it was saved; else rebuilt from `chunks` (all of the
    store's, read here when not given) and saved. `ids` and their `fingerprint`: the store's,
    when the caller knows them (else they are listed)."""
    directory = settings.data_dir / "bm25" / store.name
    ids = store.ids() if ids is None else ids
    fingerprint = fingerprint or fingerprint_of(ids)
    index = LexicalIndex.load(directory)
    if index is not None and index.fingerprint == fingerprint:
        return index
    if index is not None:
        saved = set(index.ids)
        added = ids - saved
        if len(added) + len(saved - ids) <= REBUILD_SHARE * max(len(saved), 1):
            new = [c for c in (chunks if chunks is not None else store.chunks_by_ids(added))
                   if c.id in added]
            changed = index.changed(new, saved - ids, fingerprint)
            if changed is not None:
                return changed
    index = LexicalIndex.build(chunks if chunks is not None else store.chunks(), fingerprint)
    index.save(directory)
    return index
