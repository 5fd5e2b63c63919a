"""The `extractive` backend: answers assembled only from retrieved passages and paper metadata.

No language model writes anything here, so nothing can be invented: every sentence shown is a
sentence of a cited passage (or a paper's title/authors from its record). Sentences are ranked by
dense similarity to the question (the same MiniLM) plus IDF-weighted term overlap. The module also
decides when the evidence does not cover the question (abstention). It does not retrieve.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.chunking import sentence_spans
from rag.embeddings import Embedder
from rag.lexical import fold, tokenize
from rag.models import Hit, Paper
from rag.query import QueryIntent, named_terms
from rag.relevance import Relevance, RelevanceGate

# Words that shape a question but say nothing about its subject (stemmed like the index).
_SCAFFOLD = set(tokenize(
    "who wrote written write writes author authors authored presented present presents paper "
    "papers work works study studies propose proposed proposes method approach main idea finding "
    "findings summarise summarize summary nutshell tell explain describe describes use used uses "
    "using library article articles talk talks introduce introduces show shows find finds "
    "question does did get gets make makes look looks deal deals report reports according "
    "compared compare original"
))
_MARKUP = re.compile(r"(\*\*[^*]{1,40}\*\*:?|^#+\s*|^\s*[-*•]\s+|\[\d+\]\s*|\(Show abstract\))", re.M)
_NUMBERISH = re.compile(r"\d")
_METADATA_LINE = re.compile(r"^(Authors?|Conference|URL|Link|TL;DR)\s*:", re.I)
# A number as a value (78%, 4-13x, 89.9, 43 seconds), not as part of a name (CIFAR-10, INT2).
_STANDALONE_NUMBER = re.compile(r"(?<![\w-])[+-]?\d[\d,.]*(?:\s*[-–]\s*\d[\d,.]*)?(?:%|x\b|×)?(?![\w-]*[a-wyz])")
_WHICH = re.compile(r"\b(which|what|is there an?y?|name the)\b.{0,40}\b(paper|talk|work|article|"
                    r"oral|tutorial|method|model|benchmark)\b", re.I)
_QUANTITY = re.compile(
    r"\b(how (much|many|fast|big|large|long|often|far|well)|by how|what (is |was |were |are )?"
    r"(the )?([\w-]+ ){0,2}(rate|size|score|accuracy|fid|bleu|number|percentage|speed-?up|error|"
    r"perplexity|top-1|f1|auc))\b", re.I)
MAX_FACT_CHARS = 900
RELATIVE_CUTOFF = 0.5
MAX_LONG_CHARS = 2300


@dataclass
class Extract:
    """An extractive answer: text with [n] markers, the hits it cites, and the support it found."""

    text: str
    abstained: bool
    cited: list[int] = field(default_factory=list)
    support: float = 0.0
    reason: str = ""
    # The best evidence sentences as (source number, sentence): what an LLM prompt needs, a
    # fraction of the passages' length, so a small local model starts answering quickly.
    evidence: list[tuple[int, str]] = field(default_factory=list)
    # What the relevance gate measured (None when it did not run, e.g. for summaries).
    relevance: Relevance | None = None


@dataclass
class _Sentence:
    text: str
    hit_no: int  # 1-based source number
    position: int
    score: float = 0.0


def key_terms(question: str) -> list[str]:
    return [t for t in dict.fromkeys(tokenize(question)) if t not in _SCAFFOLD]


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", _MARKUP.sub(" ", text)).strip()


class IDF:
    """Inverse document frequency of stemmed terms over the library's chunks."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.n = max(len(texts), 1)
        self.df: Counter[str] = Counter()
        for t in texts:
            self.df.update(set(tokenize(t)))

    def __call__(self, term: str) -> float:
        return math.log(1 + (self.n - self.df.get(term, 0) + 0.5) / (self.df.get(term, 0) + 0.5))


def coverage(terms: Sequence[str], text: str, idf: IDF) -> float:
    """IDF-weighted share of `terms` present in `text` (1.0 = every term is there)."""
    if not terms:
        return 1.0
    present = set(tokenize(text))
    total = sum(idf(t) for t in terms)
    return sum(idf(t) for t in terms if t in present) / total if total else 1.0


class ExtractiveAnswerer:
    """Builds answers from hits; `library_text` (all titles and passages) tells whether a name
    the question uses exists anywhere in the library."""

    def __init__(self, embedder: Embedder, idf: IDF, library_text: str = "") -> None:
        self.embedder = embedder
        self.idf = idf
        self.library = _Evidence(library_text)
        self.gate = RelevanceGate(embedder, idf, self.library.words, idf.df.keys(), _SCAFFOLD)

    # --- public --------------------------------------------------------------------------------
    def answer(self, question: str, intent: QueryIntent, hits: Sequence[Hit],
               follow_up: str | None = None) -> Extract:
        """Answer `question` (a standalone one); `follow_up` is the user's own words when the
        question was completed from the conversation: its form decides the kind of answer."""
        if not hits:
            return Extract("", True, reason="no passages")
        relevance = self.gate.check(question, intent, hits)
        if not relevance.relevant:
            return Extract("", True, reason=relevance.reason, relevance=relevance)
        missing = self.unsupported(question, intent, hits)
        if missing:
            return Extract("", True, reason=missing, relevance=relevance)
        extract = self._answer(question, intent, hits, follow_up)
        extract.relevance = relevance
        return extract

    def _answer(self, question: str, intent: QueryIntent, hits: Sequence[Hit],
                follow_up: str | None) -> Extract:
        own = [(n, h) for n, h in enumerate(hits, 1) if h.paper.id in intent.author_paper_ids]
        if intent.authors and own and not intent.paper_ids and intent.kind in ("fact", "list"):
            return self._by_author(intent.authors, own)
        if intent.kind == "list":
            return self._list(question, hits)
        if intent.kind == "authors":
            return self._authors(question, hits)
        if intent.kind == "summary":
            return self._summary(question, hits)
        if _WHICH.search(follow_up or question):
            return self._which(question, hits)
        return self._fact(question, hits, intent.paper_ids)

    def unsupported(self, question: str, intent: QueryIntent, hits: Sequence[Hit]) -> str:
        """Why the passages cannot answer the question, or '' when they can.

        Two checks, both about the question's specifics rather than its wording: every thing the
        question names (a coined name, a quoted or capitalised title, 'ResNet-18') must occur in
        the passages; and a question asking for a quantity ('what batch size', 'how much
        faster') needs a passage sentence that has a number next to one of its focus terms."""
        evidence = _Evidence(" ".join(
            f"{h.paper.title} {' '.join(h.paper.authors)} {h.paper.section or ''} {h.chunk.text}"
            for h in hits))
        quantity = bool(_QUANTITY.search(question)) and intent.kind not in ("list", "summary")
        for term in named_terms(question):
            # Absent from the passages: fatal when the library lacks it altogether, or when the
            # question asks for a quantity of it ("what FID ..."); otherwise it is context.
            if not evidence.has(term) and (quantity or not self.library.has(term)):
                return f"'{term}' does not occur in the retrieved passages"
        if not quantity or intent.kind == "authors":
            return ""
        focus = _quantity_focus(question)
        for sent in self._sentences(hits[:3]):
            if _STANDALONE_NUMBER.search(sent.text) and set(focus) & set(tokenize(sent.text)):
                return ""
        return "no passage gives a number for " + " ".join(focus)

    def _focus(self, question: str, hit: Hit) -> list[str]:
        """Key terms of the question that are not just the paper's own title words."""
        title = set(tokenize(hit.paper.title))
        return [t for t in key_terms(question) if t not in title] or key_terms(question)

    def summarise(self, paper: Paper, passages: Sequence[Hit], question: str = "") -> Extract:
        """The paper's most central sentences, in reading order, with their citations."""
        sents = self._sentences(passages)
        if not sents:
            return Extract("", True, reason="paper has no text")
        vecs = self.embedder.embed([s.text for s in sents])
        centroid = [sum(col) / len(vecs) for col in zip(*vecs, strict=True)]
        qv = self.embedder.embed([question])[0] if question else centroid
        for s, v in zip(sents, vecs, strict=True):
            s.score = _dot(v, centroid) + 0.5 * _dot(v, qv) + (0.15 if s.position == 0 else 0.0)
        chosen = _budget(sorted(sents, key=lambda s: -s.score), MAX_LONG_CHARS - 400, limit=6)
        chosen.sort(key=lambda s: (s.hit_no, s.position))
        head = f"**{paper.title}**" + (f" ({paper.venue_year})" if paper.venue_year else "")
        tldr = f"\n\nTL;DR: {paper.tldr}" if paper.tldr else ""
        body = " ".join(f"{s.text} [{s.hit_no}]" for s in chosen)
        return Extract(f"{head}{tldr}\n\n{body}", False, cited=_cited(chosen),
                       evidence=_evidence(chosen))

    # --- kinds ---------------------------------------------------------------------------------
    def _fact(self, question: str, hits: Sequence[Hit],
              named: Sequence[str] = ()) -> Extract:
        # A question about a named paper is answered from that paper's passages only.
        pool: list[Hit | None] = list(hits)
        if any(h.paper.id in named for h in hits):
            pool = [h if h.paper.id in named else None for h in hits]
        ranked = self._ranked(question, pool)
        if ranked:  # only sentences that answer nearly as well as the best one
            ranked = [s for s in ranked if s.score >= RELATIVE_CUTOFF * ranked[0].score]
        chosen = _budget(_with_continuation(ranked, self._sentences(pool)), MAX_FACT_CHARS, limit=4)
        if not chosen:  # a record with metadata only (title, authors): say what it is
            return self._which(question, hits)
        paper = hits[chosen[0].hit_no - 1].paper
        top = chosen[0]
        lead = f"From **{paper.title}** [{top.hit_no}]:"
        return Extract(f"{lead} " + " ".join(f"{s.text} [{s.hit_no}]" for s in chosen), False,
                       cited=_cited(chosen), evidence=_evidence(chosen))

    def _which(self, question: str, hits: Sequence[Hit]) -> Extract:
        ranked = self._ranked(question, hits[:1]) or self._ranked(question, hits)
        best = ranked[0] if ranked else None
        p = hits[0].paper
        text = f"**{p.title}**" + (f" ({p.venue_year})" if p.venue_year else "") + " [1]"
        if p.authors:
            text += f", by {_names(p.authors)}"
        text += "."
        if best:
            text += f" {best.text} [{best.hit_no}]"
        others = [h.paper.title for h in hits[1:3] if h.paper.id != p.id]
        if others:
            text += "\n\nAlso related: " + "; ".join(
                f"{t} [{i + 2}]" for i, t in enumerate(others))
        evidence = [(1, f"{p.title}" + (f", by {_names(p.authors)}." if p.authors else "."))]
        evidence += [(best.hit_no, best.text)] if best else []
        return Extract(text, False, cited=[1], evidence=evidence)

    def _authors(self, question: str, hits: Sequence[Hit]) -> Extract:
        p = hits[0].paper
        if not p.authors:
            return self._fact(question, hits)
        vy = f" ({p.venue_year})" if p.venue_year else ""
        text = f"**{p.title}**{vy} was written by {', '.join(p.authors)} [1]."
        # Retrieval may rank a near-namesake first; name the runner-up's authors too.
        for n, h in enumerate(hits[1:3], 2):
            if h.paper.authors and h.paper.id != p.id:
                text += (f"\n\nIf you meant **{h.paper.title}**: {', '.join(h.paper.authors)} "
                         f"[{n}].")
                break
        return Extract(text, False, cited=[1],
                       evidence=[(1, f"{p.title} was written by {', '.join(p.authors)}.")])

    def _by_author(self, authors: Sequence[str], own: Sequence[tuple[int, Hit]]) -> Extract:
        who = " / ".join(a.title() for a in authors)
        lines = [f"- **{h.paper.title}**" + (f" ({h.paper.venue_year})" if h.paper.venue_year
                                               else "") + f", by {_names(h.paper.authors)} [{n}]"
                 for n, h in own]
        return Extract(f"Papers by {who} in the library:\n\n" + "\n".join(lines), False,
                       cited=[n for n, _ in own],
                       evidence=[(n, f"{h.paper.title}, by {_names(h.paper.authors)}.")
                                 for n, h in own])

    def _list(self, question: str, hits: Sequence[Hit]) -> Extract:
        rows = ["| # | Paper | Venue | What the passage says |", "|---|---|---|---|"]
        cited = []
        for n, hit in enumerate(hits, 1):
            ranked = self._ranked(question, [hit])
            finding = ranked[0].text if ranked else clean(hit.chunk.text)[:200]
            finding = finding if len(finding) <= 260 else finding[:257].rsplit(" ", 1)[0] + "…"
            title = hit.paper.title.replace("|", "/")
            rows.append(f"| [{n}] | {title} | {hit.paper.venue_year or '—'} | "
                        f"{finding.replace('|', '/')} |")
            cited.append(n)
        return Extract("Papers in the library on this:\n\n" + "\n".join(rows), False, cited=cited)

    def _summary(self, question: str, hits: Sequence[Hit]) -> Extract:
        paper = hits[0].paper
        own = [h for h in hits if h.paper.id == paper.id]
        return self.summarise(paper, own, question)

    # --- sentences -----------------------------------------------------------------------------
    def _sentences(self, hits: Sequence[Hit | None]) -> list[_Sentence]:
        """Sentences of the passages, numbered by source; None keeps a source's number free."""
        out = []
        for n, hit in enumerate(hits, 1):
            if hit is None:
                continue
            text = hit.chunk.text
            for pos, (a, b) in enumerate(sentence_spans(text)):
                s = clean(text[a:b])
                if len(s) >= 25 and len(tokenize(s)) >= 3 and not _METADATA_LINE.match(s):
                    out.append(_Sentence(s, n, pos))
        return out

    def _ranked(self, question: str, hits: Sequence[Hit | None]) -> list[_Sentence]:
        sents = self._sentences(hits)
        if not sents:
            return []
        focus = {n: self._focus(question, h) for n, h in enumerate(hits, 1) if h is not None}
        vecs = self.embedder.embed([question] + [s.text for s in sents])
        qv = vecs[0]
        wants_number = bool(re.search(r"\b(how (much|many|fast|big|large|long)|what (percentage|"
                                      r"accuracy|score)|by how)\b", question, re.I))
        for s, v in zip(sents, vecs[1:], strict=True):
            s.score = (_dot(v, qv) + 0.6 * coverage(focus[s.hit_no], s.text, self.idf)
                       - 0.03 * (s.hit_no - 1))
            if wants_number and _NUMBERISH.search(s.text):
                s.score += 0.15
        return sorted(sents, key=lambda s: -s.score)


_CONTINUES = re.compile(r"^(This|These|It|They|Such|Specifically|In particular|For example|"
                        r"Namely|Here|We find|We show|Both)\b")


def _with_continuation(ranked: list[_Sentence], all_sents: list[_Sentence]) -> list[_Sentence]:
    """Put the best sentence's successor right after it when it continues the thought
    ("... a class of activations. This class includes the Swish activation ...")."""
    if not ranked:
        return ranked
    best = ranked[0]
    nxt = next((s for s in all_sents if s.hit_no == best.hit_no and s.position > best.position),
               None)
    if nxt is None or not _CONTINUES.match(nxt.text):
        return ranked
    rest = [s for s in ranked[1:] if not (s.hit_no == nxt.hit_no and s.position == nxt.position)]
    return [best, nxt, *rest]


def _quantity_focus(question: str) -> list[str]:
    """The measured thing: content words of the quantity cue and the few words after it."""
    m = _QUANTITY.search(question)
    assert m is not None
    tail = question[m.start():].split()[:6]
    return [t for t in tokenize(" ".join(tail)) if t not in _SCAFFOLD] or key_terms(question)


def _squash(text: str) -> str:
    """Letters and digits only, folded: 'CIFAR-10' and 'cifar10' compare equal."""
    return re.sub(r"[^a-z0-9]+", "", fold(text))


_PLAIN_SUFFIX = re.compile(r"-(based|like|type|style|free|aware|level|wise|driven|resilient)\b", re.I)


class _Evidence:
    """Text to look names up in: whole words for a single name (so 'LoRA' is not found inside
    'exploration'), squashed text for a run of words ('CIFAR-10' = 'cifar10')."""

    def __init__(self, text: str) -> None:
        self.squashed = _squash(text)
        folded = fold(text)
        self.words = set(re.findall(r"[a-z0-9]+", folded))
        self.words |= {_squash(w) for w in re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)+", folded)}

    def has(self, term: str) -> bool:
        parts = _PLAIN_SUFFIX.sub("", term).split()
        if len(parts) == 1:
            return any(self._word(v) for v in _variants(parts[0]))
        if len(parts) == 2:  # "Byzantine-resilient SGD": both words, anywhere
            return all(any(self._word(v) for v in _variants(p)) for p in parts)
        return _squash(" ".join(parts)) in self.squashed

    def _word(self, key: str) -> bool:
        return bool(key) and (key in self.words or (len(key) >= 8 and key in self.squashed))


def _variants(word: str) -> list[str]:
    """The word squashed, and without a plural s (GNNs -> gnn, f-GANs -> fgan)."""
    key = _squash(word)
    return [key, key[:-1]] if key.endswith("s") and len(key) > 3 else [key]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


def _budget(sents: Sequence[_Sentence], chars: int, limit: int) -> list[_Sentence]:
    chosen: list[_Sentence] = []
    used = 0
    seen: set[str] = set()
    for s in sents:
        if len(chosen) >= limit:
            break
        if s.text in seen or (chosen and used + len(s.text) > chars):
            continue
        chosen.append(s)
        seen.add(s.text)
        used += len(s.text) + 6
    return chosen


def _evidence(sents: Sequence[_Sentence]) -> list[tuple[int, str]]:
    return [(s.hit_no, s.text) for s in sents]


def _cited(sents: Sequence[_Sentence]) -> list[int]:
    return sorted({s.hit_no for s in sents})


def _names(authors: Sequence[str]) -> str:
    return ", ".join(authors[:4]) + (" et al." if len(authors) > 4 else "")
