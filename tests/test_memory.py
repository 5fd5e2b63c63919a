"""rag.memory: freed memory held by glibc's arenas goes back to the OS, and the busy path's
calls are rate-limited."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from rag import memory

# In a fresh process: a thread allocates ~240 MB through malloc and frees all but every 200th
# block, which pins its arena; RSS stays up until `release_freed`.
_PROBE = """
import re, threading
from pathlib import Path
from rag.memory import release_freed
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024
kept = []
def work():
    blobs = [bytes(4096) for _ in range(60_000)]
    kept.extend(blobs[::200])
    blobs.clear()
t = threading.Thread(target=work); t.start(); t.join()
before = rss(); ran = release_freed(); print(before, rss(), ran)
"""


@pytest.mark.skipif(memory._trim is None, reason="not glibc: nothing to release")
def test_freed_memory_goes_back_to_the_os() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    before, after, ran = int(out[0]), int(out[1]), out[2]
    assert ran == "True"
    assert before - after >= 100, f"RSS {before} -> {after} MB after release_freed"


@pytest.mark.skipif(memory._trim is None, reason="not glibc: nothing to release")
def test_release_on_the_busy_path_is_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_last", 0.0)
    assert memory.release_freed(every_s=60)
    assert not memory.release_freed(every_s=60)  # again within the minute: skipped
    assert memory.release_freed()  # an explicit release (after a library change) always runs
    monkeypatch.setattr(memory, "_last", time.monotonic() - 61)
    assert memory.release_freed(every_s=60)
