"""Question understanding: what kind of question, and which venue, year, paper or author it names.

Matches the question against the library's own metadata (titles, distinctive names such as
"DeBERTa", author lists, venues), so it works for any papers added later. It only reads the
question and the library; it never calls a model, and it does not rank anything itself.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag import cues
from rag.models import Chunk, Paper, group_by_paper
from rag.text import fold

if TYPE_CHECKING:
    from rag.library import Library

# A quote opens after white space (or at the start) and closes before punctuation/space, so the
# apostrophes of "model's" or "don't" never pair up.
_QUOTED = re.compile(r"(?:(?<=\s)|(?<=^)|(?<=\())[\"'“‘]([^\"“”‘’]{3,200}?)[\"'”’](?=[\s?.,!;:)]|$)")
_NAME_TOKEN = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*\b")
_YEAR = re.compile(r"(?:'|’|\b)(\d{2}|(?:19|20)\d{2})\b")


@dataclass
class QueryIntent:
    """What `analyse` understood of a question."""

    kind: str = "fact"  # fact | list | authors | summary | link
    venue: str | None = None
    year: int | None = None
    paper_ids: list[str] = field(default_factory=list)
    author_paper_ids: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)

    @property
    def single_paper(self) -> bool:
        return len(self.paper_ids) == 1 and self.kind != "list"


# "Which paper argues that tools should ... summarise ...": the question selects a paper, and a
# summary cue later in it belongs to the description of that paper.
_SELECTS = re.compile(r"^\W*(which|what|is there an?y?)\s+(one|paper|article|work|study)\b", re.I)


def _kind(question: str) -> str:
    if cues.asks_summary(question) and not _SELECTS.search(question):
        return "summary"
    if cues.asks_authors(question):
        return ("authors" if not cues.asks_list(question) or "co-author" not in question
                else "list")
    if cues.asks_list(question):
        return "list"
    if cues.asks_link(question):
        return "link"
    return "fact"


def _venue_year(question: str, lib: Library) -> tuple[str | None, int | None]:
    venues = {(p.venue or "").lower(): p.venue for p in lib.papers.values() if p.venue}
    q = question.lower().replace("nips", "neurips").replace("neuneurips", "neurips")
    for key, venue in venues.items():
        m = re.search(rf"\b{re.escape(key)}\s*(?:'|’)?\s*(\d{{2}}(?:\d{{2}})?)?\b", q)
        if not m:
            continue
        year = None
        if m.group(1):
            y = int(m.group(1))
            year = y + 2000 if y < 100 else y
        return venue, year
    return None, None


def _title_key(title: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9]+", " ", fold(title))).strip()


class NameIndex:
    """Titles, distinctive names and authors of the library, for matching in questions.

    Built once per library (`name_index`); a change of a few papers (`Library.changed`) gives a
    new index at the cost of those papers: the dicts are copied (the old index may be serving),
    the touched papers' entries replaced."""

    def __init__(self, lib: Library) -> None:
        self.titles: dict[str, list[str]] = {}
        self.names: dict[str, set[str]] = {}
        self.authors: dict[str, set[str]] = {}
        self.surnames: dict[str, set[str]] = {}
        self.heads: dict[str, set[str]] = {}  # "PaperMage" of "PaperMage: A ..."
        # A name many papers use ("PDF", "BERT") names a topic, not a paper: in how many papers'
        # text each capitalised word occurs.
        self.used_by: dict[str, int] = {}
        self.fingerprint = lib.fingerprint
        for pid, paper in lib.papers.items():
            self._add(pid, paper, lib.paper_chunks(pid))
        self.venues = {(p.venue or "").lower() for p in lib.papers.values()} | _VENUE_WORDS

    def changed(self, lib: Library) -> NameIndex | None:
        """This index for `lib`, from the changes since the library it was built for; None when
        they are not known (build a new one then)."""
        changes = lib.changes_since(self.fingerprint)
        if changes is None:
            return None
        new = copy.copy(self)
        for attr in ("titles", "names", "authors", "surnames", "heads", "used_by"):
            setattr(new, attr, dict(getattr(self, attr)))
        for change in changes:
            for pid, chunks in group_by_paper(change.removed).items():
                new._remove(pid, chunks[0].paper, chunks)
            for pid, chunks in group_by_paper(change.added).items():
                new._add(pid, chunks[0].paper, chunks)
        new.venues = {(p.venue or "").lower() for p in lib.papers.values()} | _VENUE_WORDS
        new.fingerprint = lib.fingerprint
        return new

    def _add(self, pid: str, paper: Paper, chunks: Sequence[Chunk]) -> None:
        for d, key in self._entries(pid, paper, chunks):
            if d is self.titles:
                self.titles[key] = [*self.titles.get(key, []), pid]
            else:
                d[key] = d.get(key, set()) | {pid}  # a new set: an old index may share this one
        for word in _text_names(chunks):
            self.used_by[word] = self.used_by.get(word, 0) + 1

    def _remove(self, pid: str, paper: Paper, chunks: Sequence[Chunk]) -> None:
        for d, key in self._entries(pid, paper, chunks):
            left = [p for p in d.get(key, ()) if p != pid]
            if left:
                d[key] = left if d is self.titles else set(left)
            else:
                d.pop(key, None)
        for word in _text_names(chunks):
            n = self.used_by.get(word, 0) - 1
            if n > 0:
                self.used_by[word] = n
            else:
                self.used_by.pop(word, None)

    def _entries(self, pid: str, paper: Paper, chunks: Sequence[Chunk]
                 ) -> Iterator[tuple[dict[str, Any], str]]:
        """(dict, key) of every entry one paper makes (the same for adding and removing it)."""
        yield self.titles, _title_key(paper.title)
        for author in paper.authors:
            yield self.authors, fold(author).strip()
            parts = fold(author).split()
            if len(parts) > 1 and len(parts[-1]) >= 4:
                yield self.surnames, parts[-1]
        if paper.kind == "document":  # an introduction names everything it introduces
            return
        title = paper.title
        head = title.split(":")[0].strip()
        if ":" in title and 1 <= len(head.split()) <= 2 and len(head) >= 3:
            yield self.names, head.lower()
            yield self.heads, _title_key(head)
        short = _title_acronym(title)
        if short and any(f"({short})" in c.text for c in chunks[:ACRONYM_CHUNKS]):
            # "Dense Passage Retrieval ..." that calls itself "(DPR)": "the DPR paper" is this
            # one, however many other papers cite DPR
            yield self.heads, short.lower()
        text = title + " " + " ".join(c.text for c in chunks[:2])
        people = {t.lower() for a in paper.authors for t in _NAME_TOKEN.findall(a)}
        for tok in dict.fromkeys(_NAME_TOKEN.findall(text)):
            if _is_distinctive(tok) and tok.lower() not in people:  # names are authors, not papers
                yield self.names, tok.lower()

    def match_papers(self, question: str) -> list[str]:
        key = f" {_title_key(question)} "
        found: list[str] = []
        # 1. a whole title (of 3+ words) written out in the question
        for tkey, pids in self.titles.items():
            if len(tkey.split()) >= 3 and f" {tkey} " in key:
                found.extend(pids)
        if found:
            return _unique(found)
        # 2. a quoted (possibly shortened) title
        for quoted in _QUOTED.findall(question):
            qkey = _title_key(quoted)
            for tkey, pids in self.titles.items():
                if qkey and (qkey in tkey and len(qkey) >= 0.6 * len(tkey)):
                    found.extend(pids)
        if found:
            return _unique(found)
        # 3. a title's short head ("Beyond Summarization: ..."), in any case, unless several
        # titles use it (then it names a topic: "Deep Learning: ...")
        for head, head_pids in self.heads.items():
            if f" {head} " in key and sum(f" {head} " in f" {t} " for t in self.titles) <= 2:
                found.extend(sorted(head_pids))
        # 4. a distinctive name (DeBERTa, BRECQ, GraphCodeBERT) used by at most two papers
        for tok in _NAME_TOKEN.findall(question):
            if not _is_distinctive(tok) or tok.lower() in self.venues:
                continue
            named = self.names.get(tok.lower(), set())
            if 0 < len(named) <= 2 and self.used_by.get(tok.lower(), 0) <= 2:
                found.extend(sorted(named))
        return _unique(found)

    def match_authors(self, question: str) -> tuple[list[str], list[str]]:
        q = f" {re.sub(r'[^a-z0-9]+', ' ', fold(question))} "
        names, pids = [], set()
        for name, ids in self.authors.items():
            if len(name) > 5 and f" {re.sub(r'[^a-z0-9]+', ' ', name).strip()} " in q:
                names.append(name)
                pids |= ids
        if not names:
            for tok in re.findall(r"\b[A-Z][a-z]{3,}\b", question):
                ids = self.surnames.get(fold(tok), set())
                if 0 < len(ids) <= 10:
                    names.append(tok)
                    pids |= ids
        return names, sorted(pids)


ACRONYM_CHUNKS = 12  # a paper defines its own acronym in its abstract or introduction


def _title_acronym(title: str) -> str:
    """The initials of a title's opening capitalised words ("Dense Passage Retrieval for ..."
    -> "DPR"); '' when fewer than two."""
    initials = ""
    for word in re.split(r"[\s-]+", title.split(":")[0]):
        if not word[:1].isupper():
            break
        initials += word[0]
    return initials if len(initials) >= 2 else ""


def _is_distinctive(tok: str) -> bool:
    """A coined name: internal capitals (DeBERTa), all caps of 3+ (BRECQ), or letters+digits."""
    core = tok.replace("-", "")
    if len(core) < 3:
        return False
    inner_caps = any(ch.isupper() for ch in core[1:])
    has_digit = any(ch.isdigit() for ch in core) and any(ch.isalpha() for ch in core)
    return (inner_caps and not core.isupper()) or (core.isupper() and len(core) >= 3) or (
        has_digit and core[0].isalpha() and len(core) >= 4
    )


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _text_names(chunks: Sequence[Chunk]) -> set[str]:
    """The capitalised words of a paper's text, lower-cased (for `NameIndex.used_by`)."""
    return {w.lower() for c in chunks for w in _NAME_TOKEN.findall(c.text)}


_INDEX: list[NameIndex] = []  # the index of the library last asked about
_INDEX_LOCK = threading.Lock()


def name_index(lib: Library) -> NameIndex:
    with _INDEX_LOCK:
        index = _INDEX[0] if _INDEX else None
        if index is None or index.fingerprint != lib.fingerprint:
            saved = lib.take_derived("names")  # the library's snapshot had one
            index = _followed(index, lib) or _followed(saved and saved[0], lib) or NameIndex(lib)
            _INDEX[:] = [index]
        return index


def _followed(index: NameIndex | None, lib: Library) -> NameIndex | None:
    """`index` brought to `lib`; None when there is none or the changes are not known."""
    if index is None or index.fingerprint == lib.fingerprint:
        return index
    return index.changed(lib)


def analyse(question: str, lib: Library) -> QueryIntent:
    """Read a question against the library's metadata."""
    idx = name_index(lib)
    venue, year = _venue_year(question, lib)
    authors, author_pids = idx.match_authors(question)
    return QueryIntent(
        kind=_kind(question), venue=venue, year=year, paper_ids=idx.match_papers(question),
        author_paper_ids=author_pids, authors=authors,
    )


_CAPS_RUN = re.compile(r"(?<![.?!]\s)(?<!^)\b([A-Z][\w'-]*(?:\s+(?:of|for|and|the|in|is|with|on|to|a|an|"
                       r"[A-Z][\w'-]*))*\s+[A-Z][\w'-]*)")
_VENUE_WORDS = {"iclr", "neurips", "nips", "icml", "cvpr", "acl", "emnlp", "aaai", "ijcai", "kdd"}
_GENERIC_CAPS = {"which", "what", "who", "how", "is", "the", "i", "in", "and", "or"}


def named_terms(question: str, venues: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Specific things a question names: coined names (BRECQ, ResNet-18), quoted titles, and runs
    of capitalised words (Deep Residual Learning). Venues and years are left out: they are
    filters, not content. An answer needs every one of them present in its passages."""
    found: list[str] = [q.strip() for q in _QUOTED.findall(question)]
    rest = _QUOTED.sub(" ", question)
    for run in _CAPS_RUN.findall(rest):
        words = run.split()
        if len(words) >= 2 and words[0].lower() not in _GENERIC_CAPS:
            found.append(run)
    for tok in _NAME_TOKEN.findall(rest):
        if _is_distinctive(tok):
            found.append(tok)
    skip = {v.lower() for v in venues} | _VENUE_WORDS
    out = []
    for term in dict.fromkeys(found):
        low = term.lower()
        if low in skip or re.fullmatch(r"(19|20)\d\d", low):
            continue
        out.append(term)
    return out
