"""The library and what is derived from it, saved beside the store, so a start reads them back.

A start used to read every chunk out of Chroma and rebuild, over the whole library, the
extractive reader's IDF and vocabulary and the name index: at 33k chunks that was about 25 s
before the first answer, and it grows with the library. A snapshot holds all of it as it was at
one store fingerprint, in `<data_dir>/snapshot/<collection>.pkl`. Read back, it serves at once
when the store still has that fingerprint; when the store changed since, `rag.library` reads
only the papers that differ and the reader and name index follow that change, as they follow any
other (`Library.changes_since`). So a start costs what changed since the last snapshot, not the
library.

The format is pickle, as Chroma persists its own index metadata: the file lives in the data
directory, which only its owner writes. A snapshot is read back only by the code that wrote it:
its stamp hashes the modules whose classes it holds, so any change of them rebuilds it once.
Writing is atomic (a temporary file renamed over the old one). A missing, damaged or foreign
snapshot is ignored (the library is then read whole and the snapshot written again). This module
does not decide when to save; `rag.chain.Pipeline` does.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rag.models import Chunk, Paper
from rag.settings import Settings

log = logging.getLogger(__name__)

# The modules whose objects a snapshot holds (chunks, papers, the reader's state, the name index)
_MODULES = ("models.py", "library.py", "lexical.py", "extractive.py", "relevance.py", "query.py",
            "text.py", "snapshot.py")


@dataclass
class Snapshot:
    """A library as it was at `fingerprint`, and what was derived from it then."""

    fingerprint: str
    chunks: dict[str, Chunk]
    by_paper: dict[str, list[Chunk]]
    papers: dict[str, Paper]
    reader: bytes | None = None  # `ExtractiveAnswerer.state()`, frozen
    names: Any = None  # `rag.query.NameIndex`
    signal: tuple[int, str] | None = None  # the store's change signal the library was read at
    archive: dict[str, bytes] = field(default_factory=dict)  # `Library.archive`


@lru_cache(maxsize=1)
def stamp() -> str:
    """Changes whenever the code of the snapshot's classes changes."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _MODULES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def freeze(state: Any) -> bytes:
    """`state` pickled now (a reader's, which its owner changes in place later)."""
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def thaw(frozen: bytes) -> Any:
    with _collector_paused():
        return pickle.loads(frozen)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Unpickling a library makes millions of objects; the cycle collector runs every 700 new
    ones and, more and more often as they survive, walks all of them again. Paused, reading back
    250k chunks takes 1.8-2.3 s, not 3.4-4.1 s (nothing unpickled is garbage to collect)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def is_current(lib: Any) -> bool:
    """Whether the saved snapshot is `lib` (the library it restored, unchanged since)."""
    return bool(lib.derived) and lib.derived.get("fingerprint") == lib.fingerprint


def path_for(settings: Settings, collection: str) -> Path:
    return settings.data_dir / "snapshot" / f"{collection}.pkl"


def save(settings: Settings, collection: str, snapshot: Snapshot) -> Path:
    """Write `snapshot` whole or not at all (a crash leaves the previous one)."""
    path = path_for(settings, collection)
    path.parent.mkdir(exist_ok=True)  # not the data directory: it may have been removed
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            pickle.dump((stamp(), snapshot), f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    _sweep(path)
    return path


def _sweep(path: Path) -> None:
    """Remove what saves killed part-way left (`<name>.<pid>.tmp` an hour old)."""
    for stray in path.parent.glob(f"{path.name}.*.tmp"):
        try:
            if time.time() - stray.stat().st_mtime > 3600:
                stray.unlink()
        except OSError:
            pass  # another process's save finished with it meanwhile


def load(settings: Settings, collection: str) -> Snapshot | None:
    """The saved snapshot, or None when there is none this code can read."""
    path = path_for(settings, collection)
    try:
        with path.open("rb") as f, _collector_paused():
            saved_stamp, snapshot = pickle.load(f)
    except FileNotFoundError:
        return None
    except Exception as exc:  # damaged or written by other code: read the store instead
        log.warning("ignoring the library snapshot %s (%s); reading the store whole", path, exc)
        return None
    if saved_stamp != stamp() or not isinstance(snapshot, Snapshot):
        log.info("the library snapshot %s was written by other code; reading the store", path)
        return None
    return snapshot
