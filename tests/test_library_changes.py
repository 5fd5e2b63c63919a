"""A change of the library costs the change: `Library.changed` and the extractive reader's
`follow` must end where a whole reload and a fresh reader would, for additions, edits and
deletions, and read only what changed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rag.extractive import ExtractiveAnswerer
from rag.indexing import Indexer
from rag.library import Library
from rag.query import NameIndex
from rag.store import ChunkStore

WORDS = ["tide", "gauge", "estuary", "salinity", "reef", "glacier", "moraine", "dune", "sediment", "plume", "current", "basin", "delta", "lagoon", "shoal", "marsh", "brine", "fjord", "atoll", "trench", "ridge", "upwelling", "eddy", "swell"]


def _paper(n: int, rng: random.Random) -> str:
    body = " ".join(f"The {rng.choice(WORDS)} {rng.choice(WORDS)} study measured "
                    f"{rng.randint(2, 99)} sites." for _ in range(60))
    # a word only this paper uses, to find it by
    return f"# Survey of coastal site {n}\n\nQuux{n}word is our method, QuuxNet{n} on CoastBench. {body}\n"


def _indexed(settings: Any, embedder: Any, tmp_path: Path, rng: random.Random, papers: int
             ) -> tuple[Path, Indexer, ChunkStore, Library]:
    """A folder of `papers` generated papers, indexed; its store and library."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(papers):
        (folder / f"p{n}.md").write_text(_paper(n, rng))
    indexer = Indexer(settings, embedder=embedder)
    indexer.index([folder])
    store = ChunkStore(settings)
    return folder, indexer, store, Library.load(store, settings)


def _same(changed: Library, whole: Library) -> None:
    assert changed.chunks.keys() == whole.chunks.keys()
    assert {p: [c.id for c in cs] for p, cs in changed.by_paper.items()} == {
        p: [c.id for c in cs] for p, cs in whole.by_paper.items()}
    assert changed.papers == whole.papers
    assert changed.fingerprint == whole.fingerprint
    assert changed.sources_with_papers == whole.sources_with_papers
    assert changed.archive == whole.archive  # each paper's texts, compressed


def _same_reader(followed: ExtractiveAnswerer, fresh: ExtractiveAnswerer) -> None:
    assert followed.idf.n == fresh.idf.n
    assert +followed.idf.df == +fresh.idf.df
    assert followed.library.words == fresh.library.words
    assert followed.library.pieces == fresh.library.pieces  # type: ignore[attr-defined]
    assert followed.gate.sorted_vocabulary == fresh.gate.sorted_vocabulary


def _same_names(changed: NameIndex, fresh: NameIndex) -> None:
    assert {k: sorted(v) for k, v in changed.titles.items()} == {
        k: sorted(v) for k, v in fresh.titles.items()}
    for attr in ("names", "authors", "surnames", "heads", "used_by", "venues"):
        assert getattr(changed, attr) == getattr(fresh, attr), attr


def test_a_changed_library_equals_a_reloaded_one(settings: Any, hash_embedder: Any,
                                                 tmp_path: Path) -> None:
    rng = random.Random(5)
    folder, indexer, store, lib = _indexed(settings, hash_embedder, tmp_path, rng, 24)
    reader = ExtractiveAnswerer.for_library(hash_embedder, lib)
    names = NameIndex(lib)
    read: list[int] = []
    real_get = store.chunks_by_ids
    store.chunks_by_ids = lambda ids: read.append(len(ids)) or real_get(ids)  # type: ignore

    steps = [
        ("add", lambda: (folder / "p90.md").write_text(_paper(90, rng))),
        ("edit", lambda: (folder / "p3.md").write_text(_paper(3, rng))),
        ("delete", lambda: (folder / "p7.md").unlink()),
    ]
    for what, step in steps:
        step()
        indexer.index([folder])
        read.clear()
        changed = lib.changed(store, settings)
        assert changed.lexical.delta.ids, f"{what}: the BM25 index was rebuilt, not changed"
        assert sum(read) <= 10, f"{what}: read {sum(read)} chunks for one paper's change"
        whole = Library.load(store, settings)
        _same(changed, whole)
        # the paper found by its own word is the same as after a rebuild
        for n in (90, 3, 5):
            got = changed.lexical.search(f"quux{n}word", 3)
            want = whole.lexical.search(f"quux{n}word", 3)
            assert [c for c, _ in got[:1]] == [c for c, _ in want[:1]], (what, n)
        assert not changed.lexical.search("quux7word", 3) or what != "delete"
        assert reader.follow(changed), what
        _same_reader(reader, ExtractiveAnswerer.for_library(hash_embedder, whole))
        followed = names.changed(changed)
        assert followed is not None, what
        _same_names(followed, NameIndex(whole))
        names, lib = followed, changed
    assert reader.library.has("quux90word") and not reader.library.has("quux7word")


def test_a_reader_that_missed_changes_catches_up_or_rebuilds(settings: Any, hash_embedder: Any,
                                                             tmp_path: Path) -> None:
    rng = random.Random(6)
    folder, indexer, store, lib = _indexed(settings, hash_embedder, tmp_path, rng, 20)
    reader = ExtractiveAnswerer.for_library(hash_embedder, lib)
    for n in (50, 51):  # two changes the reader does not see
        (folder / f"p{n}.md").write_text(_paper(n, rng))
        indexer.index([folder])
        lib = lib.changed(store, settings)
    assert reader.follow(lib)
    _same_reader(reader, ExtractiveAnswerer.for_library(hash_embedder,
                                                        Library.load(store, settings)))
    # a library loaded whole has no history: a reader of an older one must be rebuilt
    (folder / "p52.md").write_text(_paper(52, rng))
    indexer.index([folder])
    assert not reader.follow(Library.load(store, settings))


def test_the_library_keeps_no_text_and_a_search_fetches_its_passages(
        settings: Any, hash_embedder: Any, tmp_path: Path) -> None:
    """Chunk texts stay in the store: the library holds none (each paper's texts only
    compressed, to take it out of the reader's statistics when it leaves), and a search fetches
    the texts of the passages it returns, not the library's."""
    from rag.retrieval import Retriever

    _, _, store, lib = _indexed(settings, hash_embedder, tmp_path, random.Random(7), 12)
    assert lib.chunks and all(c.text == "" for c in lib.chunks.values())
    assert all(c.text == "" for cs in lib.by_paper.values() for c in cs)
    pid = next(iter(lib.by_paper))
    stored = sorted(store.chunks({"paper_id": pid}), key=lambda c: c.index)
    assert [c.text for c in lib.paper_chunks(pid)] == [c.text for c in stored]
    fetched: list[int] = []
    texts = store.texts
    store.texts = lambda ids: (r := texts(list(ids)), fetched.append(len(r)))[0]  # type: ignore
    retriever = Retriever(settings, embedder=hash_embedder, store=store)
    hits = retriever.search("What is Quux4word?", k=3)
    assert hits and all(h.chunk.text for h in hits)
    assert any("Quux4word" in h.chunk.text for h in hits)
    assert 0 < sum(fetched) <= 3 * 5, fetched  # the hits and their neighbours
    assert sum(fetched) < len(retriever.library.chunks)


def test_a_passage_fetches_neighbours_it_was_not_given(settings: Any, hash_embedder: Any,
                                                      tmp_path: Path, monkeypatch: Any) -> None:
    """A passage widens with neighbours whose texts the first request did not bring: they are
    fetched then, and the passages equal those built from texts fetched all at once."""
    from rag import retrieval
    from rag.retrieval import Retriever

    # short chunks, so that a passage takes in several of them
    settings = settings.model_copy(update={"chunk_tokens": 40, "chunk_overlap_tokens": 5})
    _, _, store, _ = _indexed(settings, hash_embedder, tmp_path, random.Random(8), 8)
    retriever = Retriever(settings, embedder=hash_embedder, store=store)
    question = "Which site measured the estuary salinity?"
    whole = [(h.chunk.id, h.chunk.text) for h in retriever.search(question, k=4)]
    own = store.texts(cid for cid, _ in whole)
    assert any(text != own[cid] for cid, text in whole), "no passage was widened"
    requests: list[int] = []
    texts = store.texts
    store.texts = lambda ids: (r := texts(list(ids)), requests.append(len(r)))[0]  # type: ignore
    monkeypatch.setattr(retrieval, "_NEIGHBOURS", 0)  # the first request: the best chunks only
    assert [(h.chunk.id, h.chunk.text) for h in retriever.search(question, k=4)] == whole
    assert len(requests) > 1, requests  # neighbours were fetched on demand
