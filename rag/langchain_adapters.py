"""LangChain faces of the pipeline: the hybrid retriever as a `BaseRetriever`, and the answering
chain in LCEL (condense | retrieve | answer).

The only module that imports langchain. It adds no logic of its own: the stages are the
pipeline's functions, and `Hit`s become `Document`s with their citation metadata attached.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda
from pydantic import ConfigDict, PrivateAttr

from rag.models import Answer, Hit
from rag.retrieval import Filters, Retriever
from rag.settings import Settings, get_settings

if TYPE_CHECKING:
    from rag.chain import Pipeline, Request


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


def answer_chain(pipeline: Pipeline) -> Runnable[Request, Answer]:
    """The answering chain in LCEL: condense the follow-up, retrieve, answer (streamed).

    Its steps are the pipeline's own stages (`Pipeline.condense`, `.search`, `.respond`), the
    ones `Pipeline.answer_stream` runs, so it answers exactly as the pipeline does.
    Input: a `rag.chain.Request`; `.stream()` yields progressively longer `Answer`s, the last
    one verified and final."""

    def answer(stream: Iterator[Request]) -> Iterator[Answer]:
        for request in stream:  # one request arrives whole from the lambdas before
            yield from pipeline.respond(request)

    chain = (RunnableLambda(pipeline.condense).with_config(run_name="condense")
             | RunnableLambda(pipeline.search).with_config(run_name="retrieve")
             | RunnableGenerator(answer).with_config(run_name="answer"))
    return chain
