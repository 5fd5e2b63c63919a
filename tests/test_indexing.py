"""Indexing keeps the store in step with files: incremental, idempotent, safe on bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CORPUS

from rag.indexing import Indexer
from rag.lexical import LexicalIndex
from rag.store import ChunkStore

DOC_A = "# Sparse Attention Revisited\n\nWe make attention sparse. It saves memory on long inputs.\n"
DOC_B = "# Dense Retrieval Negatives\n\nHard negatives matter. Random negatives are uninformative.\n"


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    _write(folder, "a.md", DOC_A)
    _write(folder, "b.md", DOC_B)
    return folder


@pytest.mark.slow
def test_reindex_adds_nothing_and_tracks_changes(store_settings, hash_embedder, tmp_path) -> None:
    folder = _docs(tmp_path)
    indexer = Indexer(store_settings, embedder=hash_embedder)
    first = indexer.index([folder])
    assert first.papers == 2 and first.chunks_added >= 2 and first.skipped == []
    total = indexer.store.count()

    second = indexer.index([folder])
    assert (second.chunks_added, second.embedded, second.chunks_removed) == (0, 0, 0)
    assert second.chunks_unchanged == total == indexer.store.count()

    _write(folder, "a.md", DOC_A.replace("saves memory", "saves time"))
    third = indexer.index([folder])
    assert third.chunks_added >= 1 and third.chunks_removed >= 1
    assert indexer.store.count() == total
    assert all("saves memory" not in c.text for c in indexer.store.chunks())

    (folder / "b.md").unlink()
    fourth = indexer.index([folder])
    assert fourth.chunks_removed >= 1
    assert [p.title for p in indexer.store.papers()] == ["Sparse Attention Revisited"]


def test_bad_files_are_skipped_and_nothing_is_lost(settings, hash_embedder, tmp_path) -> None:
    folder = _docs(tmp_path)
    indexer = Indexer(settings.model_copy(update={"max_file_mb": 0.001}), embedder=hash_embedder)
    indexer.index([folder])
    before = indexer.store.ids()
    _write(folder, "empty.md", "")
    _write(folder, "blank.txt", "   \n\n ")
    _write(folder, "binary.txt", bytes(range(256)) * 4)
    _write(folder, "latin1.txt", "Caf\xe9 na\xefve r\xe9sum\xe9 " .encode("latin-1") * 3)
    _write(folder, "broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ntruncated")
    _write(folder, "huge.md", "# Huge\n\n" + "word " * 2000)
    # a stored file that turns bad keeps its chunks
    _write(folder, "a.md", b"\x00\x01binary now")
    report = indexer.index([folder])
    skipped = {Path(f).name: reason for f, reason in report.skipped}
    assert set(skipped) == {"empty.md", "blank.txt", "binary.txt", "latin1.txt", "broken.pdf",
                            "huge.md", "a.md"}
    assert "MiB" in skipped["huge.md"] or "limit" in skipped["huge.md"]
    assert "UTF-8" in skipped["latin1.txt"]
    assert indexer.store.ids() == before
    assert report.chunks_removed == 0


def test_missing_path_is_reported(settings, hash_embedder, tmp_path) -> None:
    report = Indexer(settings, embedder=hash_embedder).index([tmp_path / "nope"])
    assert report.skipped and "no such file" in report.skipped[0][1]


def test_lexical_index_follows_the_store(settings, hash_embedder, tmp_path) -> None:
    folder = _docs(tmp_path)
    indexer = Indexer(settings, embedder=hash_embedder)
    indexer.index([folder])
    store = ChunkStore(settings)
    saved = LexicalIndex.load(settings.data_dir / "bm25" / store.name)
    assert saved is not None and saved.fingerprint == store.fingerprint()
    assert saved.search("uninformative negatives", 3)[0][0] in store.ids_for_path(
        str((folder / "b.md").resolve()))


@pytest.mark.slow
def test_real_corpus_twice_embeds_nothing_second_time(settings, minilm) -> None:
    indexer = Indexer(settings, embedder=minilm)
    first = indexer.index([CORPUS])
    assert first.skipped == [] and first.files == 5
    assert first.papers > 300 and first.chunks_added == indexer.store.count()
    calls = []
    original = minilm.embed
    minilm.embed = lambda texts: calls.append(len(texts)) or original(texts)  # type: ignore[method-assign]
    try:
        second = indexer.index([CORPUS])
    finally:
        del minilm.embed
    assert (second.chunks_added, second.embedded, second.chunks_removed) == (0, 0, 0)
    assert sum(calls) == 0
    assert second.chunks_unchanged == first.chunks_added


@pytest.mark.slow
def test_killed_run_is_completed_without_duplicates(tmp_path) -> None:
    """Kill `rag index` half-way; the next run completes the store with no duplicates."""
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "rag.cli", "index", str(CORPUS), "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    chroma = tmp_path / "data" / "chroma"
    # wait until something was written, then kill it hard
    while time.monotonic() < deadline and proc.poll() is None:
        if chroma.exists() and any(chroma.rglob("*.bin")):
            time.sleep(1.0)
            break
        time.sleep(0.2)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
    import json

    finished, idle = json.loads(done.stdout), json.loads(again.stdout)
    assert idle["chunks_added"] == 0 and idle["chunks_removed"] == 0
    assert finished["chunks_added"] + finished["chunks_unchanged"] == idle["chunks_unchanged"]
    stats = subprocess.run([sys.executable, "-m", "rag.cli", "stats", "--json"], env=env,
                           capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(stats.stdout)["chunks"] == idle["chunks_unchanged"]
