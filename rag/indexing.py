"""Files -> papers -> chunks -> store, kept in sync by content hash.

`Indexer.index(paths)` parses every supported file under the given paths, embeds only chunks the
store does not already hold, deletes chunks of changed or removed files, and refreshes the BM25
index. A bad file is skipped with a reason and never touches what is stored for it. An
interrupted run leaves extra chunks at worst (new ones are added before old ones are deleted), and
the next run completes it. This module does not parse formats itself (`rag.parsers`) or search.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.chunking import Chunker
from rag.embeddings import Embedder, get_embedder
from rag.errors import DocumentError
from rag.lexical import refresh_lexical
from rag.models import Chunk
from rag.parsers import SUPPORTED_SUFFIXES, parse_file
from rag.settings import Settings
from rag.store import ChunkStore

Progress = Callable[[str, int, int], None]  # (file name, files done, files total)
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

    def index(self, paths: Sequence[Path], progress: Progress | None = None) -> IndexReport:
        started = time.perf_counter()
        report = IndexReport()
        files: list[Path] = []
        for raw in paths:
            root = Path(raw).expanduser()
            if not root.exists():
                report.skipped.append((str(raw), "no such file or directory"))
                continue
            files.extend(iter_files(root))
        for i, path in enumerate(files):
            if progress:
                progress(path.name, i, len(files))
            self._index_file(path, report)
        if progress:
            progress("", len(files), len(files))
        report.files = len(files)
        report.chunks_removed += self._remove_missing([Path(p).expanduser() for p in paths])
        refresh_lexical(self.store, self.settings)
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def _index_file(self, path: Path, report: IndexReport) -> None:
        key = str(path.resolve())
        max_bytes = int(self.settings.max_file_mb * 1024 * 1024)
        try:
            papers = parse_file(path, max_bytes=max_bytes)
        except DocumentError as exc:
            report.skipped.append((str(path), exc.reason))
            return
        chunks = self.chunker.chunk_papers(papers, key)
        stored = self.store.ids_for_path(key)
        new = [c for c in chunks if c.id not in stored]
        self._add(new, key)
        stale = stored - {c.id for c in chunks}
        self.store.delete(stale)  # after the add: a crash in between leaves extra, not missing
        report.papers += len(papers)
        report.chunks_added += len(new)
        report.embedded += len(new)
        report.chunks_unchanged += len(chunks) - len(new)
        report.chunks_removed += len(stale)

    def _add(self, chunks: list[Chunk], key: str) -> None:
        for i in range(0, len(chunks), _EMBED_BATCH):
            batch = chunks[i : i + _EMBED_BATCH]
            vectors = self.embedder.embed([c.embed_text for c in batch])
            self.store.add(batch, vectors, key)

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
