"""Hand memory the process has freed back to the operating system.

glibc's malloc keeps freed memory in its arenas (one per thread that allocated, up to eight per
core) for reuse, and returns only what lies at the top of the main heap. A long-running app
frees a lot in the middle of its arenas: each library change opens a new Chroma System and stops
the replaced one, and the embedder runs in whichever request thread asks. Measured on the app's
own pipeline (2 users answering without pause, a paper added every 10 s, 10 minutes), RSS grew
109 MB, and `malloc_trim(0)` then brought it 115 MB *below* where it started: the growth was
freed memory held by the allocator, not a leak. `release_freed` asks glibc to return it; on
other C libraries (musl, macOS) it does nothing.

It frees nothing in use and changes no result; it only costs the call (a walk over the arenas,
milliseconds), so the busy path rate-limits it (`every_s`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable

_lock = threading.Lock()
_last = 0.0


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_trim = _load_trim()


def release_freed(every_s: float = 0.0) -> bool:
    """Return freed heap memory to the OS (glibc `malloc_trim(0)`), unless it was done less than
    `every_s` seconds ago; True when it ran."""
    global _last
    if _trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if every_s and now - _last < every_s:
            return False
        _last = now
    _trim(0)
    return True
