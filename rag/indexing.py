"""Files -> papers -> chunks -> store, kept in sync by content hash.

`Indexer.index(paths)` parses every supported file under the given paths, embeds only chunks the
store does not already hold, deletes chunks of changed or removed files, and refreshes the BM25
index. A bad file is skipped with a reason and never touches what is stored for it. An
interrupted run leaves extra chunks at worst (new ones are added before old ones are deleted), and
the next run completes it. One writer at a time per embedded store (`rag.store.write_lock`);
every run that changed something marks the store changed, so running apps reload within seconds.
`DefaultLibrary` builds the shipped corpus on first start (an empty store). This module does not
parse formats itself (`rag.parsers`) or search.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.chunking import Chunker
from rag.embeddings import Embedder, get_embedder
from rag.errors import DocumentError
from rag.lexical import refresh_lexical
from rag.models import Chunk, Paper
from rag.parsers import SUPPORTED_SUFFIXES, parse_file
from rag.settings import PROJECT_ROOT, Settings
from rag.store import ChunkStore, write_lock

Progress = Callable[[str, int, int], None]  # (file name, files done, files total)
PaperProgress = Callable[[int, int], None]  # (papers indexed, papers found)
DEFAULT_CORPUS = PROJECT_ROOT / "corpus"
_EMBED_BATCH = 128


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

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["skipped"] = [{"file": f, "reason": r} for f, r in self.skipped]
        return d


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


class Indexer:
    """Keeps one Chroma collection (and its BM25 twin) in step with files on disk."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None,
                 store: ChunkStore | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or get_embedder(settings.embedding_model,
                                                 settings.embedding_batch_size)
        self.store = store or ChunkStore(settings)
        self.chunker = Chunker(self.embedder, settings.chunk_tokens, settings.chunk_overlap_tokens)

    def index(self, paths: Sequence[Path], progress: Progress | None = None,
              papers_progress: PaperProgress | None = None) -> IndexReport:
        """Index `paths`; `progress` hears of each file, `papers_progress` of the papers done out
        of all found (files are parsed first, so the total is known before embedding starts)."""
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
            parsed = [(path, self._parse(path, report)) for path in files]
            total = sum(len(papers) for _, papers in parsed)
            done = [0, total]
            if papers_progress:
                papers_progress(0, total)
            for i, (path, papers) in enumerate(parsed):
                if progress:
                    progress(path.name, i, len(files))
                if papers:
                    self._index_file(path, papers, report, done, papers_progress)
            if progress:
                progress("", len(files), len(files))
            report.files = len(files)
            report.chunks_removed += self._remove_missing([Path(p).expanduser() for p in paths])
            if report.chunks_added + report.chunks_removed != before:
                self.store.mark_changed()
            refresh_lexical(self.store, self.settings)
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def _parse(self, path: Path, report: IndexReport) -> list[Paper]:
        try:
            return parse_file(path, max_bytes=int(self.settings.max_file_mb * 1024 * 1024))
        except DocumentError as exc:
            report.skipped.append((str(path), exc.reason))
            return []

    def _index_file(self, path: Path, papers: list[Paper], report: IndexReport,
                    done: list[int], papers_progress: PaperProgress | None) -> None:
        key = str(path.resolve())
        chunks = self.chunker.chunk_papers(papers, key)
        stored = self.store.ids_for_path(key)
        new = [c for c in chunks if c.id not in stored]
        start = done[0]
        counted: set[str] = set()

        def embedded(batch: list[Chunk]) -> None:
            if papers_progress:
                counted.update(c.paper.id for c in batch)
                papers_progress(min(start + len(counted), done[1]), done[1])

        self._add(new, key, embedded)
        stale = stored - {c.id for c in chunks}
        self.store.delete(stale)  # after the add: a crash in between leaves extra, not missing
        done[0] = start + len(papers)
        if papers_progress:
            papers_progress(done[0], done[1])
        report.papers += len(papers)
        report.chunks_added += len(new)
        report.embedded += len(new)
        report.chunks_unchanged += len(chunks) - len(new)
        report.chunks_removed += len(stale)

    def _add(self, chunks: list[Chunk], key: str,
             embedded: Callable[[list[Chunk]], None] | None = None) -> None:
        for i in range(0, len(chunks), _EMBED_BATCH):
            batch = chunks[i : i + _EMBED_BATCH]
            vectors = self.embedder.embed([c.embed_text for c in batch])
            self.store.add(batch, vectors, key)
            if embedded:
                embedded(batch)

    def _remove_missing(self, roots: Iterable[Path]) -> int:
        """Delete chunks of files that were under an indexed folder and are gone from disk."""
        folders = [r.resolve() for r in roots if r.is_dir()]
        removed = 0
        for stored_path in self.store.paths():
            p = Path(stored_path)
            if p.exists() or not any(p.is_relative_to(f) for f in folders):
                continue
            ids = self.store.ids_for_path(stored_path)
            self.store.delete(ids)
            removed += len(ids)
        return removed


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
