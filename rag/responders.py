"""Adapters from the pipeline to `rag eval`'s Responder: retrieval-only or full answers."""

from __future__ import annotations

from rag.chain import Pipeline
from rag.evaluation import Responder, Response
from rag.settings import Settings


def make_responder(settings: Settings, backend: str | None = None, k: int = 5,
                   retrieval_only: bool = False, pipeline: Pipeline | None = None) -> Responder:
    """The app's own code path, as a function of (question, history). Models and the library
    are loaded first, as the app loads them at start, so latencies are those users see."""
    pipe = pipeline or Pipeline(settings)
    pipe.warm_up()

    def retrieval(question: str, history: list[dict[str, str]]) -> Response:
        _, hits, _ = pipe.retrieve(question, history, k=k)
        return Response(answer="", abstained=False, sources=hits)

    def answering(question: str, history: list[dict[str, str]]) -> Response:
        a = pipe.answer(question, history, k=k, backend=backend)
        return Response(answer=a.text, abstained=a.abstained, sources=a.sources,
                        ttft_s=a.timings.get("ttft_s"))

    return retrieval if retrieval_only else answering
