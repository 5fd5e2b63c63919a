"""One library for several processes, and the first start.

Real Chroma (embedded and `chroma run`), real `rag index` and `python app.py` processes, the real
MiniLM embedder. A running app must answer about a paper another process indexed (and stop
answering about one it removed) within 5 seconds, without a restart; writers never overlap on an
embedded store; an empty store gets the shipped corpus by itself, and nothing else does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import UPLOAD_DOC, AppProcess, start_app, stop_app
from conftest import CORPUS

from rag.errors import StoreError
from rag.indexing import DEFAULT_CORPUS, Indexer, builds_default_library
from rag.retrieval import Retriever
from rag.settings import PROJECT_ROOT, Settings
from rag.store import ChunkStore, no_writer, write_lock

FRESH_WITHIN_S = 5.0
QUOKKA_Q = "Who wrote the paper on quokka attention?"
SEED_DOC = """# Hedgehog Pooling for Graph Networks

Authors: Ivo Spines, Lea Burrow

Venue: ICML 2023

## Abstract

Hedgehog pooling rolls each graph neighbourhood into a single ball node before message passing.
On the Garden-5 benchmark it halves the number of message-passing layers needed.
"""


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return {**env, "RAG_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", **extra}


def rag_index(path: Path, env: dict[str, str], check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    """`rag index PATH --json` in its own process."""
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "index", str(path), "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 or not check, proc.stderr
    return proc


def poll(check: Callable[[], bool], timeout: float, every: float = 0.25,
         since: float | None = None) -> float:
    """Seconds from `since` (default: now) to the start of the first `check()` that holds: a
    question asked then was answered right, however long the answer took on a busy machine.
    Fails when no check started within `timeout` holds."""
    started = time.monotonic() if since is None else since
    while True:
        asked = time.monotonic() - started
        if asked > timeout:
            raise AssertionError(f"not true for a check started within {timeout:.0f} s")
        if check():
            return asked
        time.sleep(every)


def ask(client: Any, question: str) -> dict[str, Any]:
    reply: dict[str, Any] = client.predict(question, api_name="/ask")
    return reply


def knows_quokka(client: Any) -> bool:
    reply = ask(client, QUOKKA_Q)
    return "Ada Quill" in reply["answer"]


def cites_quokka(client: Any) -> bool:
    reply = ask(client, QUOKKA_Q)
    return "Ada Quill" in reply["answer"] or any(
        "Quokka" in s["title"] for s in reply["sources"])


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "hedgehog.md").write_text(SEED_DOC)
    return folder


# --- the writer lock and the change signal (in process, real embedded Chroma) -------------------
def test_one_writer_at_a_time_and_readers_step_aside(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with write_lock(settings):
        with pytest.raises(StoreError) as caught, write_lock(settings, wait_s=0.3):
            pass
        message = str(caught.value)
        assert f"the library in '{settings.data_dir}' is being written by pid {os.getpid()}" \
            in message
        assert "`chroma run --path DIR --port 8000`" in message and "RAG_CHROMA_HOST" in message
        with no_writer(settings) as free:
            assert free is False  # a reader does not re-open the store under a writer
    with no_writer(settings) as free:
        assert free is True
        # ...and a writer waits for readers re-opening it
        with pytest.raises(StoreError), write_lock(settings, wait_s=0.3):
            pass
    with write_lock(settings, wait_s=0.3):  # released: the next writer goes ahead
        pass


@pytest.mark.slow
def test_rag_index_refuses_while_another_writer_holds_the_store(tmp_path: Path, docs: Path
                                                                ) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with write_lock(settings):
        started = time.monotonic()
        proc = rag_index(docs, _env(settings.data_dir), check=False)
        waited = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "is being written by pid" in err and "run this again when it has finished" in err
    assert "chroma run --path DIR --port 8000" in err
    assert waited < 60, "it must give up, not hang"
    assert ChunkStore(settings).count() == 0  # nothing written under another writer
    assert rag_index(docs, _env(settings.data_dir)).returncode == 0  # afterwards it works


@pytest.mark.slow
def test_signal_changes_with_every_indexing_change(tmp_path: Path, docs: Path, minilm) -> None:
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=docs)
    store = ChunkStore(settings)
    empty = store.signal()
    assert empty == (0, "")
    indexer = Indexer(settings, embedder=minilm, store=store)
    indexer.index([docs])
    added = store.signal()
    assert added[0] > 0 and added != empty
    indexer.index([docs])
    assert store.signal() == added  # nothing changed: readers keep their library
    (docs / "hedgehog.md").write_text(SEED_DOC.replace("halves", "thirds"))
    indexer.index([docs])
    changed = store.signal()
    assert changed != added  # same count possible; the marker still moves


@pytest.mark.slow
def test_retriever_follows_rag_index_in_another_process(tmp_path: Path, docs: Path,
                                                        minilm) -> None:
    """The in-process view of the app test below: search, not the whole app."""
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=docs)
    env = _env(settings.data_dir, RAG_CORPUS_DIR=str(docs))
    rag_index(docs, env)
    retriever = Retriever(settings, embedder=minilm, check_every_s=0.5)
    assert {p.title for p in retriever.library.papers.values()} == {
        "Hedgehog Pooling for Graph Networks"}
    retriever.search("warm up the embedder")
    (docs / "quokka.md").write_text(UPLOAD_DOC)
    rag_index(docs, env)

    def top_title() -> str:
        hits = retriever.search("quokka attention pouch router", k=1)
        return hits[0].paper.title if hits else ""

    poll(lambda: top_title().startswith("Quokka Attention"), FRESH_WITHIN_S)
    # the dense side sees the new vectors too (Chroma's HNSW was re-opened, not only BM25)
    vector = minilm.embed(["quokka attention pouch router"])[0]
    assert retriever.library.store is not None
    dense = retriever.library.store.query(vector, 1)
    assert dense[0][0].paper.title.startswith("Quokka Attention")
    (docs / "quokka.md").unlink()
    rag_index(docs, env)
    poll(lambda: not top_title().startswith("Quokka Attention"), FRESH_WITHIN_S)


@pytest.mark.slow
def test_first_start_only_on_an_empty_store_with_the_shipped_corpus(tmp_path: Path,
                                                                    docs: Path) -> None:
    shipped = Settings(data_dir=tmp_path / "a")
    assert shipped.corpus_dir.resolve() == DEFAULT_CORPUS.resolve() == CORPUS.resolve()
    assert builds_default_library(shipped, ChunkStore(shipped))
    # set explicitly to the shipped folder: the same library, so still built
    same = Settings(data_dir=tmp_path / "a", corpus_dir=PROJECT_ROOT / "corpus")
    assert builds_default_library(same, ChunkStore(same))
    elsewhere = Settings(data_dir=tmp_path / "b", corpus_dir=docs)
    assert not builds_default_library(elsewhere, ChunkStore(elsewhere))
    # a store holding anything is the user's
    rag_index(docs, _env(shipped.data_dir))
    assert not builds_default_library(shipped, ChunkStore(shipped))
    # and reading commands leave such stores alone
    for data in (shipped.data_dir, elsewhere.data_dir):
        extra = {"RAG_CORPUS_DIR": str(docs)} if data == elsewhere.data_dir else {}
        out = subprocess.run([sys.executable, "-m", "rag.cli", "stats", "--json"],
                             env=_env(data, **extra), capture_output=True, text=True,
                             timeout=300, check=True)
        assert "indexing the default library" not in out.stderr
        assert json.loads(out.stdout)["papers"] == (1 if data == shipped.data_dir else 0)


# --- real app processes ---------------------------------------------------------------------------
@pytest.fixture
def apps() -> Iterator[list[AppProcess]]:
    started: list[AppProcess] = []
    yield started
    for app in started:
        stop_app(app)


def _client(app: AppProcess) -> Any:
    from gradio_client import Client

    return Client(app.url + "/", verbose=False)


@pytest.mark.slow
@pytest.mark.server
def test_running_app_follows_rag_index_embedded(tmp_path: Path, docs: Path,
                                                apps: list[AppProcess]) -> None:
    """`python app.py` serving an embedded store while `rag index` adds and removes a paper."""
    data = tmp_path / "data"
    env = _env(data, RAG_CORPUS_DIR=str(docs))
    rag_index(docs, env)
    apps.append(start_app([], data, tmp_path / "app.log", env={"RAG_CORPUS_DIR": str(docs)}))
    client = _client(apps[0])
    assert not cites_quokka(client)
    (docs / "quokka.md").write_text(UPLOAD_DOC)
    assert json.loads(rag_index(docs, env).stdout)["papers"] == 2
    seconds = poll(lambda: knows_quokka(client), FRESH_WITHIN_S)
    print(f"embedded: the running app answered about the new paper when asked {seconds:.2f} s "
          "after `rag index` returned")
    (docs / "quokka.md").unlink()
    assert json.loads(rag_index(docs, env).stdout)["chunks_removed"] > 0
    gone = poll(lambda: not cites_quokka(client), FRESH_WITHIN_S)
    print(f"embedded: gone from the running app's answers when asked {gone:.2f} s after "
          "`rag index`")
    assert "Ivo Spines" in ask(client, "Who wrote Hedgehog Pooling for Graph Networks?")["answer"]
    # a fresh process reads the same store whole: nothing was lost by the reloads
    stats = subprocess.run([sys.executable, "-m", "rag.cli", "search", "quokka pouch router",
                            "--json"], env=env, capture_output=True, text=True, timeout=300,
                           check=True)
    assert all("Quokka" not in h["title"] for h in json.loads(stats.stdout))


@pytest.mark.slow
@pytest.mark.server
def test_two_apps_on_a_chroma_server_follow_one_indexer(tmp_path: Path, docs: Path,
                                                        chroma_server: tuple[str, int],
                                                        apps: list[AppProcess]) -> None:
    """The several-machines set-up: one `chroma run`, two app processes (each with its own data
    directory, as on two machines), one `rag index` from a third."""
    host, port = chroma_server
    shared = {"RAG_CHROMA_HOST": host, "RAG_CHROMA_PORT": str(port),
              "RAG_COLLECTION_PREFIX": f"fresh{os.getpid()}", "RAG_CORPUS_DIR": str(docs)}
    rag_index(docs, _env(tmp_path / "indexer", **shared))
    for name in ("a", "b"):
        apps.append(start_app([], tmp_path / name, tmp_path / f"app-{name}.log", env=shared))
    clients = [_client(app) for app in apps]
    assert not any(cites_quokka(c) for c in clients)
    (docs / "quokka.md").write_text(UPLOAD_DOC)
    rag_index(docs / "quokka.md", _env(tmp_path / "indexer", **shared))
    started = time.monotonic()
    with ThreadPoolExecutor(len(clients)) as pool:  # both apps asked side by side
        waits = list(pool.map(lambda c: poll(partial(knows_quokka, c), FRESH_WITHIN_S,
                                             since=started), clients))
    for i, seconds in enumerate(waits, 1):
        print(f"server: app {i} answered about the new paper when asked {seconds:.2f} s after "
              "`rag index` returned")


@pytest.mark.slow
@pytest.mark.server
def test_first_start_indexes_the_default_library_and_answers(tmp_path: Path,
                                                             apps: list[AppProcess]) -> None:
    """`python app.py` on an empty data directory: it serves at once, shows the indexing state,
    builds the shipped corpus by itself, then answers."""
    data = tmp_path / "fresh"
    started = time.monotonic()
    assert "RAG_CORPUS_DIR" not in os.environ, "the shipped corpus is the default"
    app = start_app([], data, tmp_path / "app.log", timeout=120)
    apps.append(app)
    up = time.monotonic() - started
    import urllib.request

    with urllib.request.urlopen(app.url + "/config", timeout=30) as resp:
        config = json.loads(resp.read())
    status = [c for c in config["components"]
              if c.get("props", {}).get("elem_id") == "library-status"]
    assert status and status[0]["props"]["visible"] is True
    assert "Indexing the default library" in status[0]["props"]["value"]
    client = _client(app)
    reply = ask(client, "Who wrote the DeBERTa paper?")  # waits for the library
    total = time.monotonic() - started
    assert "Pengcheng He" in reply["answer"], reply["answer"]
    assert reply["sources"][0]["title"].lower().startswith("deberta")
    assert "indexed the default library: 405 papers" in app.output()
    print(f"first start: serving after {up:.1f} s, answered after {total:.1f} s")


@pytest.mark.slow
def test_reading_command_on_an_empty_store_builds_the_default_library(tmp_path: Path) -> None:
    """`rag search` on a fresh data directory indexes corpus/ first (progress on stderr, the
    JSON on stdout untouched), then answers; the next command indexes nothing."""
    env = _env(tmp_path / "data")
    first = subprocess.run([sys.executable, "-m", "rag.cli", "search", "disentangled attention",
                            "--json"], env=env, capture_output=True, text=True, timeout=900,
                           check=True)
    assert "The library is empty: indexing the default library" in first.stderr
    assert "indexed 405 papers" in first.stderr
    assert json.loads(first.stdout)[0]["title"].lower().startswith("deberta")
    again = subprocess.run([sys.executable, "-m", "rag.cli", "stats", "--json"], env=env,
                           capture_output=True, text=True, timeout=300, check=True)
    assert "indexing" not in again.stderr and json.loads(again.stdout)["papers"] == 405


def test_status_line_counts_papers_then_hides(tmp_path: Path) -> None:
    """The app's status line while the default library is built: 'N of M papers', refreshed by
    the timer; when done it hides, stops the timer and refreshes the Library tab."""
    from rag.chain import Pipeline
    from rag.indexing import DefaultLibrary
    from rag.ui import ChatApp

    first = DefaultLibrary()
    app = ChatApp(Pipeline(Settings(data_dir=tmp_path / "data", corpus_dir=tmp_path)), first)
    first.state = "indexing"
    assert first.status() == "Indexing the default library… reading the files"
    first.progress(120, 405)
    line, timer, *library = app.status_tick()
    assert line["value"] == "⏳ Indexing the default library… 120 of 405 papers"
    assert line["visible"] is True and timer.active is True
    assert len(library) == 5  # the Library tab is left alone meanwhile
    waiting = app.wait_for_library()
    assert next(waiting) == "Indexing the default library… 120 of 405 papers"
    first.state = "done"
    first.finished.set()
    assert list(waiting) == []  # questions waiting for the library go ahead
    line, timer, _table, count, *_ = app.status_tick()
    assert line["visible"] is False and timer.active is False
    assert "The library is empty" in count  # the Library tab is refreshed


@pytest.mark.slow
def test_uploads_in_process_are_answerable_at_once(tmp_path: Path, docs: Path, minilm) -> None:
    """The app's own writes (uploads): its store's client holds them, so the library follows
    the upload alone (no re-open, no listing of the store) and the new paper is searchable by
    the next question, dense side included."""
    from rag.chain import Pipeline

    settings = Settings(data_dir=tmp_path / "data", corpus_dir=docs)
    pipe = Pipeline(settings, Retriever(settings, embedder=minilm))
    # a library the upload is a small change of (a large one is reloaded whole)
    animals = ["Hedgehog", *(f"Animal{n}" for n in range(9))]
    for name in animals[1:]:
        (docs / f"{name}.md").write_text(SEED_DOC.replace("Hedgehog", name))
    pipe.add_documents([docs])
    first_store = pipe.retriever.store
    (docs / "quokka.md").write_text(UPLOAD_DOC)
    listed: list[object] = []
    original_ids = ChunkStore.ids

    def ids(self: ChunkStore, where: Any = None) -> set[str]:
        listed.append(where)
        return original_ids(self, where)

    ChunkStore.ids = ids  # type: ignore[method-assign]
    try:
        pipe.add_documents([docs / "quokka.md"])
    finally:
        ChunkStore.ids = original_ids  # type: ignore[method-assign]
    assert pipe.retriever.store is first_store
    assert None not in listed, listed  # only the uploaded file's own ids were looked up
    assert len(pipe.retriever.library.papers) == len(animals) + 1
    hits = pipe.retriever.search("quokka attention pouch router", k=1)
    assert hits[0].paper.title.startswith("Quokka Attention")
    vector = minilm.embed(["hedgehog pooling ball node"])[0]
    assert pipe.retriever.store.query(vector, 1)[0][0].paper.title.startswith("Hedgehog")
    assert not pipe.retriever.refresh_if_changed(wait=True)  # its own write is no news


@pytest.mark.slow
def test_upload_after_another_processs_write_reopens(tmp_path: Path, docs: Path, minilm) -> None:
    """When another writer changed the store before this process's upload, the upload does not
    stand for the whole change: the library is reloaded (the store re-opened, its vector index
    re-read), so the other writer's paper is found too."""
    from rag.chain import Pipeline

    settings = Settings(data_dir=tmp_path / "data", corpus_dir=docs)
    pipe = Pipeline(settings, Retriever(settings, embedder=minilm, check_every_s=3600))
    pipe.add_documents([docs / "hedgehog.md"])
    first_store = pipe.retriever.store
    other = tmp_path / "other"
    other.mkdir()
    (other / "quokka.md").write_text(UPLOAD_DOC)
    assert rag_index(other, _env(settings.data_dir)).returncode == 0  # another process
    (docs / "seed.md").write_text(SEED_DOC.replace("Hedgehog", "Hamster"))
    pipe.add_documents([docs / "seed.md"])
    assert pipe.retriever.store is not first_store
    assert len(pipe.retriever.library.papers) == 3
    hits = pipe.retriever.search("quokka attention pouch router", k=1)
    assert hits[0].paper.title.startswith("Quokka Attention")
    vector = minilm.embed(["quokka attention pouch router"])[0]
    assert pipe.retriever.store.query(vector, 1)[0][0].paper.title.startswith("Quokka")
