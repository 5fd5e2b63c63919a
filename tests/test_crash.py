"""kill -9 during indexing and during an upload (issue 12, item 2).

A folder of real papers (shared/pdfs/real) and generated PDFs is indexed by `rag index` in its
own process, which is killed with SIGKILL at a random moment, again and again: from an empty
store, and after some generated papers were rewritten (the run then replaces stored papers).
After each kill the store opens, every paper in it is whole (its chunk ids are exactly those a
clean index makes) or absent (or, for a rewritten paper, still its whole previous version),
never partial, and nothing is stored twice; the next `rag index` completes and leaves exactly
the clean index. The same after `python app.py` is killed during an upload. `make test` kills a
few times; `make stress` (RAG_STRESS=1) 20+ times.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import start_app, stop_app
from conftest import SHARED
from stress import STRESS, record, size

from rag.chunking import Chunker
from rag.parsers import parse_file
from rag.settings import Settings
from rag.store import ChunkStore

pytestmark = pytest.mark.slow

REAL = SHARED / "pdfs" / "real"
SMALL_REAL = ("multi-column-2p.pdf", "layout-parser-paper-with-empty-pages.pdf")
WORDS = ("lattice", "prism", "vector", "harbor", "meadow", "signal", "quartz", "ember", "delta",
         "fjord", "glacier", "orbit", "cobalt", "saffron", "tundra", "willow", "zenith", "nimbus")
Ids = dict[str, set[str]]  # file key (resolved path) -> chunk ids


def write_pdf(path: Path, seed: int, pages: int = 3) -> None:
    """A paper-shaped PDF: a title, authors, then `pages` pages of sentences unique to `seed`."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    rng = random.Random(seed)
    c = canvas.Canvas(str(path), pagesize=letter)
    c.setTitle(f"Generated Paper {seed}: {rng.choice(WORDS).title()} Methods")
    for page in range(pages):
        y = 720
        if page == 0:
            c.setFont("Helvetica-Bold", 16)
            c.drawString(72, y, f"Generated Paper {seed}: {rng.choice(WORDS).title()} Methods")
            c.setFont("Helvetica", 10)
            c.drawString(72, y - 22, "Ada Quill, Bo Tenbrook")
            y -= 50
        c.setFont("Helvetica", 10)
        while y > 80:
            a, b, d = rng.sample(WORDS, 3)
            c.drawString(72, y, f"The {a} encoder of paper {seed} improves {b} recall by "
                                f"{rng.randint(1, 99)} points on the {d} set.")
            y -= 14
        c.showPage()
    c.save()


def env_for(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return {**env, "RAG_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False", **extra}


def rag_index_cmd(path: Path) -> list[str]:
    return [sys.executable, "-m", "rag.cli", "index", str(path), "--json"]


def clean_ids(chunker: Chunker, files: dict[Path, Path], settings: Settings) -> Ids:
    """What a clean index holds: for each (source file -> path it is indexed under), the chunk
    ids the indexer makes (parse, then chunk under the indexed path); unreadable files none."""
    out: Ids = {}
    for src, where in files.items():
        try:
            papers = parse_file(src, max_bytes=int(settings.max_file_mb * 1024 * 1024))
        except Exception:
            continue
        key = str(where.resolve())
        out[key] = {c.id for c in chunker.chunk_papers(papers, key)}
    return out


def rewrite_two(library: Path, rng: random.Random) -> None:
    """Two generated papers rewritten with new text: a run must replace what is stored."""
    for path in rng.sample(sorted(library.glob("generated-*.pdf")), 2):
        write_pdf(path, seed=rng.randint(100, 10**6), pages=rng.randint(2, 4))


def timed_clean_run(library: Path, data: Path, clean: Ids) -> float:
    """`rag index` of `library` into `data`, uninterrupted; checks it leaves the clean index and
    returns how long it took."""
    started = time.monotonic()
    subprocess.run(rag_index_cmd(library), env=env_for(data), check=True, capture_output=True,
                   timeout=1800)
    took = time.monotonic() - started
    held = stored_ids(Settings(data_dir=data))[0]
    assert held == clean, f"an uninterrupted run is not the clean index: {differences(held, clean)}"
    return took


def differences(held: Ids, clean: Ids) -> str:
    """Per file, what the store holds against the clean index (for a failure message)."""
    out = []
    for key in sorted(set(held) | set(clean)):
        got, want = held.get(key, set()), clean.get(key, set())
        if got != want:
            out.append(f"{Path(key).name}: {len(got & want)} of {len(want)} chunks, "
                       f"{len(got - want)} others")
    return "; ".join(out) or "none"


def stored_ids(settings: Settings) -> tuple[Ids, int]:
    """Chunk ids per file as a freshly opened store holds them, and its count. Opening a new
    Chroma System and running a query proves the store (SQLite and HNSW) opens after a kill."""
    store = ChunkStore(settings, fresh=True)
    try:
        out = {p: store.ids_for_path(p) for p in store.paths()}
        count = store.count()
        got = store.collection.get(limit=1, include=["embeddings"])
        if count:
            assert store.query(list(got["embeddings"][0]), 3), "the store opens but cannot search"
        return out, count
    finally:
        store.close(0)


def classify(held: Ids, count: int, clean: Ids, before: Ids | None = None) -> dict[str, int]:
    """Each file whole, absent, or (rewritten files) its whole previous version, or both whole
    (killed between the write and the drop of stale chunks); anything else fails."""
    kinds = {"whole": 0, "absent": 0, "previous": 0, "both": 0}
    assert count == sum(len(v) for v in held.values()), "a chunk is stored twice"
    assert set(held) <= set(clean) | set(before or {}), f"unknown files: {set(held) - set(clean)}"
    for key, want in clean.items():
        got = held.get(key, set())
        old = (before or {}).get(key, set())
        if got == want:
            kinds["whole"] += 1
        elif not got:
            kinds["absent"] += 1
        elif old and got == old:
            kinds["previous"] += 1
        elif old and got == old | want:
            kinds["both"] += 1
        else:
            raise AssertionError(f"{Path(key).name} is partial: {len(got & want)} of {len(want)} "
                                 f"chunks, {len(got - want - old)} unknown")
    return kinds


@pytest.fixture
def library(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "library"
    folder.mkdir()
    real = sorted(REAL.glob("*.pdf")) if STRESS else [REAL / n for n in SMALL_REAL]
    assert real and all(p.exists() for p in real), f"the real papers are missing from {REAL}"
    for src in real:
        shutil.copyfile(src, folder / src.name)
    for i in range(size(3, 8)):
        write_pdf(folder / f"generated-{i:02d}.pdf", seed=i, pages=2 + i % 3)
    yield folder


def test_kill_9_during_rag_index(tmp_path: Path, library: Path, minilm) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    chunker = Chunker(minilm, settings.chunk_tokens, settings.chunk_overlap_tokens)
    seed = int(time.time()) if STRESS else 12
    rng = random.Random(seed)
    files = {p: p for p in sorted(library.iterdir())}
    clean = clean_ids(chunker, files, settings)
    # Uninterrupted runs: the reference, and how long each kind of run takes, so that a kill
    # lands anywhere in it: a whole run into an empty store, and a run that replaces two
    # rewritten papers (it embeds only those, so it is much shorter).
    full_s = timed_clean_run(library, tmp_path / "clean", clean)
    rewrite_two(library, rng)
    clean = clean_ids(chunker, files, settings)
    rewrite_s = timed_clean_run(library, tmp_path / "clean", clean)
    wanted = size(3, 20)
    kills = rounds = 0
    outcomes = {"whole": 0, "absent": 0, "previous": 0, "both": 0}
    mid_run = 0
    problem = "—"
    try:
        while kills < wanted and rounds < wanted * 2:
            rounds += 1
            before: Ids | None = None
            if rounds % 2 == 1:
                shutil.rmtree(settings.data_dir, ignore_errors=True)  # from an empty store
            else:  # rewrite two generated papers: the run replaces what is stored
                before = clean
                rewrite_two(library, rng)
                clean = clean_ids(chunker, files, settings)
            proc = subprocess.Popen(rag_index_cmd(library), env=env_for(settings.data_dir),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.2, 1.0) * (rewrite_s if before else full_s))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(30)
            if proc.returncode != -signal.SIGKILL:
                assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
            if proc.stderr:
                proc.stderr.close()
            held, count = stored_ids(settings)
            kinds = classify(held, count, clean, before)
            for k, v in kinds.items():
                outcomes[k] += v
            mid_run += 0 < kinds["whole"] < len(clean)
            done = subprocess.run(rag_index_cmd(library), env=env_for(settings.data_dir),
                                  capture_output=True, text=True, timeout=1800)
            assert done.returncode == 0, f"the run after a kill failed: {done.stderr[-2000:]}"
            held, count = stored_ids(settings)
            assert held == clean and count == sum(len(v) for v in clean.values()), (
                "after the next run the store is not the clean index: "
                f"{differences(held, clean)}; the run skipped {json.loads(done.stdout)['skipped']}")
    except BaseException as exc:
        problem = f"**failed** after {kills} kills: {str(exc).splitlines()[0][:200]}"
        raise
    finally:
        record("kill -9 during `rag index`",
               f"SIGKILL at a random moment (0.2-1.0 x a whole run: {full_s:.0f} s from empty, "
               f"{rewrite_s:.0f} s after a rewrite) of `rag index` "
               f"over {len(files)} PDFs ({len(files) - size(3, 8)} real, {size(3, 8)} generated); "
               "every other round two generated papers rewritten first (seed "
               f"{seed})", f"{kills} kills in {rounds} rounds ({mid_run} with some papers "
               "stored and some not)",
               f"after each kill the store opens and searches; papers whole {outcomes['whole']}, "
               f"absent {outcomes['absent']}, previous version {outcomes['previous']}, both "
               f"versions {outcomes['both']}; never partial, nothing twice; the next `rag index` "
               "completed every time and left exactly the clean index", problem)
    assert kills >= wanted


def test_kill_9_of_the_app_during_an_upload(tmp_path: Path, minilm) -> None:
    from gradio_client import Client, handle_file

    settings = Settings(data_dir=tmp_path / "data")
    chunker = Chunker(minilm, settings.chunk_tokens, settings.chunk_overlap_tokens)
    docs = tmp_path / "docs"  # the app's corpus: empty, so it builds no default library
    docs.mkdir()
    uploads = tmp_path / "to-upload"
    uploads.mkdir()
    for name in SMALL_REAL:
        shutil.copyfile(REAL / name, uploads / name)
    for i in range(2):
        write_pdf(uploads / f"upload-{i}.pdf", seed=500 + i, pages=3)
    seed = int(time.time()) if STRESS else 7
    rng = random.Random(seed)
    target = settings.data_dir / "uploads"
    wanted = size(1, 5)
    kills = 0
    outcomes = {"whole": 0, "absent": 0, "truncated copies": 0}
    problem = "—"
    try:
        for round_ in range(wanted):
            shutil.rmtree(settings.data_dir, ignore_errors=True)
            app = start_app(["--max-upload-mb", "10"], settings.data_dir,
                            tmp_path / f"app-{round_}.log", env={"RAG_CORPUS_DIR": str(docs)})
            try:
                client = Client(app.url + "/", verbose=False)
                errors: list[BaseException] = []

                def send(client: Any = client, errors: list[BaseException] = errors) -> None:
                    try:
                        client.predict([handle_file(str(p)) for p in sorted(uploads.iterdir())],
                                       "", api_name="/upload")
                    except BaseException as exc:  # the app was killed under it
                        errors.append(exc)

                sender = threading.Thread(target=send, daemon=True)
                sender.start()
                # into the copy, the parse or the storing of the papers (a whole upload of
                # these four takes 20-40 s here); `make test`'s one round kills early, so that
                # it lands during the upload on a fast machine too
                time.sleep(rng.uniform(0.5, 30.0 if STRESS else 10.0))
                was_running = sender.is_alive()
                app.proc.send_signal(signal.SIGKILL)
                app.proc.wait(30)
                kills += was_running
                sender.join(60)
            finally:
                if app.proc.poll() is None:
                    stop_app(app)
            copies = {src: target / src.name for src in sorted(uploads.iterdir())}
            whole_copies = {s: c for s, c in copies.items()
                            if c.exists() and c.read_bytes() == s.read_bytes()}
            outcomes["truncated copies"] += sum(c.exists() for c in copies.values()) - len(
                whole_copies)
            clean = clean_ids(chunker, whole_copies, settings)
            held, count = stored_ids(settings)
            kinds = classify(held, count, clean)
            outcomes["whole"] += kinds["whole"]
            outcomes["absent"] += kinds["absent"]
            if target.exists():  # the next `rag index` of the upload folder completes the store
                done = subprocess.run(rag_index_cmd(target), env=env_for(settings.data_dir),
                                      capture_output=True, text=True, timeout=900)
                assert done.returncode == 0, done.stderr[-2000:]
                report = json.loads(done.stdout)
                held, count = stored_ids(settings)
                assert held == clean, f"not the clean index after `rag index`: {report}"
    except BaseException as exc:
        problem = f"**failed** after {kills} kills: {str(exc).splitlines()[0][:200]}"
        raise
    finally:
        record("kill -9 of the app during an upload",
               f"`python app.py` killed with SIGKILL 0.5-{30 if STRESS else 10} s into an upload of "
               f"{len(SMALL_REAL)} "
               f"real and 2 generated PDFs over HTTP (gradio_client, seed {seed})",
               f"{kills} kills during the upload, {wanted} rounds",
               f"the store opens; papers whole {outcomes['whole']}, absent {outcomes['absent']}, "
               f"never partial, nothing twice; `rag index <data>/uploads` then completed and "
               f"left the clean index ({outcomes['truncated copies']} truncated upload copies "
               "were skipped by it)", problem)
    assert kills >= 1, "no kill landed during an upload"


def test_the_checks_catch_a_partial_paper_and_a_twice_stored_one(tmp_path: Path, minilm) -> None:
    """The checks above can fail: a paper written in part, as a crash between two writes of
    one paper would leave it, is reported as partial."""
    settings = Settings(data_dir=tmp_path / "data")
    chunker = Chunker(minilm, settings.chunk_tokens, settings.chunk_overlap_tokens)
    write_pdf(tmp_path / "p.pdf", seed=1, pages=3)
    papers = parse_file(tmp_path / "p.pdf")
    key = str((tmp_path / "p.pdf").resolve())
    chunks = chunker.chunk_papers(papers, key)
    assert len(chunks) >= 2, "the generated paper makes several chunks"
    clean = clean_ids(chunker, {tmp_path / "p.pdf": tmp_path / "p.pdf"}, settings)
    store = ChunkStore(settings)
    store.add(chunks[:1], minilm.embed([chunks[0].embed_text]), key)
    with pytest.raises(AssertionError, match="is partial"):
        classify(*stored_ids(settings), clean)
    assert classify({}, 0, clean)["absent"] == 1
    with pytest.raises(AssertionError, match="stored twice"):
        classify(clean, len(chunks) + 1, clean)
