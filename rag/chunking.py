"""Papers -> chunks sized in the embedding model's own tokens, with citations attached.

A chunk never crosses a paper boundary, nor a section of a paper that has sections (PDFs): each
chunk carries its section's heading and kind, so citations read "p. 4, §3.2 Experiments" and
reference-list chunks can be told apart. Its embedded text (`Chunk.embed_text`) is the paper
title, the section heading if any, then the passage, and all of it fits the model's window
(MiniLM truncates at 256 word pieces, so a longer chunk would be silently half-embedded). Chunks
break at sentence ends where possible and overlap by a few sentences. Sentences are measured in
slices of at most `_MEASURE_CHARS` characters, so the tokenizer never sees a text longer than
the model's window (it warns "Token indices sequence length is longer than ..." otherwise).
This module does not embed or store anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rag.embeddings import Embedder
from rag.models import Chunk, Paper, Section, stable_id
from rag.text import sentence_spans

_SPECIAL_TOKENS = 2  # [CLS] and [SEP]
_MEASURE_CHARS = 240  # no slice this long makes more word pieces than MiniLM's 256


class Chunker:
    """Packs whole sentences into token-budgeted windows; splits a too-long sentence by tokens."""

    def __init__(self, embedder: Embedder, chunk_tokens: int = 200, overlap_tokens: int = 40):
        if overlap_tokens >= chunk_tokens // 2:
            raise ValueError(
                f"chunk overlap {overlap_tokens} must be under half the chunk size {chunk_tokens}"
            )
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def chunk_papers(self, papers: Iterable[Paper], path: str = "") -> list[Chunk]:
        return [c for p in papers for c in self.chunk_paper(p, path)]

    def chunk_paper(self, paper: Paper, path: str = "") -> list[Chunk]:
        title_tokens = self.embedder.count_tokens(paper.title) + 1  # the newline joins them
        chunks: list[Chunk] = []
        for start, end, section in self._parts(paper):
            head = title_tokens + (self.embedder.count_tokens(section.name) + 1 if section else 0)
            # A heading longer than 3/4 of the window (never seen in practice) would squeeze the
            # passage to nothing; keep a quarter of the window for text and let it be truncated.
            budget = max(self.chunk_tokens - head - _SPECIAL_TOKENS, self.chunk_tokens // 4)
            for a, b in self._windows(paper.text[start:end], budget):
                text = paper.text[start + a:start + b]
                index = len(chunks)
                cid = stable_id(path or paper.source, paper.id, str(index), text, length=24)
                chunks.append(Chunk(
                    id=cid, paper=paper, index=index, text=text, page=paper.page_at(start + a),
                    section=section.name if section else None,
                    section_kind=section.kind if section else "body"))
        return chunks

    @staticmethod
    def _parts(paper: Paper) -> list[tuple[int, int, Section | None]]:
        """(start, end, section) pieces of the text: one per section, or the whole text."""
        if not paper.sections:
            return [(0, len(paper.text), None)]
        bounds = [s.start for s in paper.sections[1:]] + [len(paper.text)]
        parts: list[tuple[int, int, Section | None]] = []
        if paper.sections[0].start > 0:
            parts.append((0, paper.sections[0].start, None))
        parts.extend((s.start, end, s) for s, end in zip(paper.sections, bounds, strict=True)
                     if paper.text[s.start:end].strip())
        return parts

    def _windows(self, text: str, budget: int) -> Iterator[tuple[int, int]]:
        """Character windows of at most `budget` tokens made of whole sentences."""
        pieces = list(self._pieces(text, budget))
        i = 0
        while i < len(pieces):
            used, j = 0, i
            while j < len(pieces) and used + pieces[j][2] <= budget:
                used += pieces[j][2]
                j += 1
            j = max(j, i + 1)
            yield pieces[i][0], pieces[j - 1][1]
            if j >= len(pieces):
                return
            # Step back over trailing sentences for overlap, but always move forward.
            back, k = 0, j
            while k - 1 > i and back + pieces[k - 1][2] <= self.overlap_tokens:
                k -= 1
                back += pieces[k][2]
            i = k

    def _pieces(self, text: str, budget: int) -> Iterator[tuple[int, int, int]]:
        """Sentences as (start, end, tokens); a sentence over budget is cut into token runs."""
        for a, b in sentence_spans(text):
            spans = self._token_spans(text, a, b)
            if len(spans) <= budget:
                yield a, b, len(spans)
                continue
            for s in range(0, len(spans), budget):
                run = spans[s : s + budget]
                yield run[0][0], run[-1][1], len(run)

    def _token_spans(self, text: str, a: int, b: int) -> list[tuple[int, int]]:
        """Token spans of text[a:b] in `text` coordinates, measured slice by slice (slices end at
        white space, where word pieces never straddle)."""
        spans: list[tuple[int, int]] = []
        while a < b:
            cut = b
            if b - a > _MEASURE_CHARS:
                space = max(text.rfind(w, a + 1, a + _MEASURE_CHARS) for w in " \n\t")
                cut = space if space > a else a + _MEASURE_CHARS
            spans.extend((a + x, a + y) for x, y in self.embedder.token_spans(text[a:cut]))
            a = cut
        return spans
