"""Chunks fit the embedding window, never cross papers, and carry their citation."""

from __future__ import annotations

import pytest
from conftest import CORPUS

from rag.chunking import Chunker
from rag.models import Paper
from rag.text import sentence_spans


def _paper(text: str, title: str = "A Title", pid: str = "p1", **kw) -> Paper:
    return Paper(id=pid, title=title, source="doc.md", text=text, **kw)


def test_sentence_spans_cover_text_without_whitespace() -> None:
    text = "First one. Second one!  Third?\n\nNew paragraph"
    parts = [text[a:b] for a, b in sentence_spans(text)]
    assert parts == ["First one.", "Second one!", "Third?", "New paragraph"]


def test_chunks_respect_budget_and_overlap(hash_embedder) -> None:
    text = " ".join(f"Sentence number {i} has five words." for i in range(100))
    chunks = Chunker(hash_embedder, chunk_tokens=40, overlap_tokens=10).chunk_paper(_paper(text))
    assert len(chunks) > 5
    for c in chunks:
        assert hash_embedder.count_tokens(c.embed_text) + 2 <= 40
        assert c.embed_text.startswith("A Title\n")
    # consecutive chunks share their boundary sentence(s)
    assert chunks[1].text.split(".")[0] in chunks[0].text
    # all text is covered
    joined = " ".join(c.text for c in chunks)
    for i in range(100):
        assert f"Sentence number {i} has" in joined


def test_overlong_sentence_is_cut_by_tokens(hash_embedder) -> None:
    text = "word " * 500
    chunks = Chunker(hash_embedder, chunk_tokens=60, overlap_tokens=0).chunk_paper(_paper(text))
    assert all(hash_embedder.count_tokens(c.embed_text) + 2 <= 60 for c in chunks)
    assert sum(hash_embedder.count_tokens(c.text) for c in chunks) == 500


def test_chunk_ids_are_stable_and_content_based(hash_embedder) -> None:
    chunker = Chunker(hash_embedder, 40, 5)
    a = chunker.chunk_paper(_paper("One sentence here. Another one there."))
    b = chunker.chunk_paper(_paper("One sentence here. Another one there."))
    c = chunker.chunk_paper(_paper("One sentence here. Changed one there."))
    assert [x.id for x in a] == [x.id for x in b]
    assert a[0].id != c[0].id


def test_pages_and_citation(hash_embedder) -> None:
    text = "Page one text. " * 30 + "Page two text. " * 30
    paper = _paper(text, page_starts=(0, len("Page one text. ") * 30), venue="ICLR", year=2021)
    chunks = Chunker(hash_embedder, 40, 0).chunk_paper(paper)
    assert chunks[0].page == 1 and chunks[-1].page == 2
    assert "A Title (ICLR 2021)" in chunks[-1].citation and "p. 2" in chunks[-1].citation


def test_overlap_must_be_under_half(hash_embedder) -> None:
    with pytest.raises(ValueError, match="overlap"):
        Chunker(hash_embedder, 40, 30)


@pytest.mark.slow
def test_real_minilm_chunks_fit_its_window(minilm) -> None:
    text = (CORPUS / "iclr2021-papers.md").read_text(encoding="utf-8")[:20000]
    paper = _paper(text, title="Deberta: decoding-Enhanced Bert with Disentangled Attention")
    chunks = Chunker(minilm, 200, 40).chunk_paper(paper)
    assert len(chunks) > 10
    for c in chunks:
        n = minilm.count_tokens(c.embed_text) + 2
        assert n <= 200 <= minilm.max_tokens, (n, c.text[:80])
