"""Any OpenAI-compatible chat server (llama_cpp.server, llama.cpp's llama-server, vLLM, Ollama,
the OpenAI API) through the official `openai` client, streaming `chat.completions`.

Every failure becomes an `LLMError` that says what to do: a dead server, a refused key, an
unknown model, rate limiting, a server error (with its status). A server's "prompt too long"
answer becomes `ContextOverflowError`. A call, retries included, gives up within
`llm_timeout_s`: a refused or reset connection, 429, 502, 503 and 504 are retried here (the
client's own retries are off), waiting what Retry-After asks when it asks at most
MAX_RETRY_AFTER_S, but never past that deadline; 500, 400 and a malformed answer are not retried.
Failures the server or network may get over (those, timeouts, a stream that breaks off or cannot
be read) raise `LLMUnavailableError`, so the answer falls back to the sources with a note; a
refused key or unknown model raise a plain `LLMError` (the user must change a setting).

It does not know the server's tokenizer: `count_tokens` is an upper-bound estimate (see there),
and `context_tokens` is whatever RAG_LLM_CONTEXT_TOKENS says the server's window is.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from rag.errors import ContextOverflowError, LLMError, LLMUnavailableError
from rag.llms.base import Message
from rag.settings import Settings

BACKEND = "openai"
ATTEMPTS = 3  # one call and two retries, all inside llm_timeout_s
FIRST_BACKOFF_S = 0.5
MIN_ATTEMPT_S = 0.5  # no retry unless at least this much of the deadline is left for it
MAX_RETRY_AFTER_S = 30.0  # a server asking for a longer wait is not waited for
RETRY_STATUSES = frozenset({429, 502, 503, 504})  # overloaded or restarting; 500 is a bug
_OVERFLOW = re.compile(r"context (length|window|size)|maximum context|exceed_context|"
                       r"too many tokens|prompt is too long", re.I)


class OpenAICompatLLM:
    """Chat completions from an OpenAI-compatible HTTP server; the client is made on first use."""

    name = BACKEND

    def __init__(self, settings: Settings, *, base_url: str | None = None,
                 model: str | None = None, attempts: int = ATTEMPTS) -> None:
        """`base_url`, `model`: another server than the settings name (the local model's
        process uses this); `attempts`: 1 where a retry cannot help."""
        self._settings = settings
        self.base_url = (base_url or settings.openai_base_url).rstrip("/")
        self.model = model or settings.openai_model
        self._attempts = attempts
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def context_tokens(self) -> int:
        return self._settings.llm_context_tokens

    def count_tokens(self, text: str) -> int:
        """An upper bound without the server's tokenizer: ceil(characters / 3).

        BPE vocabularies average about 4 characters of English per token; dividing by 3 errs
        toward overcounting, so a prompt sized with it fits. Dense symbols or non-Latin scripts
        can beat the bound, which is why the server's own overflow answer is still handled.
        """
        return math.ceil(len(text) / 3)

    def stream(self, messages: Sequence[Message], *, max_tokens: int,
               stop: Sequence[str] = ()) -> Iterator[str]:
        """Open the stream now (connection and HTTP errors raise here), then yield its text."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": self._settings.llm_temperature,
            "stream": True,
        }
        if stop:
            request["stop"] = list(stop)
        return self._pieces(self._open(request), request)

    def stream_completion(self, prompt: str, *, max_tokens: int,
                          stop: Sequence[str] = ()) -> Iterator[str]:
        """The same for a plain-text prompt (`/completions`), for base models."""
        request: dict[str, Any] = {
            "model": self.model, "prompt": prompt, "max_tokens": max_tokens,
            "temperature": self._settings.llm_temperature, "stream": True,
        }
        if stop:
            request["stop"] = list(stop)
        return self._pieces(self._open(request), request)

    # --- helpers -----------------------------------------------------------------------------
    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import openai

                secret = self._settings.openai_api_key
                key = secret.get_secret_value() if secret else os.environ.get("OPENAI_API_KEY")
                self._client = openai.OpenAI(
                    base_url=self.base_url, api_key=key or "not-needed",
                    timeout=self._settings.llm_timeout_s, max_retries=0)
            return self._client

    def _open(self, request: dict[str, Any]) -> Any:
        """Create the stream, retrying transient failures while the deadline allows."""
        import openai

        client = self._get_client()
        create = (client.completions.create if "prompt" in request
                  else client.chat.completions.create)
        deadline = time.monotonic() + self._settings.llm_timeout_s
        for attempt in range(self._attempts):
            remaining = deadline - time.monotonic()
            try:
                return create(**request, timeout=max(remaining, 0.05))
            except openai.APIError as exc:
                asked = _retry_after(exc)
                wait = FIRST_BACKOFF_S * 2**attempt if asked is None else asked
                retry_at = time.monotonic() + wait
                last = (attempt == self._attempts - 1 or retry_at >= deadline - MIN_ATTEMPT_S
                        or wait > MAX_RETRY_AFTER_S)
                if last or not _transient(exc):
                    raise self._translate(exc, attempt + 1) from exc
                time.sleep(wait)
            except ValueError as exc:  # a non-streamed answer that is not JSON
                raise self._malformed(exc) from exc
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _pieces(self, response: Any, request: dict[str, Any]) -> Iterator[str]:
        import openai

        finished, produced = False, False
        try:
            for chunk in response:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finished = finished or choice.finish_reason is not None
                delta = getattr(choice, "delta", None)  # chat chunks; completion chunks: .text
                piece = delta.content if delta is not None else getattr(choice, "text", None)
                if piece:
                    produced = True
                    yield piece
        except openai.APIError as exc:
            raise self._translate(exc, 1) from exc
        except ValueError as exc:  # an event that is not JSON, or not a completion chunk
            raise self._malformed(exc) from exc
        except Exception as exc:  # the transport broke mid-stream (read timeout, reset)
            raise LLMUnavailableError(
                BACKEND, f"the answer from {self.base_url} broke off ({type(exc).__name__}: "
                f"{exc}); check the server, or raise RAG_LLM_TIMEOUT_S if it is slow") from exc
        finally:
            response.close()
        if not finished:
            raise self._unfinished(request, produced)

    def _unfinished(self, request: dict[str, Any], produced: bool) -> LLMError:
        """A stream that ends without a finish reason failed on the server. llama_cpp.server
        answers 200 and then closes an empty stream when the prompt is over its window, so ask
        once more without streaming (one token) to get the real error."""
        if not produced:
            try:
                self._open({**request, "stream": False, "max_tokens": 1})
            except LLMError as exc:
                return exc
        return LLMUnavailableError(BACKEND, f"{self.base_url} closed the stream before the "
                                   "answer was finished; check the server's log")

    def _malformed(self, exc: Exception) -> LLMError:
        return LLMUnavailableError(
            BACKEND, f"{self.base_url} sent an answer that is not an OpenAI-compatible completion "
            f"({type(exc).__name__}: {str(exc)[:200]}); check that RAG_OPENAI_BASE_URL points at "
            "a chat completions server (it usually ends in /v1)")

    def _translate(self, exc: Exception, attempts: int) -> LLMError:
        """One LLMError per failure kind, each naming the setting that fixes it."""
        import openai

        url, tries = self.base_url, f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(exc, openai.APITimeoutError):
            return LLMUnavailableError(BACKEND, f"{url} did not answer within "
                                       f"{self._settings.llm_timeout_s:g}s; check the server or "
                                       "raise RAG_LLM_TIMEOUT_S")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return LLMUnavailableError(
                BACKEND, f"cannot reach {url} ({cause}){tries} — is the server running? start "
                "one with `python -m llama_cpp.server --model <file.gguf> --port 8080` or set "
                "RAG_OPENAI_BASE_URL")
        status = getattr(exc, "status_code", None)
        detail = _detail(exc)
        code = str(getattr(exc, "code", "") or "")
        if status in (401, 403):
            return LLMError(BACKEND, f"{url} refused the API key (HTTP {status}: {detail}); "
                            "set OPENAI_API_KEY or RAG_OPENAI_API_KEY")
        if status == 404 or code == "model_not_found":
            return LLMError(BACKEND, f"model '{self.model}' not found at {url} (HTTP {status}: "
                            f"{detail}); set RAG_OPENAI_MODEL to a model the server lists at "
                            f"{url}/models, or check that RAG_OPENAI_BASE_URL ends in /v1")
        asked = _retry_after(exc)
        later = f"; it asks to retry after {asked:g}s" if asked is not None else ""
        if status == 429:
            return LLMUnavailableError(
                BACKEND, f"rate limited by {url} (HTTP 429: {detail}){tries}{later}; wait and "
                "try again, or use a server with more capacity")
        if status is not None and status >= 500:
            return LLMUnavailableError(
                BACKEND, f"server error at {url} (HTTP {status}: {detail}){tries}{later}; "
                "check the server's log")
        if _OVERFLOW.search(f"{code} {detail}"):
            return ContextOverflowError(
                BACKEND, f"the server says the prompt is too long ({detail}); set "
                f"RAG_LLM_CONTEXT_TOKENS (now {self.context_tokens}) to the server's window "
                "or use fewer sources")
        where = f"HTTP {status}" if status is not None else type(exc).__name__
        return LLMError(BACKEND, f"{url} rejected the request ({where}: {detail})")


def _transient(exc: Exception) -> bool:
    """Worth another try: a refused or reset connection (a timeout already used the time), or
    a server that says it is overloaded or restarting (RETRY_STATUSES). A 500 is a bug on the
    server and a 4xx a bad request: asking again gets the same answer."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return False
    if isinstance(exc, openai.APIConnectionError):
        return True
    return getattr(exc, "status_code", None) in RETRY_STATUSES


def _retry_after(exc: Exception) -> float | None:
    """Seconds the server's Retry-After header asks for (a number or an HTTP date), if any."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _detail(exc: Exception) -> str:
    """The server's own error message, short."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else body
    text = str(message or getattr(exc, "message", None) or exc).strip()
    return text if len(text) <= 300 else text[:297] + "..."
