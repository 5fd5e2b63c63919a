"""The store against a model (issue 12, item 1).

A Hypothesis state machine writes, modifies, corrupts, renames and deletes small papers in one
folder and indexes the folder or one file, in random order; a plain-Python model says what the
library should then hold: for each file, the content it had when it was last indexed (a file
that turned unreadable keeps what was stored; a file gone from an indexed folder is dropped).
After every step the real store (embedded Chroma, and a `chroma run` server on loopback, with
the real MiniLM) must agree: the same chunk ids and count, no duplicate chunk, every sentence of
a held file in its chunks and no sentence of any other version, each stored chunk found by its
own text (recall >= 0.95), and `ChunkStore.papers()` (what `rag papers` lists) naming the same
papers. Small in `make test`; `make stress` (RAG_STRESS=1) runs it at full size.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from stress import STRESS, record, size

from rag.indexing import Indexer
from rag.parsers import parse_file
from rag.settings import Settings
from rag.store import ChunkStore

pytestmark = pytest.mark.slow

NAMES = ("a.md", "b.md", "c.txt", "d.txt", "e.md")
TITLES = ("Sparse Owl Attention", "Dense Heron Retrieval", "Quiet Lynx Pretraining",
          "Amber Newt Distillation")
# distinct sentences with distinct rare words: a sentence is in a chunk or it is not
SENTENCES = tuple(
    f"The {animal} model reaches {score} points on the {bench} benchmark after {steps} steps."
    for animal, score, bench, steps in zip(
        ("otter", "badger", "walrus", "gecko", "ibis", "marmot", "tapir", "okapi", "ferret",
         "puffin", "quoll", "bison", "dingo", "egret", "yak", "kudu"),
        range(41, 57), ("Kestrel", "Lantern", "Mosaic", "Nimbus", "Orchid", "Prism", "Quartz",
                        "Ripple", "Saffron", "Thistle", "Umber", "Vellum", "Willow", "Xenon",
                        "Yarrow", "Zephyr"),
        range(1000, 17000, 1000), strict=True))
BINARY = bytes(range(256)) * 4  # the indexer skips it: "not text"
RECALL_FLOOR = 0.95
EXAMPLES = size(8, 60)
STEPS = size(8, 25)


def paper_text(title: str, picks: list[int]) -> str:
    return f"# {title}\n\n" + " ".join(SENTENCES[i] for i in picks) + "\n"


documents = st.builds(paper_text, st.sampled_from(TITLES),
                      st.lists(st.integers(0, len(SENTENCES) - 1), min_size=1, max_size=10,
                               unique=True))


class Figures:
    """What one run of the machine tried, over all its examples."""

    def __init__(self) -> None:
        self.examples = 0
        self.steps = Counter[str]()
        self.checks = 0
        self.chunks_probed = 0
        self.min_recall = 1.0


class LibraryMachine(RuleBasedStateMachine):
    """One example: a fresh folder and a fresh collection on the shared store."""

    base: Settings
    embedder: Any
    figures: Figures

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="rag-model-"))
        self.settings = self.base.model_copy(update={
            "collection_prefix": "m" + uuid.uuid4().hex[:12], "corpus_dir": self.folder})
        self.indexer = Indexer(self.settings, embedder=self.embedder)
        self.store = self.indexer.store
        self.disk: dict[str, str | bytes] = {}  # the folder as the model sees it
        self.held: dict[str, str] = {}  # file name -> the content the library should hold
        self.expected_ids: dict[str, set[str]] = {}
        self.changed = True  # the store changed since the last full check
        self.figures.examples += 1

    # --- what a user does to the folder --------------------------------------------------------
    def _write(self, name: str, content: str | bytes) -> None:
        path = self.folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        self.disk[name] = content

    @initialize(texts=st.lists(documents, min_size=2, max_size=len(NAMES)))
    def start(self, texts: list[str]) -> None:
        """A folder of a few papers, indexed."""
        for name, text in zip(NAMES, texts, strict=False):
            self.write(name, text)
        self.index_folder()

    @rule(name=st.sampled_from(NAMES), text=documents)
    def write(self, name: str, text: str) -> None:
        """A new file, or a modified one."""
        self.figures.steps["modify" if name in self.disk else "add"] += 1
        self._write(name, text)

    @precondition(lambda self: bool(self.disk))
    @rule(data=st.data(), text=documents)
    def modify(self, data: st.DataObject, text: str) -> None:
        self.write(data.draw(st.sampled_from(sorted(self.disk))), text)

    @rule(name=st.sampled_from(NAMES))
    def corrupt(self, name: str) -> None:
        self.figures.steps["corrupt"] += 1
        self._write(name, BINARY)

    @precondition(lambda self: bool(self.disk))
    @rule(data=st.data(), dst=st.sampled_from(NAMES))
    def rename(self, data: st.DataObject, dst: str) -> None:
        src = data.draw(st.sampled_from(sorted(self.disk)))
        if src == dst:
            return
        self.figures.steps["rename"] += 1
        (self.folder / src).rename(self.folder / dst)
        self.disk[dst] = self.disk.pop(src)

    @precondition(lambda self: bool(self.disk))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.disk)))
        self.figures.steps["delete"] += 1
        (self.folder / name).unlink()
        del self.disk[name]

    # --- indexing, and what the model expects of it --------------------------------------------
    def _hold(self, name: str) -> None:
        """The model: a readable file is held as it is now; an unreadable one keeps what was."""
        content = self.disk[name]
        if isinstance(content, bytes):
            return
        self.held[name] = content
        path = self.folder / name
        key = str(path.resolve())
        self.expected_ids[name] = {c.id for c in self.indexer.chunker.chunk_papers(
            parse_file(path), key)}

    @rule()
    def index_folder(self) -> None:
        self.figures.steps["index folder"] += 1
        report = self.indexer.index([self.folder])
        for name in list(self.held):
            if name not in self.disk:
                del self.held[name], self.expected_ids[name]
        for name in self.disk:
            self._hold(name)
        bad = {n for n, c in self.disk.items() if isinstance(c, bytes)}
        assert {Path(f).name for f, _ in report.skipped} == bad, report.skipped
        assert report.papers == len(self.disk) - len(bad)
        self.changed = True

    @precondition(lambda self: bool(self.disk))
    @rule(data=st.data())
    def index_file(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.disk)))
        self.figures.steps["index one file"] += 1
        self.indexer.index([self.folder / name])
        self._hold(name)
        self.changed = True

    # --- after every step ----------------------------------------------------------------------
    @invariant()
    def store_matches_model(self) -> None:
        expected = set().union(*self.expected_ids.values()) if self.expected_ids else set()
        stored = self.store.ids()
        assert stored == expected, (
            f"missing {len(expected - stored)}, extra {len(stored - expected)} chunks; "
            f"model holds {sorted(self.held)}")
        assert self.store.count() == len(expected), "a chunk is stored twice"
        if not self.changed:
            return
        self.changed = False
        self.figures.checks += 1
        chunks = self.store.chunks()
        for name, content in self.held.items():
            key = str((self.folder / name).resolve())
            assert self.store.ids_for_path(key) == self.expected_ids[name], f"{name} differs"
            text = " ".join(c.text for c in self.store.chunks({"path": key}))
            picked = [s for s in SENTENCES if s in content]
            assert all(s in text for s in picked), f"{name} is stored in part"
            assert not any(s in text for s in SENTENCES if s not in picked), (
                f"{name} holds sentences of an older version")
        places = Counter((c.paper.id, c.index) for c in chunks)
        assert max(places.values(), default=1) == 1, "two chunks at one place of one paper"
        # each chunk found by its own text (ties: identical texts in two files)
        if chunks:
            vectors = self.embedder.embed([c.embed_text for c in chunks])
            twins = Counter(c.embed_text for c in chunks)
            found = sum(
                c.id in {h.id for h, _ in self.store.query(v, twins[c.embed_text] + 2)}
                for c, v in zip(chunks, vectors, strict=True))
            recall = found / len(chunks)
            self.figures.chunks_probed += len(chunks)
            self.figures.min_recall = min(self.figures.min_recall, recall)
            assert recall >= RECALL_FLOOR, f"recall by own text {recall:.2f}"
        # what `rag papers` lists, from a new store object
        listed = {(p.source, p.title) for p in ChunkStore(self.settings).papers()}
        model = {(n, c.split("\n", 1)[0].removeprefix("# ")) for n, c in self.held.items()}
        assert listed == model

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        for name in (self.store.name, f"{self.store.name}-changes"):
            with suppress(Exception):  # never created: nothing to drop
                self.store.client.delete_collection(name)


@pytest.mark.parametrize("mode", ["embedded", "server"])
def test_store_follows_the_model(mode: str, tmp_path: Path, minilm,
                                 request: pytest.FixtureRequest) -> None:
    base = Settings(data_dir=tmp_path / "data", chunk_tokens=48, chunk_overlap_tokens=8)
    if mode == "server":
        host, port = request.getfixturevalue("chroma_server")
        base = base.model_copy(update={"chroma_host": host, "chroma_port": port})
    figures = Figures()
    machine = type(f"Library_{mode}", (LibraryMachine,),
                   {"base": base, "embedder": minilm, "figures": figures})
    outcome = "held"
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
            derandomize=not STRESS,
            suppress_health_check=list(HealthCheck)))
    except BaseException as exc:
        outcome = f"**failed**: {str(exc).splitlines()[0][:200]}"
        raise
    finally:
        steps = ", ".join(f"{k} {v}" for k, v in sorted(figures.steps.items()))
        record(f"Store follows a model ({mode})",
               f"Hypothesis state machine, {EXAMPLES} examples x up to {STEPS} steps: {steps}",
               f"{figures.examples} examples, {figures.checks} full checks",
               f"ids and count as the model after every step, no duplicates, no partial or "
               f"stale file, `papers()` as the model; recall by own text >= "
               f"{figures.min_recall:.2f} over {figures.chunks_probed} probes"
               if outcome == "held" else "—", "—" if outcome == "held" else outcome)
    assert figures.checks > 0
