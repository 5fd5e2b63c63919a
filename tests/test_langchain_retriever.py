"""LangChain's own standard retriever tests (langchain-tests), run against PaperRetriever; and the
LCEL answering chain, which must answer as `Pipeline` does."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from rag.chain import Request
from rag.langchain_adapters import PaperRetriever, answer_chain


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


@pytest.mark.slow
def test_lcel_chain_answers_as_the_pipeline_does(pipeline) -> None:
    """`answer_chain` composes the pipeline's own stages; streamed, it ends in the same answer
    `Pipeline.answer` gives, follow-ups included (its condense step carries the paper over)."""
    history = [{"role": "user", "content": "What's DeBERTa?"},
               {"role": "assistant", "content": "A model."}]
    question = "how did the single model do on SuperGLUE compared with the human baseline?"
    steps = list(answer_chain(pipeline).stream(Request(question, history)))
    direct = pipeline.answer(question, history)
    assert len(steps) >= 2, "the chain streams: several partial answers, then the final one"
    final = steps[-1]
    assert final.text == direct.text and "89.9" in final.text
    assert final.citations == direct.citations
    assert final.standalone_question == direct.standalone_question
