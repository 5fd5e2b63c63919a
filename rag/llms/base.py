"""The LLM backend Protocol and the registry of answering backends, picked by name.

A backend streams text for a list of chat messages and counts tokens the way its model does, so
the prompt builder can fit sources into the context window. Backends load lazily and register
themselves in `rag/llms/__init__.py`, "extractive" among them: it registers without a model
(its answers are the sources' own sentences, built by `rag.extractive`), so the pipeline lists
and picks backends by name with no special case. This module knows nothing about retrieval or
citations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from rag.errors import ConfigError
from rag.settings import Settings


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@runtime_checkable
class LLM(Protocol):
    """A text generator. Implementations raise `LLMError` with the backend name and the fix."""

    name: str

    @property
    def context_tokens(self) -> int:
        """Tokens the model can see (prompt + answer)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's vocabulary (an upper bound is fine)."""
        ...

    def stream(self, messages: Sequence[Message], *, max_tokens: int,
               stop: Sequence[str] = ()) -> Iterator[str]:
        """Yield the answer as it is generated, piece by piece."""
        ...


LLMFactory = Callable[[Settings], LLM]
# A backend registered with no factory answers without a model: the pipeline shows the
# extractive answer it computes for every question anyway (rag.extractive).
_REGISTRY: dict[str, LLMFactory | None] = {}
_INSTANCES: dict[tuple[str, str], LLM] = {}


def register_llm(name: str, factory: LLMFactory | None) -> None:
    """Make `name` an answering backend: `factory` builds its model; None, it has none."""
    _REGISTRY[name] = factory


def llm_names() -> list[str]:
    """Every answering backend, extractive ones included."""
    return sorted(_REGISTRY)


def is_extractive(name: str) -> bool:
    """A registered backend without a model; unknown names are not (`get_llm` reports them)."""
    return name in _REGISTRY and _REGISTRY[name] is None


def get_llm(name: str, settings: Settings) -> LLM:
    """One instance per backend and settings: local models are loaded once per process."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown LLM backend '{name}'; choose one of {llm_names()} "
            "(RAG_LLM_BACKEND or --backend)"
        )
    factory = _REGISTRY[name]
    if factory is None:
        raise ConfigError(f"the '{name}' backend answers with the sources' own sentences; "
                          "it has no model to load")
    key = (name, settings.model_dump_json())
    if key not in _INSTANCES:
        _INSTANCES[key] = factory(settings)
    return _INSTANCES[key]
