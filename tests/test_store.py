"""The Chroma adapter against both an on-disk store and a real `chroma run` server."""

from __future__ import annotations

import pytest

from rag.chunking import Chunker
from rag.models import Paper
from rag.store import ChunkStore

pytestmark = pytest.mark.slow


def _chunks(embedder, title="Sparse Attention", text="Attention is sparse. It saves memory."):
    paper = Paper(id=title[:8], title=title, source="a.md", text=text, authors=("Ada Lovelace",),
                  venue="ICLR", year=2021, url="https://example.org/p")
    return Chunker(embedder, 40, 5).chunk_paper(paper, "/docs/a.md")


def test_add_query_roundtrip_keeps_metadata(store_settings, hash_embedder) -> None:
    store = ChunkStore(store_settings)
    chunks = _chunks(hash_embedder)
    store.add(chunks, hash_embedder.embed([c.embed_text for c in chunks]), "/docs/a.md")
    assert store.count() == len(chunks)
    (got, sim), *_ = store.query(hash_embedder.embed(["sparse attention memory"])[0], 3)
    assert got.paper.title == "Sparse Attention"
    assert got.paper.authors == ("Ada Lovelace",)
    assert (got.paper.venue, got.paper.year, got.paper.url) == ("ICLR", 2021, "https://example.org/p")
    assert 0 < sim <= 1.0001


def test_upsert_same_ids_never_duplicates(store_settings, hash_embedder) -> None:
    store = ChunkStore(store_settings)
    chunks = _chunks(hash_embedder)
    vectors = hash_embedder.embed([c.embed_text for c in chunks])
    store.add(chunks, vectors, "/docs/a.md")
    store.add(chunks, vectors, "/docs/a.md")
    assert store.count() == len(chunks)
    assert store.ids_for_path("/docs/a.md") == {c.id for c in chunks}


def test_delete_and_filters(store_settings, hash_embedder) -> None:
    store = ChunkStore(store_settings)
    a = _chunks(hash_embedder)
    b = _chunks(hash_embedder, title="Dense Retrieval", text="Negatives matter for retrieval.")
    store.add(a, hash_embedder.embed([c.embed_text for c in a]), "/docs/a.md")
    store.add(b, hash_embedder.embed([c.embed_text for c in b]), "/docs/b.md")
    assert store.paths() == {"/docs/a.md", "/docs/b.md"}
    hits = store.query(hash_embedder.embed(["retrieval"])[0], 5, {"paper_id": b[0].paper.id})
    assert {h.paper.title for h, _ in hits} == {"Dense Retrieval"}
    store.delete(store.ids_for_path("/docs/a.md"))
    assert store.paths() == {"/docs/b.md"}
    assert [p.title for p in store.papers()] == ["Dense Retrieval"]


def test_fingerprint_tracks_content(store_settings, hash_embedder) -> None:
    store = ChunkStore(store_settings)
    empty = store.fingerprint()
    chunks = _chunks(hash_embedder)
    store.add(chunks, hash_embedder.embed([c.embed_text for c in chunks]), "/docs/a.md")
    assert store.fingerprint() != empty


def test_collection_name_follows_index_shape(settings) -> None:
    other = settings.model_copy(update={"chunk_tokens": 128})
    assert settings.collection_name() != other.collection_name()
    assert settings.collection_name() == settings.model_copy().collection_name()


def test_nearest_among_scores_exactly_what_nearest_ranks(store_settings, hash_embedder) -> None:
    """The exact scoring of a few chunks (one paper's) ranks them as the vector index does."""
    from rag.store import ChunkStore

    store = ChunkStore(store_settings)
    texts = [f"passage {i} about {w}" for i, w in enumerate(
        ["tides", "reefs", "glaciers", "dunes", "deltas", "basins", "ridges", "fjords"])]
    vectors = hash_embedder.embed(texts)
    ids = [f"c{i}" for i in range(len(texts))]
    store.upsert(ids, vectors, texts, [{"paper_id": "p", "path": "x"} for _ in ids])
    query = hash_embedder.embed(["passage about glaciers and fjords"])[0]
    exact = store.nearest_among(query, [*ids[:6], "missing"], 6)
    indexed = store.nearest(query, 6, {"paper_id": "p"})
    assert [i for i, _ in exact][:3] == [i for i, _ in indexed if i in ids[:6]][:3]
    assert {i for i, _ in exact} == set(ids[:6])
    exact_sim = dict(exact)
    for cid, sim in indexed:
        if cid in exact_sim:
            assert abs(exact_sim[cid] - sim) < 1e-4, cid


def test_listing_reads_every_page(store_settings, hash_embedder, monkeypatch) -> None:
    """Listing pages through the collection (LIMIT/OFFSET): nothing is lost or repeated at a
    page boundary."""
    from rag import store as store_module

    store = ChunkStore(store_settings)
    chunks = _chunks(hash_embedder, text=" ".join(f"Sentence {i} is about tides." for i in range(40)))
    store.add(chunks, hash_embedder.embed([c.embed_text for c in chunks]), "/docs/a.md")
    assert len(chunks) >= 5
    monkeypatch.setattr(store_module, "_LIST_PAGE", 2)  # several pages, and a page boundary
    monkeypatch.setattr(store_module, "_ID_PAGE", 2)
    monkeypatch.setattr(store_module, "_PAGE", 2)
    assert store.ids() == {c.id for c in chunks}
    assert sorted(c.id for c in store.chunks()) == sorted(c.id for c in chunks)
    # reads by id page too: the texts a search fetches, the chunks a change reads
    wanted = [c.id for c in chunks[:5]] + ["no-such-chunk"]
    assert store.texts(wanted) == {c.id: c.text for c in chunks[:5]}
    assert sorted(c.id for c in store.chunks_by_ids(wanted)) == sorted(wanted[:5])
