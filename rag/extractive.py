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
from collections.abc import Collection, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag import cues, snapshot
from rag.embeddings import Embedder
from rag.lexical import tokenize
from rag.models import Chunk, Hit, Paper, group_by_paper
from rag.query import QueryIntent, named_terms
from rag.relevance import Relevance, RelevanceGate
from rag.text import fold, sentence_spans
from rag.textquality import prose_score

if TYPE_CHECKING:
    from rag.library import Library

# Words that shape a question but say nothing about its subject (stemmed like the index).
# "summary" is not one of them: stemmed, "summarise this" and "papers on summarization" are the
# same word, and in the second it is the subject.
_SCAFFOLD = set(tokenize(
    "who wrote written write writes author authors authored presented present presents paper "
    "papers work works study studies propose proposed proposes method approach main idea finding "
    "findings nutshell tell explain describe describes use used uses "
    "using library article articles talk talks introduce introduces show shows find finds "
    "question does did get gets make makes look looks deal deals report reports according "
    "compared compare original"
))
_MARKUP = re.compile(r"(\*\*[^*]{1,40}\*\*:?|^#+\s*|^\s*[-*•]\s+|\[\d+\]\s*|\(Show abstract\))", re.M)
_METADATA_LINE = re.compile(r"^(Authors?|Conference|URL|Link|TL;DR)\s*:", re.I)
# A number as a value (78%, 4-13x, 89.9, 43 seconds), not as part of a name (CIFAR-10, INT2).
_STANDALONE_NUMBER = re.compile(
    r"(?<![\w-])[+-]?\d[\d,.]*(?:\s*[-–]\s*\d[\d,.]*)?(?:%|x\b|×)?(?![\w-]*[a-wyz])"
    # ... or spelled out ("ten participants", "twelve models"); "one" is left out: it is far
    # more often a pronoun ("one of the") than a count
    r"|\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
    r"hundreds?|thousands?|millions?|billions?|dozens?)\b", re.I)
# Chat-template turns and HTML elements inside a passage are markup (or a planted instruction),
# never a sentence a reader wants quoted.
_MARKUP_TOKENS = re.compile(r"<\|\w+\|>|<(start|end)_of_turn>|\[/?INST\]|"
                            r"</?(img|script|iframe|source|style|object|embed)\b", re.I)
# A citation's year ("(Shen et al., 2022)", "(Grobid, 2008–2023)") is no value the sentence reports.
_CITATION = re.compile(r"\([^()]*\b(1[89]|20)\d\d[a-z]?\)|\bet al\.,?\s*\(?(1[89]|20)\d\d[a-z]?\)?")
# What opens a sentence without being part of it: an enumerator ("(2) We used ...", "ii) ...")
# or a footnote mark glued to the sentence after it ("5 PDFs are not ..."). Left in, it reads as
# debris and counts as a number.
# A heading's number ("3.2 ", "A "), which the sentence text has lost (`_LEADING_MARK`).
_SECTION_NUMBER = re.compile(r"^(?:\d{1,2}|[A-Z])(?:\.\d{1,2}){0,3}\.?\s+(?=\S)")
_LEADING_MARK = re.compile(r"^(\(?(\d{1,2}|[ivx]{1,4}|[a-h])\)\s+|\d{1,2}\s+(?=[A-Z][a-z]))")
# Lengths, chosen for the reader (not for any scorer):
# - a fact answer is the sentence that answers, the one that continues it when it does, and up
#   to two that corroborate or complete it (a question asking for two things often finds them
#   in two sentences): four sentences, a short paragraph; more is a summary nobody asked for;
FACT_SENTENCES = 4
# - a summary is one short paragraph: problem, method, result and a limitation, with room for a
#   second method or result sentence; that reads in under a minute;
SUMMARY_SENTENCES = 6
# - its sentences are chosen among at most this many: an abstract, a conclusion and the opening
#   of an introduction hold about that many, each a problem, method or result statement;
#   a long paper's whole overview (280 sentences for a 14-page paper) takes seconds to embed on
#   two cores and adds sentences about details, not the gist;
SUMMARY_CANDIDATES = 40
# - a table cell is one sentence, cut at a reading span of about 35 words so every row of a
#   table stays a few lines high in a chat column;
CELL_WORDS = 35
RESTATED = 0.7  # share of a sentence's words found in one already chosen: a restatement
# A sentence that answers "nearly as well" as the best one scores at least this share of it.
RELATIVE_CUTOFF = 0.5
# A sentence from another paper than the best sentence's joins a fact answer only when it
# answers nearly as well: the answer is about one paper unless the question compares.
OTHER_PAPER_CUTOFF = 0.85
# A list row's sentence must score this share of the best row's to count as meeting the
# criterion: a row far below it shares neither meaning nor words with the question.
LIST_CUTOFF = 0.35
# Below this prose score (rag.textquality) a "sentence" is an equation, a table row or figure
# debris (ordinary sentences score >= 0.8; numbers-heavy results sentences 0.6-0.8).
MIN_PROSE = 0.5
CLEAN_PROSE = 0.8  # from here down a sentence is part debris and ranks lower
# A sentence is embedded for scoring up to this many words. Sentences are embedded in one batch,
# padded to the longest, so one run-on "sentence" (a table read as text, 200+ word pieces) made
# scoring 60 sentences 12x slower (2.3 s against 0.18 s); a sentence's first 40 words (about
# three lines of a column) say what it is about.
EMBED_WORDS = 40
# A sentence that is itself a question ranks this much lower as an answer.
QUESTION_PENALTY = 0.2
# Two papers whose retrieval scores differ by less than this share match the question equally.
TIE_MARGIN = 0.03


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
    # Passages the answer cites beyond the hits, numbered after them (a listed paper's result).
    extra: list[Hit] = field(default_factory=list)


@dataclass
class _Sentence:
    text: str
    hit_no: int  # 1-based source number
    position: int
    score: float = 0.0
    prose: float = 1.0
    role: int = 1  # summary role: 0 problem, 1 method (or none), 2 result, 3 limitation


def _head(sentence: str) -> str:
    """What of a sentence is embedded to score it: its first EMBED_WORDS words."""
    words = sentence.split()
    return sentence if len(words) <= EMBED_WORDS else " ".join(words[:EMBED_WORDS])


def _has_number(text: str) -> bool:
    """Whether the sentence reports a value: a number or a spelled-out count, citations aside."""
    return bool(_STANDALONE_NUMBER.search(_CITATION.sub(" ", text)))


def key_terms(question: str) -> list[str]:
    return [t for t in dict.fromkeys(tokenize(question)) if t not in _SCAFFOLD]


def clean(text: str) -> str:
    return _LEADING_MARK.sub("", re.sub(r"\s+", " ", _MARKUP.sub(" ", text)).strip())


class IDF:
    """Inverse document frequency of stemmed terms over the library's chunks."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.count = 0  # texts counted
        self.df: Counter[str] = Counter()
        self.update(texts, ())

    @property
    def n(self) -> int:
        return max(self.count, 1)

    def __call__(self, term: str) -> float:
        return math.log(1 + (self.n - self.df.get(term, 0) + 0.5) / (self.df.get(term, 0) + 0.5))

    def update(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """Follow a change of the library in place: the cost of the change, not the library."""
        gone: set[str] = set()
        for t in removed:
            terms = set(tokenize(t))
            self.df.subtract(terms)
            gone |= terms
            self.count -= 1
        for t in added:
            self.df.update(set(tokenize(t)))
            self.count += 1
        for term in [t for t in gone if self.df[t] <= 0]:
            del self.df[term]


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

    def __init__(self, embedder: Embedder, idf: IDF, library_text: str = "",
                 papers: dict[str, str] | None = None,
                 restored: dict[str, Any] | None = None) -> None:
        """`library_text`: the library as one text; or `papers`: paper id -> its text (what
        `follow` can change paper by paper); or `restored`: what `state` gave."""
        self.embedder = embedder
        self.idf = idf
        self.library = (restored["library"] if restored is not None else
                        _LibraryEvidence(papers if papers is not None else {"": library_text}))
        self.gate = RelevanceGate(embedder, idf, self.library.words, idf.df.keys(), _SCAFFOLD,
                                  sorted_vocabulary=restored["sorted"] if restored else None)
        self.fingerprint: str | None = None  # of the library it reflects (`for_library`)

    def state(self) -> dict[str, Any]:
        """What a snapshot saves of this reader (`rag.snapshot`); `follow` changes these objects
        in place, so pickle them while no change is under way."""
        return {"idf": self.idf, "library": self.library, "sorted": self.gate.sorted_vocabulary,
                "fingerprint": self.fingerprint}

    @classmethod
    def restored(cls, embedder: Embedder, state: dict[str, Any]) -> ExtractiveAnswerer:
        """A reader as `state` saved it (at the fingerprint it names)."""
        reader = cls(embedder, state["idf"], restored=state)
        reader.fingerprint = state["fingerprint"]
        return reader

    @classmethod
    def for_library(cls, embedder: Embedder, lib: Library) -> ExtractiveAnswerer:
        """A reader of `lib`: IDF over its chunks, its words and names (built once, then
        changed with the library by `follow`); read back from the library's snapshot when it
        has one that can follow to `lib`."""
        saved = lib.take_derived("reader")
        if saved is not None:
            reader = cls.restored(embedder, snapshot.thaw(saved[0]))
            if reader.follow(lib):
                return reader
        # paper by paper: the library keeps its texts compressed (`Library.paper_chunks`)
        idf, evidence = IDF(), _LibraryEvidence({})
        for pid in lib.by_paper:
            chunks = lib.paper_chunks(pid)
            idf.update([c.text for c in chunks], ())
            evidence.replace({pid: _paper_text(chunks)}, {})
        reader = cls(embedder, idf, restored={"library": evidence, "sorted": None})
        reader.fingerprint = lib.fingerprint
        return reader

    def follow(self, lib: Library) -> bool:
        """Take in the changes from the library this reader reflects to `lib`
        (`Library.changes_since`): True when it now reflects `lib`, False when they are not known
        (build a new reader then). Questions answered meanwhile read counts that are off by at
        most one change."""
        changes = lib.changes_since(self.fingerprint)
        if changes is None:
            return False
        for change in changes:
            self.idf.update([c.text for c in change.added], [c.text for c in change.removed])
            new, gone = self.library.replace(_paper_texts(change.added),
                                             _paper_texts(change.removed))
            self.gate.vocabulary_changed(new, gone)
        self.fingerprint = lib.fingerprint
        return True

    # --- public --------------------------------------------------------------------------------
    def answer(self, question: str, intent: QueryIntent, hits: Sequence[Hit],
               follow_up: str | None = None, more: Sequence[Hit] = ()) -> Extract:
        """Answer `question` (a standalone one); `follow_up` is the user's own words when the
        question was completed from the conversation: its form decides the kind of answer.
        `more`: other passages of the hits' papers, which a list may cite for a result (they
        are then in `Extract.extra`)."""
        if intent.kind == "link":  # "the arXiv id of X": the record answers; X is what is asked
            question = cues.without_link_words(question) or question
        declined, relevance = self.declines(question, intent, hits)
        if declined is not None:
            return declined
        extract = self._answer(question, intent, hits, follow_up, more)
        extract.relevance = relevance
        return extract

    def declines(self, question: str, intent: QueryIntent, hits: Sequence[Hit]
                 ) -> tuple[Extract | None, Relevance | None]:
        """The abstention `answer` would give (or None), and what the relevance gate measured:
        for a caller that builds the answer itself (a summary from all of a paper's passages)."""
        if not hits:
            return Extract("", True, reason="no passages"), None
        relevance = self.gate.check(question, intent, hits)
        if not relevance.relevant:
            return Extract("", True, reason=relevance.reason, relevance=relevance), relevance
        missing = self.unsupported(question, intent, hits)
        if missing:
            return Extract("", True, reason=missing, relevance=relevance), relevance
        return None, relevance

    def _answer(self, question: str, intent: QueryIntent, hits: Sequence[Hit],
                follow_up: str | None, more: Sequence[Hit] = ()) -> Extract:
        own = [(n, h) for n, h in enumerate(hits, 1) if h.paper.id in intent.author_paper_ids]
        # "Papers by X" (or just "X?"): list them. A question about something of X's that is not
        # a paper ("X's h-index") is answered, or declined, like any other question.
        about = set(key_terms(question)) - set(tokenize(" ".join(intent.authors)))
        if intent.authors and own and not intent.paper_ids and (
                intent.kind == "list" or (intent.kind == "fact" and not about)):
            return self._by_author(intent.authors, own)
        if intent.kind == "list":
            return self._list(question, hits, more)
        if intent.kind == "authors":
            return self._authors(question, hits)
        if intent.kind == "link":
            return self._link(question, hits)
        if intent.kind == "summary":
            return self._summary(question, hits)
        # "Which paper ...?" selects a paper; once the question names one, it asks about it.
        if cues.asks_which(follow_up or question) and not intent.paper_ids:
            return self._which(question, hits)
        return self._fact(question, hits, intent.paper_ids)

    def unsupported(self, question: str, intent: QueryIntent, hits: Sequence[Hit]) -> str:
        """Why the passages cannot answer the question, or '' when they can.

        Checks about the question's specifics rather than its wording: every thing the
        question names (a coined name, a quoted or capitalised title, 'ResNet-18') must occur in
        the passages; the kind of thing asked for ('what license') must be spoken of in them;
        and a question asking for a quantity ('what batch size', 'how much faster') needs a
        passage sentence that has a number next to one of its focus terms."""
        joined = " ".join(
            f"{h.paper.title} {' '.join(h.paper.authors)} {h.paper.section or ''} {h.chunk.text}"
            for h in hits)
        evidence = _Evidence(joined)
        quantity = cues.asks_quantity(question) and intent.kind not in ("list", "summary")
        term = cues.defined_term(question)
        if term and intent.kind == "fact" and not quantity and not self.library.has_phrase(term):
            # "What is speculative decoding?": a library that never uses the term cannot define
            # it, however close its passages on decoding are
            return f"the library never mentions '{term}'"
        for term in named_terms(question):
            # Absent from the passages: fatal when the library lacks it altogether, or when the
            # question asks for a quantity of it ("what FID ..."); otherwise it is context.
            if not evidence.has(term) and (quantity or not self.library.has(term)):
                return f"'{term}' does not occur in the retrieved passages"
        attribute = cues.asked_attribute(question)
        if attribute and intent.kind == "fact" and not set(tokenize(attribute)) & set(
                tokenize(joined)):
            # "What license is X released under?": passages that never speak of a license do
            # not state one, however much they say about X
            return f"no passage mentions a {attribute}"
        if not quantity or intent.kind == "authors":
            return ""
        focus = _quantity_focus(question)
        per = cues.rate_unit(question)
        for sent in self._sentences(hits[:3]):
            if (_has_number(sent.text) and set(focus) & set(tokenize(sent.text))
                    and (not per or _gives_rate(sent.text, per))):
                return ""
        return "no passage gives a number for " + " ".join(focus)

    def _focus(self, question: str, hit: Hit) -> list[str]:
        """Key terms of the question that are not just the paper's own title words."""
        title = set(tokenize(hit.paper.title))
        return [t for t in key_terms(question) if t not in title] or key_terms(question)

    def summarise(self, paper: Paper, passages: Sequence[Hit], question: str = "") -> Extract:
        """The paper in reading order: its problem, method, result, then a limitation where one is
        stated, each sentence cited. Sentences come from the abstract, introduction and
        conclusion first (where authors state exactly these things), from the rest only when the
        paper has none of those; equations and table rows are never taken."""
        sents = [s for s in self._sentences(_overview(passages)) if s.prose >= 0.75]
        if not sents:
            sents = self._sentences(passages)
        if not sents:
            return Extract("", True, reason="paper has no text")
        sents = _candidates(sents, passages)
        vecs = self.embedder.embed([_head(s.text) for s in sents])
        centroid = [sum(col) / len(vecs) for col in zip(*vecs, strict=True)]
        qv = self.embedder.embed([question])[0] if question else centroid
        for s, v in zip(sents, vecs, strict=True):
            s.role = _role(s.text)
            opens = s.position == 0 and _opens_section(passages[s.hit_no - 1])
            s.score = (_dot(v, centroid) + 0.5 * _dot(v, qv) + (0.15 if opens else 0.0)
                       + (0.1 if s.role != 1 or _METHOD.search(s.text) else 0.0))
        ranked = sorted(sents, key=lambda s: -s.score)
        chosen: list[_Sentence] = []
        for role in (0, 1, 2, 3):  # the best sentence of each role first, then the most central
            best = next((s for s in ranked if s.role == role and s not in chosen), None)
            if best is not None:
                chosen.append(best)
        chosen += [s for s in ranked if s not in chosen and s.role in (1, 2)]
        chosen = _distinct(chosen, SUMMARY_SENTENCES)
        chosen.sort(key=lambda s: (s.role, s.hit_no, s.position))
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
        compare = cues.asks_comparison(question)
        if compare:  # "how does X differ from Y": the method's differences, not only its gains
            # (unless a quantity is what is compared: "how much less storage than ...")
            gains = 0.0 if cues.asks_quantity(question) else 0.2
            for s in ranked:
                s.score += 0.15 * bool(_CONTRAST.search(s.text)) + 0.1 * bool(
                    _METHOD.search(s.text)) - gains * (len(_SCORES.findall(s.text)) >= 2)
            ranked.sort(key=lambda s: -s.score)
        if ranked:  # only sentences that answer nearly as well as the best one, and from
            # another paper only when it is about the question as much (or a comparison)
            best = ranked[0]
            ranked = [s for s in ranked if s.score >= RELATIVE_CUTOFF * best.score and (
                compare or pool[s.hit_no - 1] is pool[best.hit_no - 1]
                or _same_paper(pool, s, best) or s.score >= OTHER_PAPER_CUTOFF * best.score)]
        if ranked and cues.asks_quantity(question):
            # a quantity's answer opens with a sentence that gives one (a sentence without a
            # number cannot answer "how many"), when one answers nearly as well as the best
            numbered = next((s for s in ranked if _has_number(s.text)), None)
            if numbered is not None and numbered.score >= RELATIVE_CUTOFF * ranked[0].score:
                ranked = [numbered, *(s for s in ranked if s is not numbered)]
        chosen = _distinct(_with_continuation(ranked, self._sentences(pool)), FACT_SENTENCES)
        if not chosen:  # a record with metadata only (title, authors): say what it is
            return self._which(question, hits)
        paper = hits[chosen[0].hit_no - 1].paper
        top = chosen[0]
        lead = f"From **{paper.title}** [{top.hit_no}]:"
        return Extract(f"{lead} " + " ".join(f"{s.text} [{s.hit_no}]" for s in chosen), False,
                       cited=_cited(chosen), evidence=_evidence(chosen))

    def _which(self, question: str, hits: Sequence[Hit]) -> Extract:
        """Name the best-ranked paper (retrieval weighs its title, record and passages) with
        its sentence that answers best; a second paper only when retrieval ranks it exactly as
        high (then the answer says so in one sentence)."""
        ranked = self._ranked(question, hits[:1])
        best = ranked[0] if ranked else None
        p = hits[0].paper
        text = f"**{p.title}**" + (f" ({p.venue_year})" if p.venue_year else "") + " [1]"
        if p.authors:
            text += f", by {_names(p.authors)}"
        text += "."
        if best:
            text += f" {best.text} [{best.hit_no}]"
        tie = next((n for n, h in enumerate(hits[1:3], 2) if _squash(h.paper.title) !=
                    _squash(p.title) and h.score >= (1 - TIE_MARGIN) * hits[0].score), None)
        if tie is not None:
            text += (f"\n\n**{hits[tie - 1].paper.title}** [{tie}] matches the question "
                     "equally well.")
        evidence = [(1, f"{p.title}" + (f", by {_names(p.authors)}." if p.authors else "."))]
        evidence += [(best.hit_no, best.text)] if best else []
        return Extract(text, False, cited=[1] + ([tie] if tie else []), evidence=evidence)

    def _authors(self, question: str, hits: Sequence[Hit]) -> Extract:
        p = hits[0].paper
        if not p.authors:
            return self._fact(question, hits)
        vy = f" ({p.venue_year})" if p.venue_year else ""
        text = f"**{p.title}**{vy} was written by {', '.join(p.authors)} [1]."
        return Extract(text, False, cited=[1],
                       evidence=[(1, f"{p.title} was written by {', '.join(p.authors)}.")])

    def _link(self, question: str, hits: Sequence[Hit]) -> Extract:
        """Where the paper is: its address from the record (a listing's URL, a PDF's arXiv
        stamp); without one, whatever its passages say."""
        p = hits[0].paper
        if not p.url:
            return self._fact(question, hits)
        arxiv = re.fullmatch(r"https?://arxiv\.org/abs/(.+)", p.url)
        where = f"arXiv:{arxiv.group(1)}, {p.url}" if arxiv else p.url
        text = f"**{p.title}**: {where} [1]."
        return Extract(text, False, cited=[1], evidence=[(1, f"{p.title}: {where}.")])

    def _by_author(self, authors: Sequence[str], own: Sequence[tuple[int, Hit]]) -> Extract:
        who = " / ".join(a.title() for a in authors)
        lines = [f"- **{h.paper.title}**" + (f" ({h.paper.venue_year})" if h.paper.venue_year
                                               else "") + f", by {_names(h.paper.authors)} [{n}]"
                 for n, h in own]
        return Extract(f"Papers by {who} in the library:\n\n" + "\n".join(lines), False,
                       cited=[n for n, _ in own],
                       evidence=[(n, f"{h.paper.title}, by {_names(h.paper.authors)}.")
                                 for n, h in own])

    def _list(self, question: str, hits: Sequence[Hit], more: Sequence[Hit] = ()) -> Extract:
        """One row per paper whose passage meets the question's criterion, with the sentence that
        shows it (and its number when a result is asked for). `more`: other passages of the
        listed papers, numbered after `hits`, where a row may find the result its passage lacks."""
        rows = ["| # | Paper | Venue | What the passage says |", "|---|---|---|---|"]
        wants_number = cues.asks_result(question)
        found: list[tuple[int, Hit, _Sentence]] = []
        # "Which papers improve on BERT?": a paper qualifies by a sentence saying it improves on
        # (or is compared with) BERT, not by a passage that names BERT as a workload
        upon = named_terms(cues.improved_upon(question))
        improving: list[tuple[int, Hit, _Sentence]] = []
        for n, hit in enumerate(hits, 1):
            ranked = self._ranked(question, [None] * (n - 1) + [hit])
            claim = next((s for s in ranked if _improves_on(s.text, upon)), None) if upon else None
            if claim is not None and all(h.paper.id != hit.paper.id for _, h, _ in improving):
                improving.append((n, hit, claim))  # one row per paper: its best-ranked passage
            if wants_number:  # the best sentence that gives a number, when one is close
                numbered = [s for s in ranked[:4] if _has_number(s.text)]
                ranked = numbered + [s for s in ranked if s not in numbered]
            if not ranked:  # a record with a title and authors only: the title is the evidence
                named = _Sentence(hit.paper.title, n, -1)
                q, t = self.embedder.embed([question, hit.paper.title])
                named.score = _dot(q, t) + 0.6 * coverage(self._focus(question, hit), named.text,
                                                          self.idf)
                ranked = [named]
            found.append((n, hit, ranked[0]))
        if improving:
            found = improving
        elif found:  # a row must meet the criterion about as well as the best row does
            top = max(s.score for _, _, s in found)
            found = [f for f in found if f[2].score >= LIST_CUTOFF * top]
        # ... and, when results against something named are asked for ("improve on BERT, by how
        # much"), name it: a paper whose passage never mentions BERT gives no result against it
        criterion = named_terms(question) if wants_number and not improving else []
        if criterion:
            naming = [f for f in found
                      if any(_Evidence(_record_text(f[1])).has(t) for t in criterion)]
            found = naming or found
        listed = {h.paper.id for _, h, _ in improving} if wants_number else set()
        results = self._results(question, [h for h in hits if h.paper.id in listed],
                                [h for h in more if h.paper.id in listed]) if listed else {}
        cited: list[int] = []
        evidence: list[tuple[int, str]] = []
        extra: list[Hit] = []
        for n, hit, sent in found:
            title = hit.paper.title.replace("|", "/")
            venue = (hit.paper.venue_year or "—").replace(" ", "\u00a0")  # "ICLR 2021" unbroken
            said = _cell(sent.text) if sent.position >= 0 else "(the record holds its title only)"
            result = None if _SCORES.search(sent.text) else results.get(hit.paper.id)
            if result is not None:  # the claim, then how much, from another of its passages
                where = next((i for i, h in enumerate(hits, 1) if h is result[0]), 0)
                if not where:  # a passage beyond the hits: numbered after them
                    extra.append(result[0])
                    where = len(hits) + len(extra)
                said += f" {_cell(result[1], 2 * CELL_WORDS)} [{where}]"  # the figures asked
                evidence.append((where, result[1]))
                cited.append(where)
            rows.append(f"| [{n}] | {title} | {venue} | {said.replace('|', '/')} |")
            cited.append(n)
            evidence.append((n, sent.text))
        if not found:
            return self._fact(question, hits)
        return Extract("Papers in the library on this:\n\n" + "\n".join(rows), False,
                       cited=sorted(set(cited)), evidence=sorted(evidence), extra=extra)

    def _results(self, question: str, hits: Sequence[Hit], more: Sequence[Hit]
                 ) -> dict[str, tuple[Hit, str]]:
        """Per paper, the passage and sentence of score figures that best states a gain ("...
        achieving improvements on MNLI by +0.9%"), from its passages in `hits` and `more`."""
        focus = set(key_terms(question))
        best: dict[str, tuple[float, Hit, str]] = {}
        for hit in [*hits, *more]:
            if not hit.chunk.is_evidence or not _SCORES.search(hit.chunk.text):
                continue
            for s in self._sentences([hit]):
                figures = len(_SCORES.findall(s.text))
                if not figures or not _GAIN.search(s.text):
                    continue
                score = len(focus & set(tokenize(s.text))) + 0.1 * min(figures, 5)
                if score > best.get(hit.paper.id, (-1.0, hit, ""))[0]:
                    best[hit.paper.id] = (score, hit, s.text)
        return {pid: (h, t) for pid, (_, h, t) in best.items()}

    def _summary(self, question: str, hits: Sequence[Hit]) -> Extract:
        paper = hits[0].paper
        own = [h for h in hits if h.paper.id == paper.id]
        return self.summarise(paper, own, question)

    # --- sentences -----------------------------------------------------------------------------
    def _sentences(self, hits: Sequence[Hit | None]) -> list[_Sentence]:
        """Sentences of the passages, numbered by source; None keeps a source's number free.
        References and acknowledgements are never evidence; equations, table rows and figure
        debris (prose score below MIN_PROSE) are left out."""
        out = []
        for n, hit in enumerate(hits, 1):
            if hit is None or not hit.chunk.is_evidence:
                continue
            text = hit.chunk.text
            heading = hit.chunk.section or ""
            for pos, (a, b) in enumerate(sentence_spans(text)):
                s = clean(text[a:b])
                for head in (heading, _SECTION_NUMBER.sub("", heading)):
                    if head and s.startswith(head + " "):  # "Abstract While ..." -> "While ..."
                        s = s[len(head):].strip()
                        break
                markup = _MARKUP_TOKENS.search(s)
                if markup:  # the sentence ends where markup begins (it ran on into it)
                    s = s[:markup.start()].strip()
                if len(s) < 25 or len(tokenize(s)) < 3 or _METADATA_LINE.match(s):
                    continue
                prose = prose_score(s)
                if prose >= MIN_PROSE:
                    out.append(_Sentence(s, n, pos, prose=prose))
        return out

    def _ranked(self, question: str, hits: Sequence[Hit | None]) -> list[_Sentence]:
        """Sentences by how well they answer: MiniLM cosine to the question, IDF-weighted share
        of the question's focus terms, a number when one is asked for, less for debris."""
        sents = self._sentences(hits)
        if not sents:
            return []
        focus = {n: self._focus(question, h) for n, h in enumerate(hits, 1) if h is not None}
        vecs = self.embedder.embed([question] + [_head(s.text) for s in sents])
        qv = vecs[0]
        wants_number = cues.asks_quantity(question)
        for s, v in zip(sents, vecs[1:], strict=True):
            s.score = (_dot(v, qv) + 0.6 * coverage(focus[s.hit_no], s.text, self.idf)
                       - 0.03 * (s.hit_no - 1) - 0.5 * max(0.0, CLEAN_PROSE - s.prose))
            if wants_number and _has_number(s.text):
                s.score += 0.15
            if s.text.endswith("?"):  # a question the paper asks ("RQ2: Can we ...?") answers
                s.score -= QUESTION_PENALTY  # nothing; its answer follows it
        return sorted(sents, key=lambda s: -s.score)


_CONTINUES = re.compile(r"^(This|These|It|They|Such|Specifically|In particular|For example|"
                        r"Namely|Here|We find|We show|Both|The (first|second)|First,|Second,)\b")
# Score figures ("+0.9%", "(90.2% vs. 91.1%)"): a sentence of several is a result, not a method.
_SCORES = re.compile(r"[+-]?\d+(?:\.\d+)?\s?%|\b\d+\.\d+\b")
# A sentence stating a gain: a result worth showing for "by how much".
_GAIN = re.compile(r"\b(improv\w*|outperform\w*|surpass\w*|better|gains?|boost\w*|higher|"
                   r"lower|faster|reduc\w*|increas\w*|speed-?ups?|over|versus|vs\.?)\b", re.I)


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
    tail = cues.quantity_tail(question)
    cue = set(tokenize("how much many"))
    return [t for t in tokenize(tail) if t not in _SCAFFOLD | cue] or key_terms(question)


def _gives_rate(text: str, per: str) -> bool:
    """A sentence stating a rate "per `per`": the unit named ("per second", "each second",
    "a second") or written as a ratio ("12 docs/s")."""
    unit = set(tokenize(per))
    return bool(unit & set(tokenize(text))) or bool(re.search(r"\d\s*\w*\s*/\s*[a-z]", text))


def _improves_on(sentence: str, things: Sequence[str]) -> bool:
    """Whether the sentence says something improves on (or is compared with) one of `things`."""
    return any(_Evidence(obj).has(t) for obj in cues.improves_on(sentence) for t in things)


def _record_text(hit: Hit) -> str:
    return f"{hit.paper.title} {hit.paper.tldr or ''} {hit.chunk.text}"


def _squash(text: str) -> str:
    """Letters and digits only, folded: 'CIFAR-10' and 'cifar10' compare equal."""
    return re.sub(r"[^a-z0-9]+", "", fold(text))


_NAME_SUFFIX = re.compile(r"\b(\w*[A-Z]\w*)-[a-z]{3,}\b")
_PLAIN_SUFFIX = re.compile(r"-(based|like|type|style|free|aware|level|wise|driven|resilient)\b", re.I)


class _Evidence:
    """Text to look names up in: whole words for a single name (so 'LoRA' is not found inside
    'exploration'), squashed text for a run of words ('CIFAR-10' = 'cifar10')."""

    squashed: Container[str]
    words: Collection[str]

    def __init__(self, text: str) -> None:
        self.squashed = _squash(text)
        folded = fold(text)
        self.words = set(re.findall(r"[a-z0-9]+", folded))
        self.words |= {_squash(w) for w in re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)+", folded)}

    def has(self, term: str) -> bool:
        # "LaTeX-derived", "GPT-style": the name is the capitalised part; the lower-case word
        # after the hyphen describes it and may be phrased otherwise in the paper
        parts = _PLAIN_SUFFIX.sub("", _NAME_SUFFIX.sub(r"\1", term)).split()
        if len(parts) == 1:
            return any(self._word(v) for v in _variants(parts[0]))
        if len(parts) == 2:  # "Byzantine-resilient SGD": both words, anywhere
            return all(any(self._word(v) for v in _variants(p)) for p in parts)
        return _squash(" ".join(parts)) in self.squashed

    def has_phrase(self, term: str) -> bool:
        """A term of several words as a phrase (its words in a row), one word as `has` finds it."""
        parts = term.split()
        if len(parts) == 1:
            return self.has(term)
        key = _squash(term)
        return key in self.squashed or (key.endswith("s") and key[:-1] in self.squashed)

    def _word(self, key: str) -> bool:
        return bool(key) and (key in self.words or (len(key) >= 8 and key in self.squashed))


class _LibraryEvidence(_Evidence):
    """`_Evidence` over a whole library, kept per paper so that a change of a few papers costs
    their text, not the library's: each paper's squashed text, and how many papers use each
    word (a word leaves the library with its last paper)."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.pieces: dict[str, str] = {}
        self.squashed = _Pieces(self.pieces)
        self.words: Counter[str] = Counter()  # `in` and iteration see the words in use
        self.replace(texts, {})

    def replace(self, texts: dict[str, str], gone: dict[str, str]) -> tuple[set[str], set[str]]:
        """Drop the papers `gone` (paper id -> the text they had), then add `texts` (paper id ->
        text); returns the words new to the library and the ones no longer in it."""
        removed = {pid: _words_of(text) for pid, text in gone.items()}
        added = {pid: _words_of(text) for pid, text in texts.items()}
        affected = set().union(*removed.values(), *added.values())
        known = {w for w in affected if w in self.words}
        for pid, words in removed.items():
            self.pieces.pop(pid, None)
            self.words.subtract(words)
        for pid, text in texts.items():
            self.pieces[pid] = _squash(text)
            self.words.update(added[pid])
        for w in affected:
            if self.words.get(w, 0) <= 0:
                self.words.pop(w, None)
        now = {w for w in affected if w in self.words}
        return now - known, known - now


class _Pieces:
    """Substring search over several texts as if they were joined (`key in pieces`); a live
    view of the dict it is given."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(key in t for t in list(self.texts.values()))


def _words_of(text: str) -> set[str]:
    """The words `_Evidence.has` looks up: folded words, and hyphenated ones squashed."""
    folded = fold(text)
    return (set(re.findall(r"[a-z0-9]+", folded))
            | {_squash(w) for w in re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)+", folded)})


def _paper_texts(chunks: Sequence[Chunk]) -> dict[str, str]:
    """Paper id -> `_paper_text` of those of its chunks given."""
    return {pid: _paper_text(cs) for pid, cs in group_by_paper(chunks).items()}


def _paper_text(chunks: Sequence[Chunk]) -> str:
    """A paper as the library's names are looked up in: title, authors, then its passages."""
    if not chunks:
        return ""
    paper = chunks[0].paper
    return " ".join([paper.title, " ".join(paper.authors), *(c.text for c in chunks)])


def _variants(word: str) -> list[str]:
    """The word squashed, and without a plural s (GNNs -> gnn, f-GANs -> fgan)."""
    key = _squash(word)
    return [key, key[:-1]] if key.endswith("s") and len(key) > 3 else [key]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


_CONTRAST = re.compile(r"\b(unlike|whereas|instead of|rather than|in contrast|differs?|"
                       r"different from|while|compared (to|with)|as opposed to)\b", re.I)


def _same_paper(pool: Sequence[Hit | None], a: _Sentence, b: _Sentence) -> bool:
    ha, hb = pool[a.hit_no - 1], pool[b.hit_no - 1]
    # the same paper may come from two sources (a paper list and someone's notes on it)
    return ha is not None and hb is not None and (
        ha.paper.id == hb.paper.id or _squash(ha.paper.title) == _squash(hb.paper.title))


def _distinct(sents: Sequence[_Sentence], limit: int) -> list[_Sentence]:
    """The first `limit` sentences, each said once: a restatement (most of its words already in
    a chosen sentence, as a paper states its method in the abstract, the introduction and the
    conclusion) is left out."""
    chosen: list[_Sentence] = []
    said: list[set[str]] = []
    for s in sents:
        if len(chosen) >= limit:
            break
        words = set(tokenize(s.text))
        if any(len(words & w) >= RESTATED * len(words) for w in said):
            continue
        chosen.append(s)
        said.append(words)
    return chosen


def _cell(text: str, limit: int = CELL_WORDS) -> str:
    """A table cell: the sentence, cut after `limit` words."""
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit]) + " …"


# Where a paper states its problem, method, result and limits: the abstract, the introduction,
# the conclusion (headings are matched without their numbers, in any library).
_OVERVIEW = re.compile(r"\b(abstract|introduction|overview|conclusions?|discussion|summary|"
                       r"limitations?|contributions?)\b", re.I)
_PROBLEM = re.compile(r"\b(problem|challeng\w*|difficult\w*|lack\w*|limited|remains?|"
                      r"however|unclear|costly|expensive|bottleneck|gap|hard to|"
                      r"little (work|attention)|recent(ly)?|existing|prior|previous(ly)?|"
                      r"current(ly)?|traditional(ly)?|typically)\b", re.I)
_OWN = re.compile(r"\b(we|our|us|this (paper|work|study))\b", re.I)
_METHOD = re.compile(r"\b(we(?:['’]ve| have)?|this (paper|work)|our)\s+(\w+\s+)?(propose|present|introduce|"
                     r"develop|build|release|describe|design|argue|construct|create|study|"
                     r"approach|method|system|toolkit|framework|model)\w*", re.I)
_RESULT = re.compile(r"\b(results?|show(s|ed|n)?|outperform\w*|achiev\w*|improv\w*|"
                     r"find|found|demonstrat\w*|reach\w*|reduc\w*|increas\w*)\b|\d%|\d\.\d",
                     re.I)
_LIMIT = re.compile(r"\b(limitations?|future work|do(es)? not (address|handle|cover)|"
                    r"cannot|fails? to|leave .{0,30} for future)\b", re.I)


def _role(text: str) -> int:
    """A sentence's part in a summary: 3 limitation, 1 method, 2 result, 0 problem, else 1."""
    if _LIMIT.search(text):
        return 3
    if _METHOD.search(text):
        return 1
    if _PROBLEM.search(text) and not _OWN.search(text):  # the field's state, not this paper's
        return 0
    return 2 if _RESULT.search(text) else 1


def _opens_section(hit: Hit) -> bool:
    """Whether the passage begins its section (or its record): a summary's opening sentence is
    where authors state what a section is about, not wherever a chunk happens to start."""
    if not hit.chunk.section:
        return hit.chunk.index == 0
    first_line = hit.chunk.text.lstrip().split("\n", 1)[0]
    return first_line.strip() == hit.chunk.section or hit.chunk.text.lstrip().startswith(
        hit.chunk.section + " ")


def _overview_rank(hit: Hit) -> int:
    """Where a summary looks first: 0 the abstract (or a record's text), 1 the conclusion,
    discussion or limitations, 2 the introduction and contributions, 3 the rest."""
    if hit.chunk.section_kind in ("abstract", "front") or not hit.chunk.section:
        return 0
    name = hit.chunk.section
    if re.search(r"\b(conclusions?|discussion|summary|limitations?)\b", name, re.I):
        return 1
    return 2 if _OVERVIEW.search(name) else 3


def _candidates(sents: list[_Sentence], passages: Sequence[Hit]) -> list[_Sentence]:
    """Each sentence once (neighbouring chunks overlap), and at most SUMMARY_CANDIDATES of them:
    the abstract's, then the conclusion's, then the introduction's, each in reading order."""
    first: dict[str, _Sentence] = {}
    for s in sents:
        first.setdefault(s.text, s)
    unique = list(first.values())
    if len(unique) <= SUMMARY_CANDIDATES:
        return unique
    ranked = sorted(unique, key=lambda s: (_overview_rank(passages[s.hit_no - 1]), s.hit_no,
                                           s.position))
    return ranked[:SUMMARY_CANDIDATES]


def _overview(passages: Sequence[Hit]) -> list[Hit | None]:
    """The passages of the abstract, introduction and conclusion (others as None, so source
    numbers stay), or all of them when the paper has no such sections (an abstract-only record)."""
    def overview(h: Hit) -> bool:
        return h.chunk.section_kind in ("abstract", "front") or bool(
            _OVERVIEW.search(h.chunk.section or ""))
    if not any(overview(h) for h in passages):
        return list(passages)
    return [h if overview(h) else None for h in passages]


def _evidence(sents: Sequence[_Sentence]) -> list[tuple[int, str]]:
    return [(s.hit_no, s.text) for s in sents]


def _cited(sents: Sequence[_Sentence]) -> list[int]:
    return sorted({s.hit_no for s in sents})


def _names(authors: Sequence[str]) -> str:
    return ", ".join(authors[:4]) + (" et al." if len(authors) > 4 else "")
