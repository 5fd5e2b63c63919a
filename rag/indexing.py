"""Files -> papers -> chunks -> store, kept in sync by content hash.

`Indexer.index(paths)` parses every supported file under the given paths, embeds only chunks the
store does not already hold, deletes chunks of changed or removed files, and refreshes the BM25
index. A bad file is skipped with a reason and never touches what is stored for it. One writer at
a time per embedded store (`rag.store.write_lock`); every run that changed something marks the
store changed, so running apps reload within seconds. `DefaultLibrary` builds the shipped corpus
on first start (an empty store). This module does not parse formats itself (`rag.parsers`) or
search.

How it is fast (measured in `bench/index_speed.py`, numbers in BENCHMARKS.md): a parser thread
parses and chunks files into a bounded queue while the calling thread embeds, so the encoder
rarely waits; files are taken in groups of about `_GROUP_CHUNKS` chunks, so one store lookup,
one embedding call (texts sorted by length, which saves padding) and one write serve many
files. A PDF is read in one reused child process (`rag.parsers.sandbox`), for its bounds
(memory, CPU, time: a hostile file is skipped, not fatal), not for speed: on 2 cores the encoder
(2 torch threads) already keeps both busy, and the parser thread overlaps the parsing share
(BENCHMARKS.md); the child costs about nothing per file on the real papers (RELIABILITY.md).

Guarantees: a file's new chunks are written in the same upsert as the rest of its group, after
all of them are embedded, so a file is stored whole or not at all (only a file with more chunks
than Chroma takes in one request, thousands, is written in several); stale chunks are deleted
after the write, so an interrupted run leaves extra chunks at worst, and the next run, seeing
which chunk ids (content hashes) are stored, embeds only what is missing and completes it.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.chunking import Chunker
from rag.embeddings import Embedder, get_embedder
from rag.errors import DocumentError, StoreError
from rag.lexical import refresh_lexical
from rag.models import Chunk, Paper
from rag.parsers import SUPPORTED_SUFFIXES, ParseLimits, parse_file
from rag.settings import PROJECT_ROOT, Settings
from rag.store import ChunkStore, chunk_metadata, write_lock

Progress = Callable[[str, int, int], None]  # (file name, files done, files total)
PaperProgress = Callable[[int, int], None]  # (papers indexed, papers found so far)
ByteProgress = Callable[[int, int], None]  # (bytes of input done, bytes in all): for an ETA
DEFAULT_CORPUS = PROJECT_ROOT / "corpus"
_EMBED_BATCH = 256  # texts per embedding call inside a group (progress is reported between)
_GROUP_CHUNKS = 1024  # chunks looked up, embedded and written together
_GROUP_FILES = 200  # files per group at most (one `$in` lookup over their paths)
_QUEUE_FILES = 16  # parsed files the parser thread may run ahead of the embedder
_WRITE_BATCH = 5000  # records per upsert; under Chroma's embedded limit (5461)


@dataclass
class IndexReport:
    """What one `rag index` run did; `skipped` holds (file, reason) pairs."""

    files: int = 0
    papers: int = 0
    chunks_added: int = 0
    chunks_unchanged: int = 0
    chunks_removed: int = 0
    embedded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    # What this run wrote, for a reader in the same process (`Retriever.reload`): not reported
    written: Written | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("written")
        d["skipped"] = [{"file": f, "reason": r} for f, r in self.skipped]
        return d


@dataclass
class Written:
    """One run's own change of the store, as the store's change signal framed it under the
    write lock: `before` it wrote, `after`. A reader whose library reflects `before` can follow
    this change alone (no other process wrote in between), without listing the store."""

    before: tuple[int, str]
    after: tuple[int, str] = (0, "")
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)


def iter_files(root: Path) -> Iterator[Path]:
    """Supported files under `root` (or `root` itself), hidden files and folders left out."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(part.startswith(".") for part in rel):
            continue
        if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
            yield path


@dataclass
class _Parsed:
    """One file, parsed and chunked by the parser thread (`error`: why it is skipped)."""

    path: Path
    size: int
    papers: list[Paper] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    error: str = ""


@dataclass
class _Tally:
    """Progress of one run, shared by the callbacks."""

    files: int
    size: int
    files_done: int = 0
    bytes_done: int = 0
    papers_done: int = 0
    papers_found: int = 0


_DONE = object()
_Tell = Callable[..., None]  # (group bytes, group papers, share of the group embedded)


class Indexer:
    """Keeps one Chroma collection (and its BM25 twin) in step with files on disk.

    Stable API (the app, the CLI and `bench/scale.py` drive it): `Indexer(settings,
    embedder=..., store=...)`, both optional (default: the settings' model, the settings' store);
    `index(paths, progress, papers_progress, bytes_progress)` -> `IndexReport`. Any object
    following `rag.embeddings.Embedder` can embed, e.g. a fast stand-in for benchmarks."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None,
                 store: ChunkStore | None = None, keyword_index: bool = True) -> None:
        """`keyword_index`: bring the saved BM25 index up to date after a run (rebuilt whole
        when the run changed too much for a delta). The CLI does, so that a start finds it
        current; an app that follows its own upload at once (`Pipeline.add_documents`) need
        not: its library takes the new chunks into its BM25 delta, and saves a rebuild itself
        when the delta outgrows it. Listing a large store for this costs seconds per upload."""
        self.settings = settings
        self.keyword_index = keyword_index
        self.embedder = embedder or get_embedder(settings.embedding_model,
                                                 settings.embedding_batch_size,
                                                 backend=settings.embedding_backend)
        self.store = store or ChunkStore(settings)
        self.chunker = Chunker(self.embedder, settings.chunk_tokens, settings.chunk_overlap_tokens)

    def index(self, paths: Sequence[Path], progress: Progress | None = None,
              papers_progress: PaperProgress | None = None,
              bytes_progress: ByteProgress | None = None) -> IndexReport:
        """Index `paths` (files or folders). `progress` hears of each file as it is taken up,
        `papers_progress` of the papers stored out of those found so far (files are parsed
        while earlier ones are embedded, so the total grows until parsing ends), and
        `bytes_progress` of the input bytes done out of all: the steady measure for an ETA."""
        started = time.perf_counter()
        report = IndexReport()
        files: list[Path] = []
        for raw in paths:
            root = Path(raw).expanduser()
            if not root.exists():
                report.skipped.append((str(raw), "no such file or directory"))
                continue
            files.extend(iter_files(root))
        with write_lock(self.settings):
            before = report.chunks_added + report.chunks_removed
            report.written = Written(self.store.signal())
            self._sync(files, report, progress, papers_progress, bytes_progress)
            report.files = len(files)
            report.chunks_removed += self._remove_missing([Path(p).expanduser() for p in paths],
                                                         report)
            if report.chunks_added + report.chunks_removed != before:
                self.store.mark_changed()
            report.written.after = self.store.signal()
            try:
                if self.keyword_index:
                    refresh_lexical(self.store, self.settings)
            except OSError as exc:  # a full or read-only disk; the chunks are stored already
                raise StoreError(
                    f"cannot save the keyword index under '{self.settings.data_dir / 'bm25'}': "
                    f"{exc.strerror or exc}; free some space or make it writable, then run "
                    "`rag index` again") from exc
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    # --- the pipeline --------------------------------------------------------------------------
    def _sync(self, files: list[Path], report: IndexReport, progress: Progress | None,
              papers_progress: PaperProgress | None, bytes_progress: ByteProgress | None) -> None:
        sizes = {path: _size(path) for path in files}
        tally = _Tally(len(files), sum(sizes.values()))
        parsed: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_FILES)
        stop = threading.Event()

        def produce() -> None:
            try:
                for path in files:
                    if stop.is_set():
                        return
                    parsed.put(self._prepare(path, sizes[path]))
                parsed.put(_DONE)
            except BaseException as exc:  # handed to the consumer, which raises it
                parsed.put(exc)

        def tell(group_bytes: int = 0, group_papers: int = 0, share: float = 0.0) -> None:
            if papers_progress:
                papers_progress(min(tally.papers_done + round(group_papers * share),
                                    tally.papers_found), tally.papers_found)
            if bytes_progress:
                bytes_progress(tally.bytes_done + round(group_bytes * share), tally.size)

        parser = threading.Thread(target=produce, name="rag-index-parser", daemon=True)
        parser.start()
        group: list[_Parsed] = []
        try:
            while True:
                item = parsed.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, _Parsed)
                if progress:
                    progress(item.path.name, tally.files_done, tally.files)
                tally.files_done += 1
                if item.error:
                    report.skipped.append((str(item.path), item.error))
                    tally.bytes_done += item.size
                    tell()
                    continue
                tally.papers_found += len(item.papers)
                group.append(item)
                if (sum(len(g.chunks) for g in group) >= _GROUP_CHUNKS
                        or len(group) >= _GROUP_FILES):
                    self._store_group(group, report, tally, tell)
                    group = []
                else:
                    tell()
            if group:
                self._store_group(group, report, tally, tell)
        finally:
            stop.set()
            while parser.is_alive():  # unblock a parser waiting on a full queue
                with suppress(queue.Empty):
                    parsed.get(timeout=0.05)
        if progress:
            progress("", tally.files, tally.files)
        tell()

    def _prepare(self, path: Path, size: int) -> _Parsed:
        """Parse and chunk one file (in the parser thread)."""
        try:
            papers = parse_file(path, max_bytes=int(self.settings.max_file_mb * 1024 * 1024),
                                limits=parse_limits(self.settings))
        except DocumentError as exc:
            return _Parsed(path, size, error=exc.reason)
        chunks = self.chunker.chunk_papers(papers, _key(path)) if papers else []
        return _Parsed(path, size, papers, chunks)

    def _store_group(self, group: list[_Parsed], report: IndexReport, tally: _Tally,
                     tell: _Tell) -> None:
        """Embed what the store lacks for these files, write them whole, drop their stale
        chunks: one lookup, a few embedding calls and one write for the whole group."""
        keys = [_key(g.path) for g in group]
        stored = self.store.ids({"path": keys[0]} if len(keys) == 1 else {"path": {"$in": keys}})
        current = {c.id for g in group for c in g.chunks}
        new = [(g, c) for g in group for c in g.chunks if c.id not in stored]
        # Sorted by length, each embedding call pads its texts to about the same length.
        order = sorted(range(len(new)), key=lambda i: len(new[i][1].embed_text))
        vectors: list[list[float]] = [[] for _ in new]
        group_bytes = sum(g.size for g in group)
        group_papers = sum(len(g.papers) for g in group)
        for i in range(0, len(order), _EMBED_BATCH):
            batch = order[i : i + _EMBED_BATCH]
            for j, v in zip(batch, self.embedder.embed([new[j][1].embed_text for j in batch]),
                            strict=True):
                vectors[j] = v
            tell(group_bytes, group_papers, min(i + _EMBED_BATCH, len(order)) / len(order))
        self._write([(c, _key(g.path), v) for (g, c), v in zip(new, vectors, strict=True)])
        stale = stored - current
        self.store.delete(stale)  # after the write: a crash in between leaves extra, not missing
        if report.written is not None:
            report.written.added.update(c.id for _, c in new)
            report.written.removed.update(stale)
        tally.papers_done += group_papers
        tally.bytes_done += group_bytes
        report.papers += group_papers
        report.chunks_added += len(new)
        report.embedded += len(new)
        report.chunks_unchanged += len(current) - len(new)
        report.chunks_removed += len(stale)
        tell()

    def _write(self, records: list[tuple[Chunk, str, list[float]]]) -> None:
        """Upsert (chunk, file key, vector) records of several files in as few requests as
        Chroma allows. subtle: `ChunkStore.add` takes one file per call; this writes the same
        metadata (`chunk_metadata`) for many files at once."""
        for i in range(0, len(records), _WRITE_BATCH):
            part = records[i : i + _WRITE_BATCH]
            self.store.upsert([c.id for c, _, _ in part], [v for _, _, v in part],
                              [c.text for c, _, _ in part],
                              [chunk_metadata(c, key) for c, key, _ in part])

    def _remove_missing(self, roots: Iterable[Path], report: IndexReport) -> int:
        """Delete chunks of files that were under an indexed folder and are gone from disk."""
        folders = [r.resolve() for r in roots if r.is_dir()]
        if not folders:
            return 0
        removed = 0
        for stored_path in self.store.paths():
            p = Path(stored_path)
            if p.exists() or not any(p.is_relative_to(f) for f in folders):
                continue
            ids = self.store.ids_for_path(stored_path)
            self.store.delete(ids)
            if report.written is not None:
                report.written.removed.update(ids)
            removed += len(ids)
        return removed


def parse_limits(settings: Settings) -> ParseLimits:
    """The bounds a PDF is read under (RAG_PARSE_TIMEOUT_S, RAG_PARSE_CPU_S,
    RAG_PARSE_MEMORY_MB)."""
    return ParseLimits(settings.parse_timeout_s, settings.parse_cpu_s, settings.parse_memory_mb)


def _key(path: Path) -> str:
    """How the store names a file: its resolved path."""
    return str(path.resolve())


def _size(path: Path) -> int:
    try:
        return max(os.stat(path).st_size, 1)
    except OSError:
        return 1


# --- first start -----------------------------------------------------------------------------------
def builds_default_library(settings: Settings, store: ChunkStore) -> bool:
    """True when a reading command or the app should index the shipped corpus by itself: the
    store is empty and RAG_CORPUS_DIR is the shipped `corpus/` (unset, or set to that folder).
    A store holding anything, or a corpus pointed elsewhere, is the user's: nothing is indexed
    behind their back."""
    default = DEFAULT_CORPUS.resolve()
    if Path(settings.corpus_dir).expanduser().resolve() != default or not default.is_dir():
        return False
    return store.count() == 0


class DefaultLibrary:
    """First-start indexing of the shipped corpus, with its progress for a status line.

    `state` is 'idle', 'indexing', 'done' or 'failed'; `papers_done`/`papers_total` count
    papers. Thread-safe to read while `build` runs in another thread."""

    def __init__(self) -> None:
        self.state = "idle"
        self.papers_done = 0
        self.papers_total = 0
        self.error = ""
        self.report: IndexReport | None = None
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def progress(self, done: int, total: int) -> None:
        with self._lock:
            self.papers_done, self.papers_total = done, total

    def build(self, index: Callable[..., IndexReport]) -> IndexReport | None:
        """Run `index([corpus], papers_progress=...)`; failures are kept in `error`."""
        self.state = "indexing"
        try:
            self.report = index([DEFAULT_CORPUS], papers_progress=self.progress)
        except Exception as exc:  # shown on the status line; the app keeps serving
            self.error = str(exc)
            self.state = "failed"
            return None
        else:
            self.state = "done"
            return self.report
        finally:
            self.finished.set()

    def status(self) -> str:
        """One line for the user, empty when there is nothing to say."""
        with self._lock:
            done, total = self.papers_done, self.papers_total
        if self.state == "indexing":
            counted = f"{done} of {total} papers" if total else "reading the files"
            return f"Indexing the default library… {counted}"
        if self.state == "failed":
            return f"Indexing the default library failed: {self.error}"
        return ""
