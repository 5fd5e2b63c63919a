"""LangChain's own standard retriever tests (langchain-tests), run against PaperRetriever."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from rag.langchain_adapters import PaperRetriever


@pytest.mark.slow
class TestPaperRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _settings(self, corpus_settings) -> None:
        type(self)._corpus_settings = corpus_settings

    @property
    def retriever_constructor(self) -> type[PaperRetriever]:
        return PaperRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"settings": self._corpus_settings}

    @property
    def retriever_query_example(self) -> str:
        return "graph neural networks"


@pytest.mark.slow
def test_documents_carry_citation_metadata(corpus_settings) -> None:
    docs = PaperRetriever(settings=corpus_settings, k=3).invoke("DeBERTa disentangled attention")
    assert len(docs) == 3
    meta = docs[0].metadata
    assert meta["title"].lower().startswith("deberta") and meta["venue"] == "ICLR"
    assert meta["year"] == 2021 and meta["url"].startswith("https://openreview.net")
    assert "Pengcheng He" in meta["authors"] and meta["citation"]
