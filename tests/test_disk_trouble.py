"""Disk trouble (issue 12, item 3): a read-only data directory, a full disk, the store directory
deleted while the app runs. Each gives a clear error that names the directory and the fix (no
traceback), and leaves no half-written paper: every paper is whole or absent, and once the
trouble is gone the next `rag index` completes the store.

Real file systems: a small tmpfs mounted for the test (needs root, as `make test` and CI run),
remounted read-only or filled up; real `rag index` processes with the real MiniLM; a real
`python app.py` whose data directory is removed under it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_fixtures import start_app, stop_app
from stress import record
from test_crash import classify, clean_ids, env_for, rag_index_cmd, stored_ids, write_pdf

from rag.chunking import Chunker
from rag.settings import Settings

pytestmark = pytest.mark.slow


def rag(*args: str, data: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "rag.cli", *args], env=env_for(data),
                          capture_output=True, text=True, timeout=timeout)


def said(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join(proc.stderr.split())


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    """An empty 50 MB tmpfs, unmounted afterwards; `remount(opts)` changes it."""
    point = tmp_path / "disk"
    point.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=50m", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def remount(point: Path, opts: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{opts}", str(point)], check=True)


def papers(folder: Path, n: int, first: int = 0) -> Path:
    folder.mkdir(exist_ok=True)
    for i in range(first, first + n):
        sentences = " ".join(f"Finding {j} of paper {i} holds on the set {j * i}." for j in range(60))
        (folder / f"p{i:03d}.md").write_text(f"# Paper {i} on topic {i}\n\n{sentences}\n")
    return folder


def test_read_only_data_directory(tmp_path: Path, mount: Path, minilm) -> None:
    data = mount / "data"
    docs = papers(tmp_path / "docs", 3)
    assert rag("index", str(docs), data=data).returncode == 0
    settings = Settings(data_dir=data)
    chunker = Chunker(minilm, settings.chunk_tokens, settings.chunk_overlap_tokens)
    before = clean_ids(chunker, {p: p for p in docs.iterdir()}, settings)
    remount(mount, "ro")  # (no store opened in this process: a busy mount cannot turn ro)
    papers(docs, 1, first=3)  # a new paper to add
    index = rag("index", str(docs), data=data)
    listing = rag("papers", "--json", data=data)
    remount(mount, "rw")
    for proc in (index, listing):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert str(data) in said(proc), said(proc)
        assert "writable" in said(proc), said(proc)
    assert "read-only" in said(listing)
    assert stored_ids(settings)[0] == before, "nothing was written to a read-only directory"
    assert rag("index", str(docs), data=data).returncode == 0
    assert stored_ids(settings)[0] == clean_ids(chunker, {p: p for p in docs.iterdir()}, settings)
    record("Read-only data directory",
           "tmpfs remounted read-only under a built store; `rag index` of a folder with a new "
           "paper, `rag papers`", "2 commands, 1 run",
           "both exit 2 with one line naming the directory and the fix (make it writable or "
           "set RAG_DATA_DIR), no traceback; the store unchanged; after remounting rw the next "
           "`rag index` completed",
           "reading needs a writable directory too (Chroma writes to its SQLite file to open "
           "it): `rag papers`/search refuse on a read-only copy")


def test_full_disk(tmp_path: Path, mount: Path, minilm) -> None:
    remount(mount, "size=1m")  # room for Chroma's empty store, not for 40 papers
    data = mount / "data"
    docs = papers(tmp_path / "docs", 40)
    index = rag("index", str(docs), data=data)
    stats = rag("stats", "--json", data=data)
    assert index.returncode == 2 and "Traceback" not in index.stderr, index.stderr[-3000:]
    message = said(index)
    assert f"the disk holding '{data}' is full" in message, message
    assert "free some space" in message and "RAG_DATA_DIR" in message
    assert stats.returncode in (0, 2) and "Traceback" not in stats.stderr, stats.stderr[-2000:]
    remount(mount, "size=50m")
    settings = Settings(data_dir=data)
    chunker = Chunker(minilm, settings.chunk_tokens, settings.chunk_overlap_tokens)
    clean = clean_ids(chunker, {p: p for p in docs.iterdir()}, settings)
    kinds = classify(*stored_ids(settings), clean)  # whole or absent, nothing twice
    assert rag("index", str(docs), data=data).returncode == 0
    assert stored_ids(settings)[0] == clean
    record("Full disk", "`rag index` of 40 papers onto a 1 MB tmpfs (Chroma's empty store "
           "fits, the papers do not); `rag stats` while full; then the tmpfs grown to 50 MB",
           "1 run", f"exit 2 with \"the disk holding '<data dir>' is full (N KB free) ... free "
           "some space (or set RAG_DATA_DIR ...), then run `rag index` again\", no traceback; "
           f"papers whole {kinds['whole']}, absent {kinds['absent']}, none partial; the next "
           "`rag index` completed",
           "**fixed**: before, a traceback (`InternalError: Error in compaction: Failed to apply "
           "logs to the metadata segment`) from `rag index` and from `rag stats`")


def test_store_deleted_while_the_app_runs(tmp_path: Path, minilm) -> None:
    from gradio_client import Client, handle_file

    data = tmp_path / "data"
    docs = papers(tmp_path / "docs", 2)
    assert rag("index", str(docs), data=data).returncode == 0
    app = start_app([], data, tmp_path / "app.log", env={"RAG_CORPUS_DIR": str(docs)})
    try:
        client = Client(app.url + "/", verbose=False)
        assert client.predict("What holds on the set?", api_name="/ask")["sources"]
        shutil.rmtree(data)  # while the app has the store open
        new = tmp_path / "new.pdf"
        write_pdf(new, seed=77, pages=2)
        with pytest.raises(Exception) as caught:
            client.predict([handle_file(str(new))], "", api_name="/upload")
        message = " ".join(str(caught.value).split())
        assert f"the store directory '{data / 'chroma'}' was deleted" in message, message
        assert "restart the app" in message
        # a question now gets the same message (or an answer from the library still open)
        try:
            assert client.predict("What holds on the set?", api_name="/ask")["answer"]
        except Exception as exc:
            assert "was deleted or moved" in str(exc), exc
    finally:
        stop_app(app)
    settings = Settings(data_dir=data)
    held, count = stored_ids(settings)
    assert count == 0 and held == {}, "nothing half-written in the new directory"
    assert subprocess.run(rag_index_cmd(docs), env=env_for(data), capture_output=True,
                          timeout=900).returncode == 0
    chunker = Chunker(minilm, settings.chunk_tokens, settings.chunk_overlap_tokens)
    assert stored_ids(settings)[0] == clean_ids(chunker, {p: p for p in docs.iterdir()}, settings)
    record("Store directory deleted while the app runs",
           "`python app.py` serving 2 papers; its data directory removed (`rm -rf`); an upload "
           "over HTTP, then a question", "1 run",
           "the upload fails with \"the store directory '<dir>/chroma' was deleted or moved ... "
           "restart the app (or run `rag index` again)\"; a question then gets the same "
           "message; nothing written to the new directory; `rag index` then "
           "rebuilt it",
           "**fixed**: before, Chroma's `attempt to write a readonly database (code: 1032)` as a "
           "generic error; the app serves no library until restarted")
