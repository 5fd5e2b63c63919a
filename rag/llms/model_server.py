"""The local model's own process: `llama_cpp.server` for one GGUF file, plus what the app needs
to know about the model before it sends a prompt.

Run by `rag.llms.model_process` as `python -m rag.llms.model_server --model F --port P ...`; it
is not meant to be started by hand (for that, use `python -m llama_cpp.server` and the `openai`
backend). Besides llama_cpp.server's OpenAI-compatible routes it serves:

- `GET /rag/info`: the context window in use, the one the model was trained for, and whether the
  GGUF carries a chat template (instruction model) or not (base model);
- `POST /rag/tokenize`: token ids of a text, with or without special-token parsing;
- `POST /rag/count_chat`: tokens of messages rendered with the model's chat template.

These use a second, vocabulary-only copy of the model, so they answer while a generation runs.
The process ends itself when its parent dies: it holds the read end of a pipe on stdin and exits
at end-of-file, which the kernel delivers however the parent ended (even by SIGKILL). This module
does no retrieval, prompting or verification.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel


# Request bodies live at module level: FastAPI resolves annotations by name, and this module's
# postponed annotations could not be resolved inside a function.
class TokenizeBody(BaseModel):
    text: str
    special: bool = False
    add_bos: bool = False


class ChatBody(BaseModel):
    messages: list[dict[str, str]]


def _exit_when_parent_dies() -> None:
    """Block on stdin; the parent never writes, so EOF means it is gone."""
    def watch() -> None:
        try:
            while sys.stdin.buffer.read(1):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rag.llms.model_server")
    p.add_argument("--model", required=True, help="GGUF file")
    p.add_argument("--port", type=int, required=True, help="loopback port to serve on")
    p.add_argument("--n-ctx", type=int, default=2048, help="context window wanted")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--watch-parent", action="store_true",
                   help="exit when stdin reaches end-of-file (the parent has died)")
    return p.parse_args(argv)


class ModelFacts:
    """What the app asks about the model, from a vocabulary-only load (no weights computed)."""

    def __init__(self, path: str, wanted_ctx: int) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.vocab = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        # A vocabulary-only load leaves the hyper-parameters unset: read the GGUF's own key.
        meta = self.vocab.metadata
        self.trained = int(meta.get(f"{meta.get('general.architecture', '')}.context_length", 0))
        # Never run past what the model was trained on.
        self.n_ctx = min(wanted_ctx, self.trained) if self.trained > 0 else wanted_ctx
        template = self.vocab.metadata.get("tokenizer.chat_template")
        self.chat: Any = None
        if template:
            self.chat = Jinja2ChatFormatter(
                template=template, eos_token=self._text(self.vocab.token_eos()),
                bos_token=self._text(self.vocab.token_bos()))

    def _text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.vocab.detokenize([token], special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, special: bool, add_bos: bool) -> list[int]:
        return list(self.vocab.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def count_chat(self, messages: list[dict[str, str]]) -> int:
        """Tokens of the rendered chat prompt; ValueError when the template rejects it."""
        if self.chat is None:
            raise ValueError("this model has no chat template")
        try:
            prompt = str(self.chat(messages=messages).prompt)
        except Exception as exc:  # jinja2 errors, or the template's own raise_exception
            raise ValueError(str(exc)) from exc
        return len(self.tokenize(prompt, special=True, add_bos=False))


def build_app(args: argparse.Namespace) -> Any:
    from fastapi import HTTPException
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    facts = ModelFacts(args.model, args.n_ctx)
    app = create_app(
        server_settings=ServerSettings(host="127.0.0.1", port=args.port),
        model_settings=[ModelSettings(model=args.model, n_ctx=facts.n_ctx,
                                      n_threads=args.threads, n_threads_batch=args.threads,
                                      verbose=False)],
    )

    @app.get("/rag/info")
    def info() -> dict[str, Any]:
        return {"n_ctx": facts.n_ctx, "n_ctx_train": facts.trained,
                "chat_template": facts.chat is not None, "pid": os.getpid()}

    @app.post("/rag/tokenize")
    def tokenize(body: TokenizeBody) -> dict[str, list[int]]:
        return {"tokens": facts.tokenize(body.text, special=body.special, add_bos=body.add_bos)}

    @app.post("/rag/count_chat")
    def count_chat(body: ChatBody) -> dict[str, int]:
        try:
            return {"tokens": facts.count_chat(body.messages)}
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc

    return app


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    if args.watch_parent:
        _exit_when_parent_dies()
    import uvicorn

    uvicorn.run(build_app(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
