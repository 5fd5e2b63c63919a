"""The injection corpus (`injection_corpus.py`) written and indexed once per session, with the
loopback listener its planted URLs point at; the security and fault tests serve copies of it.

Bind it in a test module with `from injection_library import injection_library`; the index is
built once per session however many modules ask (`_SHARED`, as in app_fixtures)."""

from __future__ import annotations

import http.server
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import LeakServer, _Counter
from injection_corpus import Plant, write_corpus

from rag.settings import Settings

_SHARED: dict[str, Any] = {}


@dataclass
class InjectionLibrary:
    docs: Path
    data: Path
    plants: list[Plant]
    listener: LeakServer  # every request the planted URLs cause lands in listener.hits

    def copy_to(self, dst: Path) -> Path:
        """A private copy of the built store, so an app's uploads never touch this one."""
        shutil.copytree(self.data, dst)
        return dst


@pytest.fixture(scope="session")
def injection_library(tmp_path_factory: pytest.TempPathFactory) -> InjectionLibrary:
    if "lib" not in _SHARED:
        from rag.indexing import Indexer

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
        server.hits = []  # type: ignore[attr-defined]
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        listener = LeakServer(server.server_address[1], server.hits)  # type: ignore[attr-defined]
        root = tmp_path_factory.mktemp("injection")
        plants = write_corpus(root / "docs", listener.url)
        settings = Settings(data_dir=root / "data", corpus_dir=root / "docs")
        report = Indexer(settings).index([root / "docs"])
        assert report.skipped == [] and report.papers == len(plants), report
        _SHARED["lib"] = InjectionLibrary(root / "docs", root / "data", plants, listener)
    lib: InjectionLibrary = _SHARED["lib"]
    return lib
