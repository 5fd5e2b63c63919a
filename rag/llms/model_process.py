"""Supervision of the local model's process: start it on first use, tell a crash from a hang,
stop it with the app.

Why a process of its own: llama.cpp is native code. A crash in it (an AMX kernel that segfaults,
the OOM killer, a corrupt GGUF) would take the whole app down, for every user, if the model ran
inside the app. So the model runs in `python -m rag.llms.model_server` (llama_cpp.server plus a
few routes) on a free loopback port, and the app talks to it over HTTP as to any
OpenAI-compatible server. Chosen over a worker process with a pipe because llama_cpp.server
already queues requests, streams, and speaks the protocol the `openai` backend handles, so the
local and hosted paths share one client and one set of error translations.

A `ModelProcess` starts its child lazily, once (under a lock), and reports why it ended
("signal 11", "exit code 1"). It never outlives the app: the child exits when its stdin pipe
closes, which happens however the app ends, and `stop_all` runs at interpreter exit. This module
knows nothing about prompts or answers.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any

from rag.errors import LLMError, ModelStoppedError

BACKEND = "llamacpp"
_LIVE: weakref.WeakSet[ModelProcess] = weakref.WeakSet()


def free_port() -> int:
    """A loopback port that was free a moment ago (the child binds it right away)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command() -> list[str]:
    """How the model process is started (the tests swap in a misbehaving stand-in)."""
    return [sys.executable, "-m", "rag.llms.model_server"]


def describe_exit(returncode: int) -> str:
    """'signal 11 (SIGSEGV)' for a process killed by a signal, 'exit code N' otherwise."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
        return f"signal {-returncode} ({name})"
    return f"exit code {returncode}"


class ModelProcess:
    """One model server child for one GGUF file and context size."""

    def __init__(self, model_path: Path, *, n_ctx: int, threads: int,
                 startup_timeout_s: float = 120.0) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._base = ""
        self.info: dict[str, Any] = {}
        self.starts = 0
        self._lock = threading.Lock()
        _LIVE.add(self)

    # --- lifecycle -------------------------------------------------------------------------------
    def ensure(self) -> str:
        """The server's base URL (http://127.0.0.1:PORT), starting a fresh child if none runs."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            return self._base

    def _start(self) -> None:
        self._discard()
        port = free_port()
        fd, log = tempfile.mkstemp(prefix="rag-model-", suffix=".log")
        self._log = Path(log)
        command = [*server_command(), "--model", str(self.model_path), "--port", str(port),
                   "--n-ctx", str(self.n_ctx), "--threads", str(self.threads), "--watch-parent"]
        # stdin is a pipe the app never writes: the child exits when it closes. Its own session
        # keeps a Ctrl-C in the app's terminal from reaching it mid-answer.
        try:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=fd,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            os.close(fd)  # the child has its own copy
        self.starts += 1
        self._base = f"http://127.0.0.1:{port}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None and code < 0:  # killed while loading: a crash, not a bad file
                raise ModelStoppedError(BACKEND, f"the local model stopped "
                                        f"({describe_exit(code)}) while loading")
            if code is not None:
                raise LLMError(BACKEND, f"cannot load GGUF model '{self.model_path}': the model "
                               f"process ended with {describe_exit(code)}{self._log_tail()}; "
                               "set RAG_LLM_MODEL_PATH to a valid .gguf file")
            try:
                self.info = self.get("/rag/info", timeout=2.0)
                return
            except (OSError, ValueError):
                time.sleep(0.1)
        self.kill()
        raise LLMError(BACKEND, f"the model process for '{self.model_path}' was not ready "
                       f"within {self.startup_timeout_s:g}s{self._log_tail()}")

    def failure(self, wait_s: float = 0.0) -> str | None:
        """Why the child ended ('signal 9 (SIGKILL)'), or None while it runs.

        `wait_s`: how long to give a child that is just dying (its sockets close a moment
        before its exit status is there) to finish."""
        if self._proc is None:
            return None
        try:
            code = self._proc.wait(timeout=wait_s) if wait_s else self._proc.poll()
        except subprocess.TimeoutExpired:
            return None
        return None if code is None else describe_exit(code)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def kill(self) -> None:
        """End the child at once (a hung model gets no grace)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self, grace_s: float = 5.0) -> None:
        """Close the child's stdin (it exits by itself), then kill it if it lingers."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=grace_s)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._discard()

    def _discard(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc = None
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None

    # --- HTTP ------------------------------------------------------------------------------------
    def get(self, path: str, timeout: float) -> Any:
        with urllib.request.urlopen(self._base + path, timeout=timeout) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any], timeout: float) -> Any:
        request = urllib.request.Request(
            self._base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")[:300]
            raise ValueError(f"HTTP {exc.code}: {detail}") from exc

    def _log_tail(self, chars: int = 800) -> str:
        if self._log is None or not self._log.exists():
            return ""
        text = self._log.read_text(errors="replace").strip()
        return f" (its log ends: …{text[-chars:]})" if text else ""


@atexit.register
def stop_all() -> None:
    """Stop every model process this interpreter started."""
    for proc in list(_LIVE):
        proc.stop(grace_s=2.0)
