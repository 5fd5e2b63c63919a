"""The question-answering pipeline: condense -> retrieve -> prompt -> stream -> verify -> Answer.

Every caller (CLI, app, eval) goes through `Pipeline`, so the eval measures what users get.
The extractive answer is computed first: it decides abstention (the evidence does not cover the
question), answers library-level questions as a table, and replaces a generated answer whose
sentences fail verification. LLM backends only rephrase what the sources hold, and every
generated sentence is checked against the passage it cites before it is kept.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rag import cues, snapshot
from rag.conversation import Standalone, Turn, standalone
from rag.errors import ConfigError, LLMUnavailableError
from rag.extractive import Extract, ExtractiveAnswerer
from rag.indexing import Indexer, IndexReport, PaperProgress, Progress
from rag.library import Library
from rag.llms import get_llm, is_extractive, llm_names
from rag.memory import release_freed
from rag.models import Answer, Hit, Paper, SentenceCheck
from rag.prompting import build_evidence_prompt
from rag.query import QueryIntent, name_index
from rag.retrieval import Filters, Retriever
from rag.settings import Settings
from rag.verify import (
    citations_in,
    ground_answer,
    grounded_text,
    repeats,
    share_unsupported,
    split_sentences,
)


def _renumber(text: str, mapping: Sequence[int]) -> str:
    """Rewrite [n] markers through `mapping` (1-based old -> new)."""
    return re.sub(r"\[(\d+)\]", lambda m: f"[{mapping[int(m.group(1)) - 1]}]"
                  if 0 < int(m.group(1)) <= len(mapping) else m.group(0), text)


def _unrepeated(checks: list[SentenceCheck], earlier: Sequence[str] = ()) -> list[SentenceCheck]:
    """Drop sentences that repeat one before them or one of `earlier` (e.g. the previous
    answer), word for word or nearly (`rag.verify.repeats`): a small model loops when unsure."""
    out: list[SentenceCheck] = []
    for c in checks:
        if not any(repeats(c.text, e) for e in [*earlier, *(k.text for k in out)]):
            out.append(c)
    return out


# Prompt markup a small model echoes ('<source n="3" title="...'), complete or cut off by the
# stream: shown to no one while the answer arrives (the grounded final answer drops it too).
_MARKUP = re.compile(r"</?(?:source|sources|question|answer)\b[^>]*(?:>|$)", re.I)


def _partial(raw: str) -> str:
    """A generated answer as it streams, without echoed prompt markup."""
    return re.sub(r"[ \t]{2,}", " ", _MARKUP.sub("", raw)).strip()


def _previous_answer(history: Sequence[Turn]) -> list[str]:
    """The sentences of the last assistant turn: a follow-up's answer must not say them again
    (a small model answering "and its largest version?" restates its previous answer)."""
    said = [t.get("content") or "" for t in history if t.get("role") == "assistant"]
    return split_sentences(said[-1]) if said else []


log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
# At most this often an answer hands freed memory back to the OS (`rag.memory`).
_RELEASE_EVERY_S = 30.0
# Uploads are saved into the snapshot once the chunks they changed reach this share of the
# library, this long after the last of them (later changes join the save). Saving pickles the
# whole library (seconds at 250k chunks, holding the GIL), while a start catches up from an
# older snapshot at the cost of what changed since: so small changes of a large library wait.
_SNAPSHOT_DRIFT_SHARE = 0.02
_SNAPSHOT_AFTER_CHANGE_S = 30.0


@dataclass(frozen=True)
class Request:
    """A question on its way through the stages of `Pipeline.answer_stream`: what the caller
    asked, then what each stage added (`condense` the standalone question, `search` the hits)."""

    question: str
    history: Sequence[Turn] = ()
    filters: Filters | None = None
    k: int | None = None
    backend: str | None = None
    started: float = field(default_factory=time.perf_counter)  # the clock of ttft_s and total_s
    standalone: Standalone | None = None
    hits: list[Hit] = field(default_factory=list)
    retrieve_s: float = 0.0


class Pipeline:
    """Holds the loaded retriever (and, lazily, models); one per process is enough."""

    def __init__(self, settings: Settings, retriever: Retriever | None = None) -> None:
        self.settings = settings
        self.retriever = retriever or Retriever(settings)
        self._extractor: ExtractiveAnswerer | None = None
        self._extractor_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()  # one save at a time
        self._snapshot_due = threading.Event()  # a change since the last save
        self._unsaved_chunks = 0  # added or removed by this process since the last save

    def retrieve(self, question: str, history: Sequence[Turn] = (), filters: Filters | None = None,
                 k: int | None = None) -> tuple[Standalone, list[Hit], float]:
        """The first two stages of `answer_stream` (condense, search): the standalone question,
        its passages, and the seconds both took."""
        request = self.search(self.condense(Request(question, history, filters, k)))
        assert request.standalone is not None
        return request.standalone, request.hits, time.perf_counter() - request.started

    # --- API the app, CLI and eval share -------------------------------------------------------
    def papers(self) -> list[Paper]:
        """Every paper in the library, in source order."""
        return sorted(self.retriever.library.papers.values(), key=lambda p: (p.source, p.title))

    def add_documents(self, paths: Sequence[Path], progress: Progress | None = None,
                      papers_progress: PaperProgress | None = None) -> IndexReport:
        """Index files (e.g. uploads) into the library; they are answerable at once."""
        # The BM25 index follows in the reload (`Indexer` docstring), not in the indexer.
        report = Indexer(self.settings, embedder=self.retriever.embedder,
                         store=self.retriever.store, keyword_index=False
                         ).index(list(paths), progress, papers_progress)
        self.retriever.reload(report.written)
        release_freed()  # what parsing, embedding and the reload freed
        self._unsaved_chunks += report.chunks_added + report.chunks_removed
        size = len(self.retriever.library.chunks)
        if self._unsaved_chunks and self._unsaved_chunks >= _SNAPSHOT_DRIFT_SHARE * size:
            self.save_snapshot_later(_SNAPSHOT_AFTER_CHANGE_S)
        return report

    def warm_up(self) -> None:
        """Load the embedder, the library and the extractive reader before the first question
        (the app does this at start, so no user waits for it); then, when the library's
        snapshot is not current, save one in the background."""
        # The embedding model loads (imports and weights: most of a start) in a thread while
        # this one reads the library, the reader and the name index.
        def load_model() -> None:
            with contextlib.suppress(Exception):  # `retrieve` below raises it, in this thread
                self.retriever.embedder.embed(["warm up"])

        model = threading.Thread(target=load_model, name="rag-model-load", daemon=True)
        model.start()
        name_index(self.retriever.library)
        _ = self.extractor
        model.join()
        self.retrieve("warm up the retriever")  # raises what loading the model raised
        if self.settings.snapshot and not snapshot.is_current(self.retriever.library):
            self.save_snapshot_later(0.0)

    def save_snapshot(self) -> Path | None:
        """Save the library, the extractive reader and the name index (`rag.snapshot`), building
        what is not built yet, so the next start reads them back; None when snapshots are off."""
        if not self.settings.snapshot:
            return None
        with self._snapshot_lock:
            self._snapshot_due.clear()
            self._unsaved_chunks = 0
            lib = self.retriever.library
            names = name_index(lib)
            saved = lib.snapshot()
            with self._extractor_lock:  # `follow` changes the reader in place: not meanwhile
                reader = self._reader_for(lib)
                saved.reader = snapshot.freeze(reader.state())
            saved.names = names
            assert lib.store is not None
            return snapshot.save(self.settings, lib.store.name, saved)

    def save_snapshot_later(self, delay_s: float) -> None:
        """Save a snapshot in a background thread after `delay_s` (changes made meanwhile go
        into the same save). A start catches up from an older snapshot at the cost of what
        changed since, so a save that never happens (the process dies) costs time, not data."""
        if not self.settings.snapshot or self._snapshot_due.is_set():
            return
        self._snapshot_due.set()

        def save() -> None:
            time.sleep(delay_s)
            if not self._snapshot_due.is_set():
                return  # saved meanwhile
            try:
                self.save_snapshot()
            except Exception as exc:  # the store or disk is unavailable: the next start reads more
                log.warning("could not save the library snapshot: %s", exc)

        threading.Thread(target=save, name="rag-snapshot", daemon=True).start()

    # --- answering -------------------------------------------------------------------------------
    def backends(self) -> list[str]:
        return llm_names()

    @property
    def extractor(self) -> ExtractiveAnswerer:
        lib = self.retriever.library
        with self._extractor_lock:  # one build or change at a time; readers keep reading
            return self._reader_for(lib)

    def _reader_for(self, lib: Library) -> ExtractiveAnswerer:
        """The reader of `lib` (hold `_extractor_lock`)."""
        reader = self._extractor
        if reader is None or (reader.fingerprint != lib.fingerprint and not reader.follow(lib)):
            # first use, or the library was reloaded whole: built (proportional to the library)
            # or read back from its snapshot
            reader = ExtractiveAnswerer.for_library(self.retriever.embedder, lib)
            self._extractor = reader
        return reader

    def answer(self, question: str, history: Sequence[Turn] = (), **kw: Any) -> Answer:
        *_, final = self.answer_stream(question, history, **kw)
        return final

    def answer_stream(self, question: str, history: Sequence[Turn] = (), *,
                      filters: Filters | None = None, k: int | None = None,
                      backend: str | None = None) -> Iterator[Answer]:
        """Progressively longer Answers; the last one is final (verified, citations mapped).

        Runs the stages in order: `condense` -> `search` -> `respond` (streamed).
        `rag.langchain_adapters.answer_chain` composes the same three stages in LCEL."""
        # A question past this length is a pasted document, not a question: the embedder reads
        # 256 word pieces at most, and lexical and sentence scoring grow with its terms.
        question = question[:MAX_QUESTION_CHARS]
        request = Request(question, list(history), filters, k, backend)
        try:
            yield from self.respond(self.search(self.condense(request)))
        finally:  # answering from many threads leaves freed memory in malloc's arenas
            release_freed(every_s=_RELEASE_EVERY_S)

    # --- the stages of `answer_stream` (also the steps of the LCEL chain) ----------------------
    def condense(self, request: Request) -> Request:
        """The follow-up made standalone (`rag.conversation.standalone`)."""
        lib = self.retriever.library
        return replace(request, standalone=standalone(request.question, request.history, lib))

    def search(self, request: Request) -> Request:
        """The passages for the standalone question, and how long finding them took."""
        began = time.perf_counter()
        sa = request.standalone
        assert sa is not None, "search runs after condense"
        hits = self.retriever.search(sa.query, request.k or self.settings.top_k, request.filters,
                                     sa.intent)
        return replace(request, hits=hits, retrieve_s=time.perf_counter() - began)

    def respond(self, request: Request) -> Iterator[Answer]:
        """The answer to a searched question, streamed (`answer_from`)."""
        assert request.standalone is not None, "respond runs after condense and search"
        yield from self.answer_from(request.question, request.standalone, request.hits,
                                    request.backend, request.started, request.retrieve_s,
                                    earlier=_previous_answer(request.history))

    def answer_from(self, question: str, sa: Standalone, hits: list[Hit], backend: str | None,
                    started: float, retrieve_s: float = 0.0,
                    earlier: Sequence[str] = ()) -> Iterator[Answer]:
        """The answering stage: extractive first (it decides abstention), then the backend.
        `earlier`: sentences of the previous answer, which a generated one must not repeat."""
        backend = backend or self.settings.llm_backend
        base = Answer(question=question, text="", sources=hits, backend=backend,
                      standalone_question=sa.query if sa.carried else None,
                      timings={"retrieve_s": round(retrieve_s, 4)})
        asked = sa.query if sa.carried else question
        if sa.intent.kind == "summary" and hits:  # built below from all the paper's passages
            declined, _ = self.extractor.declines(asked, sa.intent, hits)
            extract = declined or Extract("", False)
        else:
            extract = self.extractor.answer(asked, sa.intent, hits,
                                            follow_up=question if sa.carried else None,
                                            more=self._other_passages(sa.intent, asked, hits))
            base.sources = hits + extract.extra  # a listed paper's result from another passage
        if extract.abstained:
            # Name the closest papers only when they are close to the question (relevance gate).
            close = extract.relevance is None or extract.relevance.close
            yield self._abstain(base, hits, extract.reason, started, close)
            return
        if sa.intent.kind == "summary" and hits:
            yield from self._summary(base, hits, sa.intent.paper_ids, started)
            return
        # a table of papers or an address is metadata laid out, with nothing to rewrite
        if is_extractive(backend) or sa.intent.kind in ("list", "link"):
            yield from self._stream_extractive(base, extract, started)
            return
        yield from self._stream_llm(base, sa.query if sa.carried else question, extract, backend,
                                    started, earlier)

    def summarise_stream(self, paper_id: str, *, backend: str | None = None) -> Iterator[Answer]:
        """Summarise one paper from ALL of its passages (not just the top k)."""
        started = time.perf_counter()
        lib = self.retriever.library
        chunks = lib.hydrate(lib.by_paper.get(paper_id, []))
        if not chunks:
            raise ConfigError(f"no paper with id '{paper_id}' in the library; see `rag papers`")
        paper = lib.papers[paper_id]
        hits = [Hit(chunk=c, score=1.0) for c in chunks]
        extract = self.extractor.summarise(paper, hits)  # all passages, however many
        backend = backend or self.settings.llm_backend
        base = Answer(question=f"Summarise {paper.title}", text="", sources=hits,
                      backend=backend, notes=[f"read {len(chunks)} of {len(chunks)} passages"])
        if is_extractive(backend):
            yield from self._stream_extractive(base, extract, started)
        else:
            yield from self._stream_llm(base, base.question, extract, backend, started)

    # --- internals -------------------------------------------------------------------------------
    def _other_passages(self, intent: QueryIntent, question: str, hits: list[Hit]) -> list[Hit]:
        """For "which papers ..., and by how much?": the listed papers' other passages, where a
        paper states its result when the retrieved passage only states its claim."""
        if intent.kind != "list" or not cues.asks_result(question):
            return []
        lib = self.retriever.library
        shown = {h.chunk.id for h in hits}
        papers = dict.fromkeys(h.paper.id for h in hits)
        return [Hit(chunk=c, score=0.0) for c in lib.hydrate(
            [c for pid in papers for c in lib.by_paper.get(pid, []) if c.id not in shown])]

    def _summary(self, base: Answer, hits: list[Hit], named: Sequence[str],
                 started: float) -> Iterator[Answer]:
        """Summarise the paper asked about from ALL its passages; the retrieved ones stay first
        in the sources (so [1]-[k] mean what retrieval found) and the rest follow."""
        lib = self.retriever.library
        pid = next((h.paper.id for h in hits if h.paper.id in named), hits[0].paper.id)
        chunks = lib.hydrate(lib.by_paper.get(pid, []))
        shown = {h.chunk.id for h in hits}
        base.sources = hits + [Hit(chunk=c, score=0.0) for c in chunks if c.id not in shown]
        own = [h for h in base.sources if h.paper.id == pid]
        extract = self.extractor.summarise(lib.papers[pid], own)
        # summarise() numbers sentences by position in `own`; map them back to `sources`
        extract.text = _renumber(extract.text, [base.sources.index(h) + 1 for h in own])
        extract.cited = sorted({base.sources.index(own[n - 1]) + 1 for n in extract.cited})
        extract.evidence = [(base.sources.index(own[n - 1]) + 1, text)
                            for n, text in extract.evidence]
        base.notes.append(f"read {len(chunks)} of {len(chunks)} passages of this paper")
        if is_extractive(base.backend):
            yield from self._stream_extractive(base, extract, started)
            return
        # Map-reduce: the central sentences of every passage (map, above) are what the model
        # rewrites (reduce), so a paper of any length fits its window and nothing is cut unseen.
        yield from self._stream_llm(base, base.question, extract, base.backend, started)

    def _abstain(self, base: Answer, hits: list[Hit], reason: str, started: float,
                 close: bool = True) -> Answer:
        closest = "; ".join(f"{h.paper.title} [{n}]" for n, h in enumerate(hits[:3], 1)
                            ) if close else ""
        topic = base.question.rstrip("?. ")
        base.text = (f"The library has nothing that answers “{topic}”."
                     + (f" Closest papers: {closest}." if closest else ""))
        base.abstained = True
        base.notes.append(f"abstained: {reason}")
        base.timings["total_s"] = round(time.perf_counter() - started, 4)
        base.timings["ttft_s"] = base.timings["total_s"]
        return base

    def _stream_extractive(self, base: Answer, extract: Extract, started: float) -> Iterator[Answer]:
        base.citations = extract.cited
        # The text is final already; it is sent in runs of words so readers see it arrive
        # the way a generated answer does (and the UI's stream path is the same for both).
        ends = [m.end() for m in re.finditer(r"\S+(?:\s+\S+){0,7}\s*", extract.text)]
        for i, end in enumerate(ends):
            base.text = extract.text[:end].rstrip()
            if i == 0:
                base.timings["ttft_s"] = round(time.perf_counter() - started, 4)
            if i < len(ends) - 1:
                yield replace(base)
        base.text = extract.text
        base.sentences = [SentenceCheck(s, citations_in(s), True, "extracted")
                          for s in split_sentences(extract.text)]
        base.timings["total_s"] = round(time.perf_counter() - started, 4)
        yield base

    def _stream_llm(self, base: Answer, question: str, extract: Extract, backend: str,
                    started: float, earlier: Sequence[str] = ()) -> Iterator[Answer]:
        raw = ""
        try:
            llm = get_llm(backend, self.settings)
            prompt = build_evidence_prompt(question, extract.evidence, base.sources, llm,
                                           self.settings.llm_max_tokens)
            if prompt.trimmed:
                base.notes.append(f"prompt holds {prompt.sources_used} of {len(base.sources)} "
                                  "sources")
            for piece in llm.stream(prompt.messages, max_tokens=self.settings.llm_max_tokens,
                                    stop=["</source>", "\n\nQuestion:"]):
                if not raw:
                    base.timings["ttft_s"] = round(time.perf_counter() - started, 4)
                raw += piece
                shown = _partial(raw)
                if shown != base.text:
                    base.text = shown
                    yield replace(base)
            # A short answer may end without a period; only one that used up its tokens can
            # have been cut off mid-sentence.
            truncated = bool(raw) and llm.count_tokens(raw) >= self.settings.llm_max_tokens - 1
        except LLMUnavailableError as exc:
            yield self._without_model(base, extract, exc, started)
            return
        base.timings["generate_s"] = round(time.perf_counter() - started, 4)
        yield self._grounded(base, raw, extract, started, truncated, earlier)

    def _without_model(self, base: Answer, extract: Extract, exc: LLMUnavailableError,
                       started: float) -> Answer:
        """The model died, hung, or its server failed: answer from the sources, and say so."""
        reason = str(exc).split(": ", 1)[-1]
        note = f"{reason}; answered from the sources without it"
        base.text = f"{extract.text}\n\n*Note: {note}.*"
        base.citations = extract.cited
        base.sentences = [SentenceCheck(s, citations_in(s), True, "extracted")
                          for s in split_sentences(extract.text)]
        base.notes.append(note)
        base.timings["total_s"] = round(time.perf_counter() - started, 4)
        base.timings.setdefault("ttft_s", base.timings["total_s"])
        return base

    def _grounded(self, base: Answer, raw: str, extract: Extract, started: float,
                  truncated: bool = False, earlier: Sequence[str] = ()) -> Answer:
        """Show only sentences that carry a verified citation, each said once; fall back to the
        extractive answer when none survive. `base.sentences` holds every raw sentence, verified
        when it is shown (possibly re-cited), with the reason when it is not."""
        passages = [f"{h.paper.title}\n{h.chunk.text}" for h in base.sources]
        if "NOT IN SOURCES" in raw.upper():
            checks: list[SentenceCheck] = []
        elif self.settings.verify_answers:
            checks = ground_answer(raw, passages, truncated=truncated)
        else:
            checks = [SentenceCheck(s, citations_in(s), True, "unchecked")
                      for s in split_sentences(raw)]
        base.notes.append(f"raw model answer: {share_unsupported(checks):.0%} of sentences "
                          "unsupported" if checks else "model found nothing in the sources")
        shown = _unrepeated([c for c in checks if c.verified], earlier)
        base.sentences = [c if any(c is k for k in shown) or not c.verified else
                          replace(c, verified=False, reason="repeats an earlier sentence")
                          for c in checks]
        kept = grounded_text(shown) if self.settings.verify_answers else " ".join(
            c.text for c in shown)
        if kept.strip():
            base.text = kept
            base.citations = sorted({n for c in shown for n in c.citations})
        else:
            base.text = extract.text
            base.citations = extract.cited
            base.notes.append("showing the extractive answer: no generated sentence was supported")
        base.timings["total_s"] = round(time.perf_counter() - started, 4)
        return base
