"""Errors the package raises on purpose.

Every message quotes the bad value and says how to fix it. Only the edges (the CLI and the
Gradio app) turn these into user-facing text; the library code just raises them.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class: anything the user can act on."""


class ConfigError(RagError):
    """A setting has a value that cannot work (bad path, unknown backend, bad combination)."""


class DocumentError(RagError):
    """A document cannot be read or parsed; the indexer skips it and names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoreError(RagError):
    """The vector store is unreachable or inconsistent."""


class EmbeddingError(RagError):
    """The embedding model cannot be loaded."""


class LLMError(RagError):
    """An LLM backend failed: server down, timeout, HTTP error, missing model file."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"LLM backend '{backend}': {message}")
        self.backend = backend


class ContextOverflowError(LLMError):
    """The prompt does not fit the model's context window even after trimming."""


class LLMUnavailableError(LLMError):
    """The backend could not answer this question, for a reason it may get over: the server is
    unreachable, timed out, rate-limits, failed (5xx), or sent a broken or unreadable stream.

    The answer falls back to the sources (the extractive answer) with this message as a note."""


class ModelStoppedError(LLMUnavailableError):
    """The local model's process crashed, was killed, or hung and was stopped.

    The answer falls back to the sources (the extractive answer) with this message as a note;
    the next question starts a fresh model process."""
