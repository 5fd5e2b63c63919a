"""Text helpers every stage shares: folding case and accents, the stop-word list, and the sentence
splitter for source text.

One copy of each, so the chunker, BM25, question matching, the extractive reader and the
verifier agree on what a word and a sentence are. Answers are split by a different splitter,
`rag.verify.split_sentences`, on purpose: an answer's sentences keep the [n] markers that close
them ("... 89.9 [1]. Next") and lose Markdown bullets, while a source's sentences are spans into
its text (a chunk boundary, a passage to quote) and carry no citations. The parsers'
`rag.parsers.common.fold` is a different operation (runs of white space to one space) under the
same name. This module knows nothing about chunks, papers or models.
"""

from __future__ import annotations

import re
import unicodedata

# A small English stop list: BM25's IDF already discounts common words, this just keeps
# question scaffolding ("which paper ... the ...") from matching everything.
STOP_WORDS = frozenset(
    ["a", "an", "the", "and", "or", "of", "in", "on", "for", "to", "with", "by", "from", "at", "as", "is", "are", "was", "were", "be", "been", "being", "this", "that", "these", "those", "it", "its", "into", "than", "then", "there", "their", "they", "them", "which", "what", "who", "whom", "whose", "how", "why", "when", "where", "does", "do", "did", "done", "can", "could", "would", "should", "will", "shall", "may", "might", "must", "not", "no", "yes", "paper", "papers", "about", "any", "some", "such", "also", "we", "our", "you", "your", "i", "me", "my", "he", "she", "his", "her", "has", "have", "had", "between", "over", "under", "more", "most", "other", "only", "same", "so", "too", "very", "s", "t", "just"]
)


def fold(text: str) -> str:
    """Lower-case and strip accents so 'Hölder' matches 'Holder'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    if decomposed.isascii():
        return decomposed
    # Only non-ASCII characters can be combining marks: test those, not every character (the
    # library's text is folded once per chunk, and a per-character loop dominated that).
    return _NON_ASCII.sub(_drop_combining, decomposed)


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def _drop_combining(match: re.Match[str]) -> str:
    return "".join(ch for ch in match.group(0) if not unicodedata.combining(ch))


# A sentence ends at . ! ? (optionally closed by a quote/bracket) followed by white space, or at a
# blank line. Abbreviations occasionally split early; that only makes a chunk boundary finer.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\[(\"'*#-])|\n\s*\n")
_ABBREVIATION = re.compile(r"\b(vs|e\.g|i\.e|et al|cf|Fig|Figs|Eq|Eqs|Sec|No|approx|resp|etc|"
                           r"Dr|Mr|Ms|Prof|[A-Z])\.$")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text`, white space trimmed."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if _ABBREVIATION.search(text, max(0, match.start() - 8), match.start()) and "\n\n" not in match.group(0):
            continue  # "90.2% vs. 91.1%", "et al. (2019)": not a sentence end
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out
