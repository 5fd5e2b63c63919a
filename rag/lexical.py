"""BM25 over the same chunks as the vector store, persisted beside it and kept in step.

The index is stored under `<data_dir>/bm25/<collection>/` together with the store fingerprint it
was built from; `LexicalIndex.load_or_build` rebuilds it whenever the store changed (by this
process, another process, or a Chroma server). Exact terms, numbers, acronyms and author names
are where BM25 beats dense retrieval. This module does not fuse rankings; see `rag.retrieval`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from rag.models import Chunk
from rag.settings import Settings
from rag.store import ChunkStore
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


class LexicalIndex:
    """A bm25s index over chunk ids."""

    def __init__(self, ids: list[str], model: Any, fingerprint: str) -> None:
        self.ids = ids
        self.model = model
        self.fingerprint = fingerprint

    @classmethod
    def build(cls, chunks: Sequence[Chunk], fingerprint: str) -> LexicalIndex:
        import bm25s

        model = bm25s.BM25(k1=1.2, b=0.75)
        corpus = [tokenize(chunk_text(c)) or ["_empty_"] for c in chunks]
        if corpus:
            model.index(corpus, show_progress=False)
        return cls([c.id for c in chunks], model, fingerprint)

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) best first; only chunks sharing a term with the query."""
        if not self.ids:
            return []
        vocab = self.model.vocab_dict
        terms = [t for t in tokenize(query) if t in vocab]
        if not terms:
            return []
        docs, scores = self.model.retrieve([terms], k=min(n, len(self.ids)), show_progress=False)
        return [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True)
                if s > 0]

    # --- persistence ---------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.ids:
            self.model.save(str(tmp / "bm25"))
        (tmp / "meta.json").write_text(json.dumps({"fingerprint": self.fingerprint, "ids": self.ids}))
        # Swap in whole: a crash mid-save leaves the old index or none, never half of one.
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex | None:
        import bm25s

        try:
            meta = json.loads((directory / "meta.json").read_text())
            model = bm25s.BM25.load(str(directory / "bm25")) if meta["ids"] else bm25s.BM25()
        except (OSError, ValueError, KeyError):
            return None
        return cls(list(meta["ids"]), model, str(meta["fingerprint"]))


def refresh_lexical(store: ChunkStore, settings: Settings) -> LexicalIndex:
    """The BM25 index for `store`, rebuilt and saved only when the store has changed."""
    directory = settings.data_dir / "bm25" / store.name
    fingerprint = store.fingerprint()
    index = LexicalIndex.load(directory)
    if index is None or index.fingerprint != fingerprint:
        chunks = store.chunks()
        index = LexicalIndex.build(chunks, fingerprint)
        index.save(directory)
    return index
