"""LangChain faces of the pipeline: the hybrid retriever as a `BaseRetriever`.

The only place (with `rag.chain`) that imports langchain. It adds nothing to retrieval itself;
it converts `Hit`s to LangChain `Document`s with the citation metadata attached.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from rag.models import Hit
from rag.retrieval import Filters, Retriever
from rag.settings import Settings, get_settings


def hit_to_document(hit: Hit) -> Document:
    p = hit.paper
    return Document(
        page_content=hit.chunk.text,
        id=hit.chunk.id,
        metadata={
            "title": p.title, "authors": list(p.authors), "venue": p.venue, "year": p.year,
            "url": p.url, "source": p.source, "page": hit.chunk.page, "paper_id": p.id,
            "score": hit.score, "citation": hit.chunk.citation,
        },
    )


class PaperRetriever(BaseRetriever):
    """Hybrid (dense + BM25) paper-aware retrieval over the project's Chroma index."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Settings | None = None
    k: int = 5
    venue: str | None = None
    year: int | None = None
    author: str | None = None
    source: str | None = None
    _engine: Retriever | None = PrivateAttr(default=None)

    def _retriever(self) -> Retriever:
        if self._engine is None:
            self._engine = Retriever(self.settings or get_settings())
        return self._engine

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        k = int(kwargs.get("k", self.k))
        filters = Filters(self.venue, self.year, self.author, self.source)
        return [hit_to_document(h) for h in self._retriever().search(query, k, filters)]
