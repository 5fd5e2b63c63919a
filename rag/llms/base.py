"""The LLM backend Protocol and the registry that picks one by name.

A backend streams text for a list of chat messages and counts tokens the way its model does, so
the prompt builder can fit sources into the context window. Backends load lazily and register
themselves in `rag/llms/__init__.py`. The `extractive` answerer is not an LLM and lives in
`rag.extractive`; this module knows nothing about retrieval or citations.
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
_REGISTRY: dict[str, LLMFactory] = {}
_INSTANCES: dict[tuple[str, str], LLM] = {}


def register_llm(name: str, factory: LLMFactory) -> None:
    _REGISTRY[name] = factory


def llm_names() -> list[str]:
    return sorted(_REGISTRY)


def get_llm(name: str, settings: Settings) -> LLM:
    """One instance per backend and settings: local models are loaded once per process."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown LLM backend '{name}'; choose one of {[*llm_names(), 'extractive']} "
            "(RAG_LLM_BACKEND or --backend)"
        )
    key = (name, settings.model_dump_json())
    if key not in _INSTANCES:
        _INSTANCES[key] = _REGISTRY[name](settings)
    return _INSTANCES[key]
