"""A start reads the library back from its snapshot (`rag.snapshot`) instead of reading every
chunk and rebuilding the reader's statistics and the name index: what it restores must equal a
whole load and a fresh build, a store changed since the snapshot must cost only the papers that
differ, and a damaged or foreign snapshot must be ignored, never trusted."""

from __future__ import annotations

import gc
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from test_library_changes import _indexed, _paper, _same, _same_names, _same_reader

from rag import chain, snapshot
from rag.chain import Pipeline
from rag.extractive import ExtractiveAnswerer
from rag.library import Library
from rag.query import NameIndex, name_index
from rag.retrieval import Retriever
from rag.store import ChunkStore


def _saved(settings: Any, embedder: Any, store: ChunkStore) -> Path:
    pipeline = Pipeline(settings, retriever=Retriever(settings, embedder=embedder, store=store))
    path = pipeline.save_snapshot()
    assert path is not None and path.exists()
    return path


def _counting(store: ChunkStore) -> list[int]:
    """Chunks read from `store` by `chunks` (with or without a filter) and `chunks_by_ids`."""
    read: list[int] = []
    by_ids, every = store.chunks_by_ids, store.chunks
    store.chunks_by_ids = lambda ids: (r := by_ids(ids), read.append(len(r)))[0]  # type: ignore
    store.chunks = lambda where=None: (r := every(where), read.append(len(r)))[0]  # type: ignore
    return read


def _restored_reader(lib: Library, embedder: Any) -> ExtractiveAnswerer:
    assert "reader" in lib.derived, "the library did not come from the snapshot"
    return ExtractiveAnswerer.for_library(embedder, lib)


def test_a_start_from_a_current_snapshot_reads_no_chunk_and_equals_a_whole_load(
        settings: Any, hash_embedder: Any, tmp_path: Path) -> None:
    _, _, store, whole = _indexed(settings, hash_embedder, tmp_path, random.Random(1), 12)
    _saved(settings, hash_embedder, store)
    read = _counting(store)
    lib = Library.load(store, settings)
    assert sum(read) == 0, f"read {sum(read)} chunks although the snapshot was current"
    _same(lib, whole)
    assert lib.lexical.search("quux4word", 1)[0][0] == whole.lexical.search("quux4word", 1)[0][0]
    _same_reader(_restored_reader(lib, hash_embedder),
                 ExtractiveAnswerer.for_library(hash_embedder, whole))
    _same_names(name_index(lib), NameIndex(whole))
    assert snapshot.is_current(lib)


def _listing(store: ChunkStore) -> list[object]:
    """The filters of every `ids` listing of `store` (None: the whole store)."""
    listed: list[object] = []
    ids = store.ids
    store.ids = lambda where=None: (listed.append(where), ids(where))[1]  # type: ignore
    return listed


def test_a_start_at_the_snapshots_signal_does_not_list_the_store(
        settings: Any, hash_embedder: Any, tmp_path: Path) -> None:
    """The snapshot keeps the store's change signal it was read at: a start that finds the same
    signal trusts it (250k ids take seconds to list); any other signal, even one from a writer
    that does not mark its change (only the count tells), lists the store and reads the change."""
    _, _, store, whole = _indexed(settings, hash_embedder, tmp_path, random.Random(4), 10)
    _saved(settings, hash_embedder, store)
    listed, read = _listing(store), _counting(store)
    lib = Library.load(store, settings, store.signal())
    assert listed == [] and sum(read) == 0
    assert gc.isenabled()  # paused while the snapshot was read, and only then
    _same(lib, whole)
    assert snapshot.is_current(lib)
    extra = next(c for cs in whole.by_paper.values() for c in cs)
    moved = type(extra)(id="unmarked-1", paper=extra.paper, index=99, text="quux9word tides")
    store.add([moved], hash_embedder.embed([moved.embed_text]), "/docs/unmarked.md")
    lib = Library.load(store, settings, store.signal())
    assert None in listed and "unmarked-1" in lib.chunks


def test_a_store_changed_since_the_snapshot_costs_the_change(settings: Any, hash_embedder: Any,
                                                            tmp_path: Path) -> None:
    rng = random.Random(2)
    folder, indexer, store, _ = _indexed(settings, hash_embedder, tmp_path, rng, 16)
    _saved(settings, hash_embedder, store)
    (folder / "p40.md").write_text(_paper(40, rng))  # added
    (folder / "p3.md").unlink()  # removed
    indexer.index([folder])
    read = _counting(store)
    lib = Library.load(store, settings)
    assert 0 < sum(read) <= 12, f"read {sum(read)} chunks for a change of two papers"
    read.clear()
    whole = Library.load(ChunkStore(settings), settings.model_copy(update={"snapshot": False}))
    _same(lib, whole)
    assert not snapshot.is_current(lib)
    # the reader and the name index saved with the snapshot follow the change
    _same_reader(_restored_reader(lib, hash_embedder),
                 ExtractiveAnswerer.for_library(hash_embedder, whole))
    _same_names(name_index(lib), NameIndex(whole))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other code"])
def test_a_damaged_or_foreign_snapshot_is_ignored(settings: Any, hash_embedder: Any,
                                                  tmp_path: Path, damage: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, store, whole = _indexed(settings, hash_embedder, tmp_path, random.Random(3), 8)
    path = _saved(settings, hash_embedder, store)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a pickle" * 100)
    else:
        monkeypatch.setattr(snapshot, "stamp", lambda: "written-by-other-code")
    lib = Library.load(store, settings)
    assert not lib.derived, "a snapshot that cannot be trusted was used"
    assert gc.isenabled()  # a failed read resumes the collector too
    _same(lib, whole)


def test_snapshots_off_writes_none_and_reads_none(settings: Any, hash_embedder: Any,
                                                  tmp_path: Path) -> None:
    _, _, store, _ = _indexed(settings, hash_embedder, tmp_path, random.Random(4), 4)
    _saved(settings, hash_embedder, store)
    off = settings.model_copy(update={"snapshot": False})
    assert not Library.load(store, off).derived
    pipeline = Pipeline(off, retriever=Retriever(off, embedder=hash_embedder, store=store))
    assert pipeline.save_snapshot() is None


def test_a_save_is_whole_or_absent(settings: Any, hash_embedder: Any, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that fails part-way (disk full) leaves the previous snapshot and no stray file."""
    _, _, store, _ = _indexed(settings, hash_embedder, tmp_path, random.Random(5), 4)
    path = _saved(settings, hash_embedder, store)
    before = path.read_bytes()

    def full(*_a: Any, **_k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot.pickle, "dump", full)
    with pytest.raises(OSError):
        _saved(settings, hash_embedder, store)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    # what a save killed part-way left (a process cannot clean up after kill -9) is swept
    monkeypatch.undo()
    stray = path.with_name(f"{path.name}.99999.tmp")
    stray.write_bytes(b"half a snapshot")
    os.utime(stray, (time.time() - 7200, time.time() - 7200))
    _saved(settings, hash_embedder, store)
    assert not stray.exists()


def test_warm_up_saves_a_snapshot_in_the_background_when_none_is_current(
        settings: Any, hash_embedder: Any, tmp_path: Path) -> None:
    _, _, store, _ = _indexed(settings, hash_embedder, tmp_path, random.Random(6), 4)
    path = snapshot.path_for(settings, store.name)
    Pipeline(settings, retriever=Retriever(settings, embedder=hash_embedder, store=store)
             ).warm_up()
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), "warm-up saved no snapshot"
    lib = Library.load(ChunkStore(settings), settings)
    assert snapshot.is_current(lib)
    mtime = path.stat().st_mtime_ns
    # a start from a current snapshot does not write it again
    Pipeline(settings, retriever=Retriever(settings, embedder=hash_embedder)).warm_up()
    time.sleep(0.5)
    assert path.stat().st_mtime_ns == mtime


def test_uploads_are_saved_once_they_are_a_share_of_the_library(
        settings: Any, hash_embedder: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A save pickles the whole library, so a change too small to matter at the next start
    (it catches up at the cost of the change) does not trigger one."""
    rng = random.Random(7)
    monkeypatch.setattr(chain, "_SNAPSHOT_AFTER_CHANGE_S", 0.0)
    _, _, store, _ = _indexed(settings, hash_embedder, tmp_path, rng, 10)
    pipeline = Pipeline(settings, retriever=Retriever(settings, embedder=hash_embedder,
                                                      store=store))
    path = pipeline.save_snapshot()
    assert path is not None
    before = path.stat().st_mtime_ns
    monkeypatch.setattr(chain, "_SNAPSHOT_DRIFT_SHARE", 0.5)  # one paper of 11 is less
    (tmp_path / "n1.md").write_text(_paper(71, rng))
    pipeline.add_documents([tmp_path / "n1.md"])
    time.sleep(1.0)
    assert path.stat().st_mtime_ns == before, "a small change was saved at once"
    monkeypatch.setattr(chain, "_SNAPSHOT_DRIFT_SHARE", 0.01)
    (tmp_path / "n2.md").write_text(_paper(72, rng))
    pipeline.add_documents([tmp_path / "n2.md"])
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the rename is the save's last step; let the thread finish
    lib = Library.load(ChunkStore(settings), settings)
    assert snapshot.is_current(lib), "the upload was not saved"
    assert {"Survey of coastal site 71", "Survey of coastal site 72"} <= {
        p.title for p in lib.papers.values()}
