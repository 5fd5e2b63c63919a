"""PDF parsing in a child process with bounds: address space, CPU seconds and wall-clock time.

A hostile PDF (a decompression bomb, thousands of pages, millions of characters on one page,
deeply nested objects) must not take the app down with it, so `parse_pdf_bounded` hands the
bytes to a worker process that runs `rag.parsers.pdf.parse_pdf` unchanged under
`resource.setrlimit` (RLIMIT_AS: `parse_memory_mb`; RLIMIT_CPU: `parse_cpu_s` per file) and
waits at most `parse_timeout_s`. On a limit the worker is killed, the file is refused with a
`DocumentError` naming it and the limit's setting, and the next file gets a fresh worker.

One worker is kept and reused across files (one at a time, under a lock), so a normal file
costs a pipe round trip, not a process start (the overhead on the real papers is in
RELIABILITY.md). It is a plain `python -m rag.parsers.sandbox` child speaking length-prefixed
pickles over its stdin/stdout, not a multiprocessing pool: subtle: both 'spawn' and
'forkserver' re-run the parent's `__main__` in each worker, and `app.py` builds the whole app
(models included) at import, so a pool worker would load the models it is meant to avoid.

This module does not parse anything itself, nor decide which files are PDFs.
"""

from __future__ import annotations

import atexit
import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from rag.errors import DocumentError
from rag.models import Paper

_HEADER = struct.Struct("!Q")


@dataclass(frozen=True)
class ParseLimits:
    """Bounds for one PDF: wall-clock seconds, CPU seconds, address space in MiB."""

    timeout_s: float = 60.0
    cpu_s: float = 120.0
    memory_mb: int = 1024


class _Worker:
    """One child process; `parse` sends a file and waits for its papers (or its death)."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rag.parsers.sandbox", str(limits.memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def parse(self, data: bytes, source: str) -> tuple[str, Any]:
        """('ok', papers) | ('error', message) | ('timeout', None) | ('died', returncode)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.limits.timeout_s
        try:
            _send(self.proc.stdin, (data, source, self.limits.cpu_s))
            reply = _receive(self.proc.stdout, deadline)
        except (BrokenPipeError, EOFError):
            self.kill()
            return "died", self.proc.returncode
        if reply is None:
            self.kill()
            return "timeout", None
        return reply


_lock = threading.Lock()
_worker: _Worker | None = None


def parse_pdf_bounded(data: bytes, source: str, path: str, limits: ParseLimits) -> list[Paper]:
    """`rag.parsers.pdf.parse_pdf(data, source)` in the worker; DocumentError(path, ...) when the
    PDF is refused by the parser or breaks a limit."""
    global _worker
    with _lock:  # one file at a time: the timeout measures this file, not a queue
        if _worker is None or not _worker.alive() or _worker.limits != limits:
            if _worker is not None:
                _worker.kill()
            _worker = _Worker(limits)
        status, value = _worker.parse(data, source)
        if status not in ("ok", "error"):
            _worker = None  # killed or dead: the next file starts a fresh one
    if status == "ok":
        return list(value)
    if status == "error":
        raise DocumentError(path, str(value))
    raise DocumentError(path, _limit_message(source, status, value, limits))


def shutdown() -> None:
    """Stop the worker (it also exits by itself when its parent closes the pipe)."""
    global _worker
    with _lock:
        if _worker is not None:
            _worker.kill()
            _worker = None


atexit.register(shutdown)


def _limit_message(source: str, status: str, code: int | None, limits: ParseLimits) -> str:
    if status == "timeout":
        return (f"'{source}' took longer than {limits.timeout_s:g} s to read (limit "
                "RAG_PARSE_TIMEOUT_S); skipped")
    if code == -signal.SIGXCPU:
        return (f"'{source}' used more than {limits.cpu_s:g} s of CPU to read (limit "
                "RAG_PARSE_CPU_S); skipped")
    if code == 3:  # the worker's exit code for MemoryError
        return (f"'{source}' needed more than {limits.memory_mb} MiB of memory to read (limit "
                "RAG_PARSE_MEMORY_MB); skipped")
    how = (f"signal {signal.Signals(-code).name}" if code is not None and code < 0
           else f"exit code {code}")
    return (f"'{source}' crashed the PDF reader ({how}; it may have needed more than "
            f"{limits.memory_mb} MiB, limit RAG_PARSE_MEMORY_MB); skipped")


# --- the pipe protocol: an 8-byte length, then a pickle ----------------------------------------------
def _send(pipe: IO[bytes], obj: object) -> None:
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(_HEADER.pack(len(blob)) + blob)
    pipe.flush()


def _receive(pipe: IO[bytes], deadline: float | None = None) -> Any:
    """The next object, None when the deadline passes first; EOFError when the pipe closes."""
    fd = pipe.fileno()
    buf = bytearray()
    need = _HEADER.size
    header_read = False
    while True:
        while len(buf) < need:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    return None
            chunk = os.read(fd, min(need - len(buf), 1 << 20))
            if not chunk:
                raise EOFError("the worker closed its pipe")
            buf += chunk
        if header_read:
            return pickle.loads(bytes(buf))
        need = _HEADER.unpack(bytes(buf))[0]
        buf = bytearray()
        header_read = True


# --- the worker side -----------------------------------------------------------------------------
def _serve(memory_mb: int) -> None:
    from rag.parsers import pdf  # imported before the address-space limit is set

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cap = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            data, source, cpu_s = _receive(stdin)
        except EOFError:
            return
        # RLIMIT_CPU counts the process's whole life: allow this file cpu_s more than so far
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(used.ru_utime + used.ru_stime + cpu_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        try:
            reply: tuple[str, Any] = ("ok", pdf.parse_pdf(data, source))
        except pdf.PdfError as exc:
            reply = ("error", str(exc))
        except MemoryError:
            os._exit(3)
        except RecursionError:
            reply = ("error", "its objects are nested too deeply to read")
        except Exception as exc:  # the parent turns any other failure into a skip, not a crash
            reply = ("error", f"could not be read ({type(exc).__name__}: {exc})")
        del data
        _send(stdout, reply)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
