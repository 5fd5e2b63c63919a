"""Chroma adapter: chunks in, chunks out. The only module that imports chromadb.

Embedded by default (`PersistentClient` under the data directory); Chroma's own client/server
mode (`HttpClient`) when RAG_CHROMA_HOST is set. Chunk ids are content hashes, so writing the
same chunk twice is a no-op and an interrupted run is completed by the next one. This module does
not embed text or decide what to index; see `rag.indexing`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from rag.errors import StoreError
from rag.models import Chunk, Paper, Section
from rag.settings import Settings

Where = dict[str, Any]
_PAGE = 500  # ids fetched per request when listing a large collection


def _client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.use_server:
        try:
            return chromadb.HttpClient(
                host=settings.chroma_host or "", port=settings.chroma_port, settings=chroma_settings
            )
        except Exception as exc:
            raise StoreError(
                f"cannot reach the Chroma server at {settings.chroma_host}:{settings.chroma_port} "
                f"({exc}); start it with `chroma run --path DIR --port {settings.chroma_port}` "
                "or unset RAG_CHROMA_HOST to use the on-disk store"
            ) from exc
    path = settings.data_dir / "chroma"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory '{path}': {exc}; set RAG_DATA_DIR") from exc
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def chunk_metadata(chunk: Chunk, path: str) -> dict[str, str | int | float | bool]:
    """Flat metadata (Chroma takes scalars only): the paper's fields, the citation, the file."""
    p = chunk.paper
    meta: dict[str, str | int | float | bool] = {
        "paper_id": p.id,
        "title": p.title,
        "source": p.source,
        "path": path,
        "kind": p.kind,
        "chunk_index": chunk.index,
        "authors": "; ".join(p.authors),
    }
    optional = {"venue": p.venue, "year": p.year, "url": p.url, "tldr": p.tldr,
                "section": p.section, "page": chunk.page, "pages": p.pages,
                "chunk_section": chunk.section}
    meta.update({k: v for k, v in optional.items() if v is not None})
    meta["section_kind"] = chunk.section_kind
    if p.sections:  # the parse report (PDFs): the paper's headings and kinds, its warnings
        meta["sections"] = json.dumps([[s.name, s.kind] for s in p.sections])
    if p.warnings:
        meta["warnings"] = json.dumps(list(p.warnings))
    if p.venue:
        meta["venue_lc"] = p.venue.lower()
    return meta


def chunk_from_record(cid: str, text: str, meta: dict[str, Any]) -> Chunk:
    """Rebuild a Chunk (and its Paper, without the full text) from what Chroma stored."""
    authors = tuple(a for a in str(meta.get("authors", "")).split("; ") if a)
    paper = Paper(
        id=str(meta["paper_id"]), title=str(meta["title"]), source=str(meta["source"]), text="",
        authors=authors, venue=meta.get("venue"), year=meta.get("year"), url=meta.get("url"),
        tldr=meta.get("tldr"), section=meta.get("section"), kind=str(meta.get("kind", "paper")),
        pages=meta.get("pages"),
        sections=tuple(Section(0, str(n), str(k)) for n, k in json.loads(meta.get("sections") or "[]")),
        warnings=tuple(str(w) for w in json.loads(meta.get("warnings") or "[]")),
    )
    return Chunk(id=cid, paper=paper, index=int(meta.get("chunk_index", 0)), text=text,
                 page=meta.get("page"), section=meta.get("chunk_section"),
                 section_kind=str(meta.get("section_kind", "body")))


class ChunkStore:
    """One Chroma collection holding every chunk of the library, for one index shape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.collection_name()
        self._collection: Any = None

    @property
    def collection(self) -> Any:
        if self._collection is None:
            client = _client(self.settings)
            try:
                self._collection = client.get_or_create_collection(
                    self.name,
                    metadata={"hnsw:space": "cosine", "embedding_model": self.settings.embedding_model},
                    embedding_function=None,
                )
            except Exception as exc:
                raise StoreError(f"cannot open Chroma collection '{self.name}': {exc}") from exc
        return self._collection

    # --- writing -------------------------------------------------------------------------------
    def add(self, chunks: Sequence[Chunk], embeddings: Sequence[Sequence[float]], path: str) -> None:
        if not chunks:
            return
        self.collection.upsert(
            ids=[c.id for c in chunks],
            embeddings=[list(e) for e in embeddings],
            documents=[c.text for c in chunks],
            metadatas=[chunk_metadata(c, path) for c in chunks],
        )

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        for i in range(0, len(ids), _PAGE):
            self.collection.delete(ids=ids[i : i + _PAGE])

    # --- reading -------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.collection.count())

    def ids(self, where: Where | None = None) -> set[str]:
        out: set[str] = set()
        offset = 0
        while True:
            got = self.collection.get(where=where, include=[], limit=_PAGE, offset=offset)
            out.update(got["ids"])
            if len(got["ids"]) < _PAGE:
                return out
            offset += _PAGE

    def ids_for_path(self, path: str) -> set[str]:
        return self.ids({"path": path})

    def paths(self) -> set[str]:
        return {str(m["path"]) for _, _, m in self._records(None, documents=False)}

    def chunks(self, where: Where | None = None) -> list[Chunk]:
        return [chunk_from_record(i, d, m) for i, d, m in self._records(where, documents=True)]

    def _records(self, where: Where | None, documents: bool) -> list[tuple[str, str, dict]]:
        include = ["metadatas", "documents"] if documents else ["metadatas"]
        records: list[tuple[str, str, dict]] = []
        offset = 0
        while True:
            got = self.collection.get(where=where, include=include, limit=_PAGE, offset=offset)
            docs = got.get("documents") or [""] * len(got["ids"])
            records.extend(zip(got["ids"], docs, got["metadatas"], strict=True))
            if len(got["ids"]) < _PAGE:
                return records
            offset += _PAGE

    def query(self, vector: Sequence[float], n: int, where: Where | None = None) -> list[tuple[Chunk, float]]:
        """Nearest chunks with cosine similarity (1 - distance), best first."""
        total = self.count()
        if total == 0:
            return []
        got = self.collection.query(
            query_embeddings=[list(vector)], n_results=min(n, total), where=where,
            include=["documents", "metadatas", "distances"],
        )
        return [
            (chunk_from_record(i, d, m), 1.0 - float(dist))
            for i, d, m, dist in zip(got["ids"][0], got["documents"][0], got["metadatas"][0],
                                     got["distances"][0], strict=True)
        ]

    def fingerprint(self) -> str:
        """Changes whenever the set of chunks changes: keeps the BM25 index in step."""
        digest = hashlib.sha256("\n".join(sorted(self.ids())).encode()).hexdigest()
        return digest[:24]

    def papers(self) -> list[Paper]:
        """One record per paper in the store, in source then chunk order."""
        seen: dict[str, Paper] = {}
        for chunk in sorted(self.chunks(), key=lambda c: (c.paper.source, c.paper.id, c.index)):
            seen.setdefault(chunk.paper.id, chunk.paper)
        return list(seen.values())
